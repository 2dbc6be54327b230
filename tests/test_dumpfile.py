"""The restore's allowlist parser (backup/statements.py) and the bounded gunzip in front of it
(backup/dumpfile.py), without a server: a real mariadb-dump 10.11 dump passes and counts right,
every hostile statement is refused naming its line, the caps hold with bounded memory.

tests/fixtures/dumps/mariadb-dump-10.11.sql was made by loading mariadb-dump-10.11.schema.sql
into a scratch MariaDB 10.11.19 (Debian 12's mariadbd, mariadb-install-db --no-defaults) and
running `mariadb-dump --single-transaction --quick --no-tablespaces --skip-lock-tables --hex-blob
--default-character-set=utf8mb4 --skip-triggers bingo` (backup.database.dump_argv's options).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from bingo_host.backup import BackupError, dumpfile, statements
from bingo_host.backup.dumpfile import gunzip_statements
from bingo_host.backup.statements import Parser, Refused

REAL = (Path(__file__).parent / "fixtures" / "dumps" / "mariadb-dump-10.11.sql").read_bytes()
HEAD = (b"/*M!999999\\- enable the sandbox mode */ \n-- MariaDB dump 10.19\n"
        b"/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n"
        b"CREATE TABLE `t` (\n  `id` int(11) NOT NULL\n) ENGINE=InnoDB;\n")  # 6 lines
TAIL = b"/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n\n-- Dump completed on 2026-12-07  8:14:16\n"


def parse(dump: bytes) -> tuple[Parser, bytes]:
    parser = Parser()
    text = b"".join(gunzip_statements([gzip.compress(dump)], parser=parser))
    return parser, text


def test_a_real_mariadb_dump_passes_line_for_line_and_counts_its_rows():
    parser, text = parse(REAL)
    assert parser.tables == {"empty_one": 0, "games": 3, "tick`ets": 3}
    assert parser.complete
    out, lines = text.split(b"\n"), REAL.split(b"\n")
    assert len(out) == len(lines)
    for got, line in zip(out, lines):
        if line.startswith((b"--", b"/*M!999999")) or not line.strip():
            assert got == b""  # comments and the sandbox line (the load adds --sandbox) go
        else:
            assert b" ".join(got.split()) == b" ".join(line.split()), line  # the same tokens
    assert b"INSERT INTO `games` VALUES\n(1,'it\\'s a (test), ok;',1.50," in text


def test_rows_are_counted_from_the_parsed_values_whatever_the_app_wrote():
    """Names with backticks and quotes, values holding INSERT, '(', ';', '),(' and a client
    command: each row counts once, and the load sees them as the values they are."""
    name = b"`we``ird'\"name\xff`"
    dump = (HEAD + b"CREATE TABLE " + name + b" (\n  `v` text\n);\n"
            b"INSERT INTO " + name + b" VALUES\n(1,'INSERT INTO `x` VALUES ('),\n(2,'),(3,\\'),(\\\\'),\n"
            b"(3,'system touch /tmp/x; \\\\! touch /tmp/y\\n-- ;');\n"
            b"INSERT INTO `t` VALUES (1,'a;b'),(2,0x28),(3,-1.5e-3),(4,NULL),(5,b'01') , (6,'');\n" + TAIL)
    parser, text = parse(dump)
    assert parser.tables == {"t": 6, "we`ird'\"name\ufffd": 3}
    assert b"(3,'system touch /tmp/x; \\\\! touch /tmp/y\\n-- ;');\n" in text


def test_the_text_the_client_reads_is_the_checked_tokens_without_comments():
    dump = (HEAD + b"/*!40101 SET NAMES utf8mb4 */; -- a comment\nLOCK TABLES `t` /* x */ WRITE; # more\n"
            b"UNLOCK TABLES;\n/*!40014 SET @OLD_FKC=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;\n"
            b"/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FKC */;\n"
            b"/*M!100616 SET @OLD_NOTE_VERBOSITY=@@NOTE_VERBOSITY, NOTE_VERBOSITY=0 */;\n"
            b"CREATE TABLE `c` (\n  `a` int CHECK (`a`\n-1 >= 0)\n);\n"
            b"SET NAMES utf8mb4; SET NAMES latin1;  UNLOCK\nTABLES;\n"
            b"/*!40101 SET NAMES utf8mb4*/; CREATE TABLE `d` (`a` int CHECK (`a`-1 > 0));\n" + TAIL)
    _, text = parse(dump)
    lines = text.split(b"\n")
    assert lines[:3] == [b"", b"", b"/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;"]
    assert lines[6:12] == [b"/*!40101 SET NAMES utf8mb4 */;", b"LOCK TABLES `t` WRITE;", b"UNLOCK TABLES;",
                           b"/*!40014 SET @OLD_FKC=@@FOREIGN_KEY_CHECKS, FOREIGN_KEY_CHECKS=0 */;",
                           b"/*!40014 SET FOREIGN_KEY_CHECKS=@OLD_FKC */;",
                           b"/*M!100616 SET @OLD_NOTE_VERBOSITY=@@NOTE_VERBOSITY, NOTE_VERBOSITY=0 */;"]
    # A line the client reads never starts with '--' (it would drop it as a comment).
    assert lines[12:16] == [b"CREATE TABLE `c` (", b"`a` int CHECK (`a`", b" -1 >= 0)", b");"]
    # Statements that end on one line stay on it: the next one's line is the client's next too.
    assert lines[16:18] == [b"SET NAMES utf8mb4; SET NAMES latin1;UNLOCK", b"TABLES;"]
    assert lines[18] == b"/*!40101 SET NAMES utf8mb4 */; CREATE TABLE `d` (`a` int CHECK (`a`-1 > 0));"


def test_a_values_list_may_end_a_line_in_spaces_or_a_comment():
    parser, text = parse(HEAD + b"INSERT INTO `t` VALUES (1) \t\n, (2),  -- two\n(3)\n;\n" + TAIL)
    assert parser.tables == {"t": 3}
    assert text.split(b"\n")[6:10] == [b"INSERT INTO `t` VALUES (1)", b", (2),", b"(3)", b";"]


def test_a_refusal_shows_the_start_of_what_it_refused():
    with pytest.raises(Refused) as caught:
        parse(HEAD + b"\\! \xff" + b"x" * 100 + b"\n" + TAIL)
    assert str(caught.value) == ("line 7 of the dump is refused (not SQL that mariadb-dump writes): "
                                 "'\\\\! \ufffd" + "x" * 56 + "'")
    with pytest.raises(Refused) as caught:
        parse(HEAD + b"INSERT INTO `t` VALUES (1) ON;\n")
    assert str(caught.value) == "line 7 of the dump is refused (text after an INSERT row): ' ON;'"
    with pytest.raises(Refused) as caught:
        parse(HEAD + b"INSERT INTO `t` VALUES (1) ;;\n")
    assert str(caught.value) == "line 7 of the dump is refused (an empty statement)"


def test_sizes_in_messages():
    assert [statements._size(n) for n in (1000, (1 << 20) - 1, 1 << 20, 3 << 20)] == [
        "1000 bytes", "1048575 bytes", "1 MiB", "3 MiB"]


def test_an_empty_dump_is_incomplete():
    assert Parser().complete is False
    with pytest.raises(BackupError, match="incomplete"):
        parse(b"")


def test_a_backup_streams_mariadb_dumps_lines_through_the_parser_into_gzip():
    """GzipReader: what it hands out, read in pieces of any size, is the gzip of the lines as
    they came; its size and sha256 are those bytes'; the parser saw every line."""
    lines = REAL.splitlines(keepends=True)
    lines[-1] = lines[-1].rstrip(b"\n")  # the last line without its newline: still complete
    reader = dumpfile.GzipReader(iter(lines))
    assert reader.readable()
    pieces = [reader.read(7), reader.read(0), reader.read(1000), reader.read()]
    assert pieces[1] == b""
    assert reader.read() == b""
    body = b"".join(pieces)
    assert len(pieces[0]) == 7 and len(pieces[2]) == 1000
    assert gzip.decompress(body) == REAL.rstrip(b"\n")
    assert (reader.size, reader.sha256.hexdigest()) == (len(body), hashlib.sha256(body).hexdigest())
    assert reader.parser.tables == {"empty_one": 0, "games": 3, "tick`ets": 3} and reader.parser.complete
    assert reader.parser.lineno == len(lines)


def test_lines_across_the_gzips_chunks_come_out_whole():
    """The dump in 5-byte gzip chunks: lines straddle what each inflate step gives."""
    gz = gzip.compress(REAL)
    parser = Parser()
    text = b"".join(gunzip_statements([gz[i:i + 5] for i in range(0, len(gz), 5)], parser=parser))
    assert text == parse(REAL)[1]
    assert parser.tables == {"empty_one": 0, "games": 3, "tick`ets": 3}


def test_the_gzip_is_inflated_a_chunk_at_a_time():
    data = os.urandom(dumpfile.CHUNK // 2).hex().encode() * 3  # 3 CHUNKs that compress well
    pieces = list(dumpfile._inflate([gzip.compress(data)], hashlib.sha256()))
    assert max(map(len, pieces)) == dumpfile.CHUNK and b"".join(pieces) == data


def test_a_backups_last_line_keeps_its_last_character_without_a_newline():
    reader = dumpfile.GzipReader(iter([b"CREATE TABLE `t` (`a` int);"]))
    assert gzip.decompress(reader.read()) == b"CREATE TABLE `t` (`a` int);" and reader.parser.tables == {"t": 0}


def test_a_backup_of_a_dump_a_restore_would_refuse_fails():
    reader = dumpfile.GzipReader(iter([b"USE `mysql`;\n"]))
    with pytest.raises(Refused, match="^line 1 "):
        reader.read(10)
    reader = dumpfile.GzipReader(iter([b"SET NAMES utf8mb4\n"]))  # the end comes inside a statement
    with pytest.raises(Refused, match="ends inside a statement"):
        reader.read()


def test_a_large_backup_is_compressed_in_chunks():
    rows = [b"(%d,'%s'),\n" % (i, os.urandom(40).hex().encode()) for i in range(20000)]
    lines = [b"CREATE TABLE `t` (`v` text);\n", b"INSERT INTO `t` VALUES\n", *rows, b"(0,'');\n",
             b"-- Dump completed\n"]
    reader = dumpfile.GzipReader(iter(lines))
    assert reader.read(0) == b"" and reader.parser.lineno == 0
    first = reader.read(1024)
    assert len(first) == 1024 and reader.parser.lineno < len(lines)  # not everything at once
    body = first + reader.read()
    assert gzip.decompress(body) == b"".join(lines)
    assert reader.parser.tables == {"t": 20001}


def test_the_reader_takes_lines_until_a_chunk_is_full_and_no_further():
    """Lines that fill CHUNK exactly are compressed without pulling the next one: what the reader
    holds before compressing stays bounded by CHUNK plus one line."""
    head = [b"CREATE TABLE `t` (`v` text);\n", b"INSERT INTO `t` VALUES\n"]
    room, rows = dumpfile.CHUNK - sum(map(len, head)), []
    while room >= 216:
        rows.append(b"(1,'" + b"a" * 100 + b"'),\n")
        room -= 108
    rows.append(b"(1,'" + b"b" * (room - 8) + b"'),\n")
    lines = [*head, *rows, b"(0,'');\n", b"-- Dump completed\n"]
    assert sum(map(len, lines[:-2])) == dumpfile.CHUNK
    reader = dumpfile.GzipReader(iter(lines))
    first = reader.read(1)
    assert reader.parser.lineno == len(lines) - 2
    assert gzip.decompress(first + reader.read()) == b"".join(lines)


def test_an_insert_may_name_its_columns_as_mariadb_dump_does_for_generated_ones():
    parser, _ = parse(HEAD + b"INSERT INTO `t` (`a`, `b``c`, `d`) VALUES (1,2,3);\n" + TAIL)
    assert parser.tables == {"t": 1}


# Everything the allowlists allow, named here one by one (a name dropped from one fails).
ALLOWED = [
    b"SET @a=@@character_set_client, @b=@@character_set_results, @c=@@character_set_connection, "
    b"@d=@@collation_connection, @e=@@time_zone, @f=@@sql_mode, @g=@@foreign_key_checks, "
    b"@h=@@unique_checks, @i=@@sql_notes, @j=@@note_verbosity, @k=@@check_constraint_checks, "
    b"@l=@@autocommit; SET character_set_client=@a, character_set_results=@b, character_set_connection=@c, "
    b"collation_connection=@d, time_zone=@e, sql_mode=@f, foreign_key_checks=@g, unique_checks=@h, "
    b"sql_notes=@i, note_verbosity=@j, check_constraint_checks=@k, autocommit=@l;",
    b"SET character_set_client=utf8mb4, character_set_results=utf8mb3, character_set_connection=utf8;",
    b"SET character_set_client='latin1', character_set_results=ascii, character_set_connection=binary;",
    b"SET collation_connection=utf8mb4_general_ci, collation_connection='latin1_swedish_ci', "
    b"collation_connection=binary;",
    b"SET NAMES utf8mb4, NAMES utf8mb3, NAMES utf8, NAMES latin1, NAMES ascii, NAMES binary;",
    b"SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci;",
    b"SET NAMES utf8mb4 COLLATE 'utf8mb4_bin';",
    b"SET foreign_key_checks=0, unique_checks=1, sql_notes=0, note_verbosity=0, "
    b"check_constraint_checks=1, autocommit=0;",
    b"SET time_zone='+00:00', time_zone='-05:30', time_zone='SYSTEM';",
    b"SET sql_mode='', sql_mode='no_auto_value_on_zero';",
    b"SET sql_mode='NO_AUTO_VALUE_ON_ZERO,STRICT_TRANS_TABLES,STRICT_ALL_TABLES,NO_ZERO_IN_DATE,"
    b"NO_ZERO_DATE,ALLOW_INVALID_DATES,ERROR_FOR_DIVISION_BY_ZERO,TRADITIONAL,NO_AUTO_CREATE_USER,"
    b"NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY,NO_UNSIGNED_SUBTRACTION,NO_DIR_IN_CREATE,"
    b"IGNORE_BAD_TABLE_OPTIONS,PAD_CHAR_TO_FULL_LENGTH,REAL_AS_FLOAT,HIGH_NOT_PRECEDENCE,"
    b"SIMULTANEOUS_ASSIGNMENT,TIME_ROUND_FRACTIONAL,';",
    b"CREATE TABLE `a` (`x` int) ENGINE=InnoDB;",
    b"CREATE TABLE `m` (`x` int);",
    b"CREATE TABLE `h` (`x` text CHECK (`x` LIKE 'a%'));",
    b"CREATE TABLE `b` (`x` int) ENGINE=myisam;",
    b"CREATE TABLE `c` (`x` int) ENGINE=Aria;",
    b"CREATE TABLE `d` (`x` int) ENGINE=MEMORY;",
    b"CREATE TABLE `e` (`x` varchar(9) CHECK (`x` LIKE 'a%'), `y` int AS (REPLACE(`x`, 'a', 'b'))) "
    b"COMMENT='SELECT';",
    b"CREATE TABLE `f` (`x` int) ENGINE=InnoDB /*!50100 PARTITION BY RANGE (`x`) (PARTITION `p0` VALUES "
    b"LESS THAN (10) ENGINE = InnoDB) */;",
    b"DROP TABLE IF EXISTS `a`;",
    b"drop table if exists `a`;",
    b"LOCK TABLES `a` WRITE;",
    b"UNLOCK TABLES;",
    b"/*!40000 ALTER TABLE `a` DISABLE KEYS */;",
    b"/*!40000 ALTER TABLE `a` ENABLE KEYS */;",
    b"INSERT INTO `t` VALUES (1,-2,3.5,.5,1e3,-1.5E-3,'x',NULL,0xAB,b'10','');",
    b"insert into `t` values (1);",
]


@pytest.mark.parametrize("statement", ALLOWED, ids=range(len(ALLOWED)))
def test_what_a_dump_may_hold_passes(statement):
    parser, text = parse(HEAD + statement + b"\n" + TAIL)
    assert text.split(b"\n")[6] == statement


# Each is put on line 7 of an otherwise valid dump (after HEAD).
HOSTILE = {
    # issue 21's findings
    "system": (b"system touch /tmp/pwned", "not a statement"),
    "mid-line shell": (b"SELECT 1; \\! touch /tmp/pwned", "not a statement"),
    "shell": (b"\\! touch /tmp/pwned", "not SQL"),
    "versioned grant": (b"/*!50001 GRANT ALL ON *.* TO 'bingoapp'@'localhost' */;", "qualified name"),
    "use": (b"USE`mysql`;", "not a statement"),
    "update grants": (b"UPDATE mysql.global_priv SET Priv='{}' WHERE User='bingoapp';", "qualified name"),
    "connect": (b"connect mysql", "not a statement"),
    # other client commands and statements a dump of one database never holds
    "source": (b"source /etc/shadow;", "not a statement"),
    "delimiter": (b"DELIMITER ;;", "not a statement"),
    "sandbox line later": (b"/*M!999999\\- enable the sandbox mode */", "not SQL"),
    "unversioned comment": (b"/*! GRANT ALL ON *.* TO x */;", "not SQL"),
    "create database": (b"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `bingo`;", "not a statement"),
    "create user": (b"CREATE USER `x`@`%`;", "not SQL"),
    "view": (b"/*!50001 CREATE VIEW `v` AS SELECT 1 AS `id` */;", "not a statement"),
    "trigger": (b"/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER `x` BEFORE "
                b"INSERT ON `t` FOR EACH ROW SET NEW.id = 1 */;", "not SQL"),
    "temporary table": (b"CREATE TEMPORARY TABLE `x` (`a` int);", "not a statement"),
    "drop database": (b"DROP DATABASE `bingo`;", "not a statement"),
    "drop without if exists": (b"DROP TABLE `t`;", "not a statement"),
    "drop two": (b"DROP TABLE IF EXISTS `t`, `u`;", "not a statement"),
    "lock read": (b"LOCK TABLES `t` READ;", "not a statement"),
    "alter more": (b"/*!40000 ALTER TABLE `t` DISABLE KEYS, ADD COLUMN `x` int */;", "not a statement"),
    "empty statement": (b";", "empty statement"),
    "select into outfile": (b"SELECT 1 INTO OUTFILE '/tmp/x';", "not a statement"),
    "load data": (b"LOAD DATA INFILE '/etc/passwd' INTO TABLE `t`;", "not a statement"),
    "double-quoted": (b'SET NAMES "gbk";', "double-quoted"),
    "qualified insert": (b"INSERT INTO `mysql`.`user` VALUES (1);", "qualified name"),
    "unquoted insert": (b"INSERT INTO t VALUES (1);", "not INSERT INTO `table`"),
    "insert select": (b"INSERT INTO `t` SELECT * FROM `u`;", "not a statement"),
    "insert set": (b"INSERT INTO `t` SET `id` = 1;", "not a statement"),
    "insert columns": (b"INSERT INTO `t` (`a`, b) VALUES (1,2);", "column list"),
    "insert not into": (b"INSERT IGNORE `t` VALUES (1);", "not INSERT INTO `table`"),
    "insert uncreated": (b"INSERT INTO `u` VALUES (1);", "a table the dump did not create"),
    "insert columns bare": (b"INSERT INTO `t` `a` VALUES (1);", "column list"),
    "insert columns trailing comma": (b"INSERT INTO `t` (`a`,) VALUES (1);", "column list"),
    "insert columns equals": (b"INSERT INTO `t` (`a` = `b`) VALUES (1);", "column list"),
    "insert columns open": (b"INSERT INTO `t` (`a` VALUES (1);", "column list"),
    "insert columns no comma": (b"INSERT INTO `t` (`a` `b`) VALUES (1,2);", "column list"),
    "replace": (b"REPLACE INTO `t` VALUES (1);", "not a statement"),
    "insert expression": (b"INSERT INTO `t` VALUES (1),(LOAD_FILE('/etc/shadow'));", "literal values"),
    "insert variable": (b"INSERT INTO `t` VALUES (@x);", "literal values"),
    "insert subquery": (b"INSERT INTO `t` VALUES ((SELECT 1));", "literal values"),
    "insert on duplicate": (b"INSERT INTO `t` VALUES (1) ON DUPLICATE KEY UPDATE `id` = 2;", "after an INSERT row"),
    "insert then grant": (b"INSERT INTO `t` VALUES (1); GRANT ALL ON *.* TO x;", "qualified name"),
    "insert then drop": (b"INSERT INTO `t` VALUES (1); DROP DATABASE `x`;", "not a statement"),
    "insert in versioned": (b"/*!40000 INSERT INTO `t` VALUES (1) */;", "versioned comment"),
    "insert spaces in row": (b"INSERT INTO `t` VALUES ( 1);", "literal values"),
    "create select": (b"CREATE TABLE `x` (`a` int) SELECT `id` FROM `t`;", "more than a table"),
    "create as select": (b"CREATE TABLE `x` (`a` int) AS (SELECT 1);", "more than a table"),
    "create like": (b"CREATE TABLE `x` LIKE `t`;", "not CREATE TABLE"),
    "create connect": (b"CREATE TABLE `x` (`a` int) ENGINE=CONNECT TABLE_TYPE=DOS FILE_NAME='/etc/shadow';",
                       "engine"),
    "create federated": (b"CREATE TABLE `x` (`a` int) ENGINE=FEDERATED CONNECTION='mysql://r@h/db/t';",
                         "engine"),
    "create like later": (b"CREATE TABLE `x` (`a` int) LIKE `t`;", "more than a table"),
    "create union": (b"CREATE TABLE `x` (`a` int) ENGINE=MyISAM UNION=(`t`);", "more than a table"),
    "create ignore": (b"CREATE TABLE `x` (`a` int) IGNORE;", "more than a table"),
    "create replace": (b"CREATE TABLE `x` (`a` int) REPLACE;", "more than a table"),
    "create as": (b"CREATE TABLE `x` (`a` int) AS TABLE `t`;", "more than a table"),
    "create connection in body": (b"CREATE TABLE `x` (`a` int CONNECTION);", "more than a table"),
    "create directory in body": (b"CREATE TABLE `x` (`a` int, PARTITION DIRECTORY);", "more than a table"),
    "create sysvar": (b"CREATE TABLE `x` (`a` int DEFAULT @@sql_mode);", "more than a table"),
    "create engine bytes": (b"CREATE TABLE `x` (`a` int) ENGINE=\xff;", "engine"),
    "create engine string": (b"CREATE TABLE `x` (`a` int) ENGINE='InnoDB';", "engine"),
    "create data directory": (b"CREATE TABLE `x` (`a` int) ENGINE=MyISAM DATA DIRECTORY='/etc';", "more than"),
    "create engine without =": (b"CREATE TABLE `x` (`a` int) ENGINE InnoDB;", "engine"),
    "create engine at end": (b"CREATE TABLE `x` (`a` int) ENGINE=;", "engine"),
    "create default variable": (b"CREATE TABLE `x` (`a` int DEFAULT @x);", "more than a table"),
    "create subquery": (b"CREATE TABLE `x` (`a` int CHECK (`a` IN (SELECT 1)));", "more than a table"),
    "create unbalanced": (b"CREATE TABLE `x` (`a` int;", "unbalanced"),
    "create qualified fk": (b"CREATE TABLE `x` (`a` int REFERENCES `mysql`.`user` (`User`));", "qualified"),
    "set global": (b"SET GLOBAL general_log = 1;", "a SET other than"),
    "set global sysvar": (b"SET @@global.general_log = 1;", "not SQL"),
    "set read global": (b"SET @x = @@secure_file_priv;", "variable other than"),
    "set no backslash escapes": (b"SET sql_mode = 'NO_BACKSLASH_ESCAPES';", "not a value"),
    "set ansi quotes": (b"/*!40101 SET SQL_MODE='ANSI_QUOTES' */;", "not a value"),
    "set ansi": (b"SET SQL_MODE='STRICT_TRANS_TABLES,ANSI';", "not a value"),
    "set mode number": (b"SET SQL_MODE=4;", "not a value"),
    "set names gbk": (b"/*!40101 SET NAMES gbk */;", "SET NAMES"),
    "set names alone": (b"SET NAMES;", "SET NAMES"),
    "set names three": (b"SET NAMES utf8mb4 COLLATE;", "SET NAMES"),
    "set names string": (b"SET NAMES 'utf8mb4';", "SET NAMES"),
    "set names then": (b"SET NAMES utf8mb4 AND utf8mb4_bin;", "SET NAMES"),
    "set names gbk collate": (b"SET NAMES gbk COLLATE utf8mb4_bin;", "SET NAMES"),
    "set user from string": (b"SET @x = 'a';", "variable other than"),
    "set with colon": (b"SET sql_mode := '';", "not SQL"),
    "set three tokens": (b"SET sql_mode '' '';", "a SET other than"),
    "set switch word": (b"SET FOREIGN_KEY_CHECKS = OFF;", "not a value"),
    "set charset number": (b"SET character_set_client = 1;", "not a value"),
    "set collation number": (b"SET collation_connection = 1;", "not a value"),
    "set time zone word": (b"SET TIME_ZONE = SYSTEM;", "not a value"),
    "set time zone long": (b"SET TIME_ZONE = '+000:00';", "not a value"),
    "set mode word": (b"SET SQL_MODE = TRADITIONAL;", "not a value"),
    "set restore other": (b"SET @s = @@sql_notes, sql_mode = @s;", "did not save it"),
    "set names then more": (b"SET NAMES utf8mb4, sql_mode = 'ANSI';", "not a value"),
    "set bytes": (b"SET sql_mode = '\xff';", "not a value"),
    "set names collate": (b"SET NAMES utf8mb4 COLLATE big5_chinese_ci;", "SET NAMES"),
    "set charset sjis": (b"SET character_set_client = sjis;", "not a value"),
    "set collation gbk": (b"SET collation_connection = gbk_bin;", "not a value"),
    "set mode via variable": (b"SET @x = 'NO_BACKSLASH_ESCAPES', sql_mode = @x;", "variable other than"),
    "set restore unsaved": (b"SET SQL_MODE=@OLD_SQL_NOTES;", "did not save it"),
    "set password": (b"SET PASSWORD = PASSWORD('x');", "a SET other than"),
    "set role": (b"SET ROLE `admin`;", "a SET other than"),
    "set other variable": (b"SET sql_log_bin = 0;", "variable other than"),
    "set switch value": (b"SET FOREIGN_KEY_CHECKS = 2;", "not a value"),
    "set time zone": (b"SET TIME_ZONE = 'Europe/x';", "not a value"),
    "set sysvar from sysvar": (b"SET SQL_MODE = @@SQL_MODE;", "not a value"),
    "statement ends in a comment": (b"/*!50001 SET NAMES utf8mb4; GRANT ALL ON *.* TO x */;", "inside a versioned"),
    "six-digit version": (b"/*!500011 SET NAMES utf8mb4 */;", "not SQL"),
    "five-digit mariadb version": (b"/*M!10061 SET NAMES utf8mb4 */;", "not SQL"),
    "nested versioned": (b"/*!50001 /*!50001 SET NAMES utf8mb4 */ */;", "inside another"),
    "stray close": (b"SET NAMES utf8mb4 */;", "outside a comment"),
    "unterminated string": (b"SET TIME_ZONE = '+00:00;", "not SQL"),
    "unterminated comment": (b"/* SET NAMES utf8mb4;", "not SQL"),
    "row string over lines": (b"INSERT INTO `t` VALUES ('a\nb');", "literal values"),
}


@pytest.mark.parametrize("statement,reason", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_statement_refuses_the_dump_naming_its_line(statement, reason):
    with pytest.raises(Refused, match=rf"^line 7 of the dump is refused \([^)]*{reason}") as caught:
        parse(HEAD + statement + b"\n" + TAIL)
    assert caught.value.lineno == 7


# Every reason a refusal gives, word for word (as an operator reads it).
MESSAGES = [
    (b"system touch /tmp/x", "not a statement mariadb-dump writes for one database): 'system touch / tmp'"),
    (b"\\! touch", "not SQL that mariadb-dump writes): '\\\\! touch'"),
    (b"SELECT `a`.`b`;", "a qualified name (`db`.`table`): a dump names its own tables only): 'SELECT `a`.`b`;'"),
    (b";", "an empty statement)"),
    (b'SET NAMES "gbk";', "a \"double-quoted\" string (mariadb-dump quotes with ')): '\"gbk\"'"),
    (b"INSERT INTO t VALUES (1);", "not INSERT INTO `table` VALUES)"),
    (b"INSERT INTO `t` (a) VALUES (1);", "an INSERT's column list holds more than `names`)"),
    (b"INSERT INTO `t` VALUES (x);", "an INSERT row holds more than literal values): ' (x);'"),
    (b"INSERT INTO `t` VALUES (1) x;", "text after an INSERT row): ' x;'"),
    (b"/*!40000 INSERT INTO `t` VALUES (1) */;", "an INSERT inside a versioned comment)"),
    (b"CREATE TABLE `x` (`a` int) SELECT 1;", "CREATE TABLE with more than a table's definition): 'SELECT'"),
    (b"CREATE TABLE `x` LIKE `t`;", "not CREATE TABLE `table` (...))"),
    (b"CREATE TABLE `x` (`a` int) ENGINE=CSV;", "a table engine other than InnoDB, MyISAM, Aria, MEMORY): 'CSV'"),
    (b"CREATE TABLE `x` (`a` int) ENGINE InnoDB;", "a table engine other than InnoDB, MyISAM, Aria, MEMORY)"),
    (b"SET sql_mode = '\xff';", "sql_mode = '\ufffd' is not a value a restore allows)"),
    (b"INSERT INTO `u` VALUES (1);", "an INSERT into a table the dump did not create)"),
    (b"CREATE TABLE `x` (`a` int;", "unbalanced parentheses in CREATE TABLE)"),
    (b"SET GLOBAL x = 1;", "a SET other than variable = value)"),
    (b"SET @x = @@version;", "a variable other than the dump's session ones): '@@version'"),
    (b"SET @x = 'a';", "a SET of a variable other than the dump's session ones: @x)"),
    (b"SET SQL_MODE = 'ANSI';", "SQL_MODE = 'ANSI' is not a value a restore allows)"),
    (b"SET NAMES gbk;", "SET NAMES other than an ASCII-safe character set)"),
    (b"SET SQL_MODE = @x;", "SQL_MODE set from a variable that did not save it)"),
    (b"/*!40101 SET NAMES utf8mb4; */;",
     "a statement ends inside a versioned comment): '/*!40101 SET NAMES utf8mb4; */;'"),
    (b"/*!40101 /*!40101 */ */;", "a versioned comment inside another): '/*!40101'"),
    (b"*/;", "'*/' outside a comment): '*/'"),
]


@pytest.mark.parametrize("statement,message", MESSAGES, ids=range(len(MESSAGES)))
def test_refusals_say_the_line_and_why(statement, message):
    with pytest.raises(Refused) as caught:
        parse(HEAD + statement + b"\n" + TAIL)
    assert str(caught.value) == "line 7 of the dump is refused (" + message


@pytest.mark.parametrize("data,message", [
    (b"not gzip", "the dump is not a valid gzip stream (Error -3 while decompressing data: incorrect header check)"),
    (gzip.compress(HEAD + TAIL) + b"x", "the dump has data after the end of its gzip stream"),
    (zlib.compress(HEAD + TAIL), "the dump is not a valid gzip stream (Error -3 while decompressing data: "
                                 "incorrect header check)"),
    (gzip.compress(HEAD + TAIL)[:-9], "the dump is truncated (its gzip stream ends early)"),
    (gzip.compress(HEAD + b"SET NAMES utf8mb4\n"), "line 7 of the dump is refused (the dump is incomplete: it ends "
                                                  "inside a statement)"),
    (gzip.compress(HEAD + b"SET NAMES utf8mb4;"), "the dump is incomplete: line 7, its last, is cut off"),
    (gzip.compress(HEAD), "the dump is incomplete: it does not end with mariadb-dump's '-- Dump completed' line"),
])
def test_a_broken_dump_says_what_is_wrong(data, message):
    with pytest.raises(BackupError) as caught:
        list(gunzip_statements([data]))
    assert str(caught.value) == message
    gz = gzip.compress(HEAD + TAIL)
    with pytest.raises(BackupError) as caught:
        list(gunzip_statements([gz], "0123456789ab" + "0" * 52))
    assert str(caught.value) == (f"the dump's sha256 {hashlib.sha256(gz).hexdigest()[:12]}... differs from its "
                                 "record's 0123456789ab...: it changed after the backup")


@pytest.mark.parametrize("tail,reason", [
    (b"INSERT INTO `t` VALUES (1),\n", "line 7 .*incomplete: it ends inside a statement"),
    (b"/*!40101 SET NAMES utf8mb4\n", "line 7 .*incomplete: it ends inside a statement"),
    (b"SET NAMES utf8mb4\n", "line 7 .*incomplete: it ends inside a statement"),
    (b"INSERT INTO `t` VALUES (1),\n(2,'ab", "incomplete: line 8, its last, is cut off"),
    (TAIL.rstrip(b"\n"), "incomplete: line 9, its last, is cut off"),
])
def test_a_dump_that_ends_inside_a_statement_or_line_is_incomplete(tail, reason):
    with pytest.raises(BackupError, match=reason):
        parse(HEAD + tail)


def test_a_statement_is_named_by_the_line_it_starts_on():
    with pytest.raises(Refused, match=r"^line 7 .*not a statement.*'system touch / tmp'"):
        parse(HEAD + b"system touch /tmp/x\n/*!40000 ALTER TABLE `t` DISABLE KEYS */;\n" + TAIL)


def test_the_caps_refuse_a_long_line_statement_or_token_run(monkeypatch):
    monkeypatch.setattr(statements, "LINE_MAX", 1000)
    monkeypatch.setattr(dumpfile, "LINE_MAX", 1000)
    monkeypatch.setattr(statements, "STATEMENT_MAX", 3000)
    monkeypatch.setattr(statements, "TOKENS_MAX", 50)
    rows = b"".join(b"(%d,'%s'),\n" % (i, b"x" * 90) for i in range(25))
    base = b"INSERT INTO `t` VALUES\n" + rows + b"(0,'');"
    statement = base.replace(b"'');", b"'" + b"y" * (3000 - len(base)) + b"');")
    assert len(statement) == 3000  # as it goes out: its newlines, no comment
    parse(HEAD + statement + b"\n" + TAIL)
    with pytest.raises(Refused, match=r"^line 7 .*a statement longer than 3000 bytes"):
        parse(HEAD + statement.replace(b"y", b"yy", 1) + b"\n" + TAIL)
    with pytest.raises(Refused, match=r"^line 7 .*a statement longer than 3000 bytes"):
        parse(HEAD + b"INSERT INTO `t` VALUES\n" + rows * 2 + b"(0,'');\n" + TAIL)
    with pytest.raises(Refused, match=r"^line 7 .*a line longer than"):
        parse(HEAD + b"INSERT INTO `t` VALUES (1,'" + b"x" * 1000 + b"');\n" + TAIL)
    exactly = gzip.compress(HEAD + b"-- " + b"x" * 997 + b"\n" + TAIL)  # 1000 bytes, in 5-byte pieces
    list(gunzip_statements([exactly[i:i + 5] for i in range(0, len(exactly), 5)]))
    over = gzip.compress(HEAD + b"-- " + b"x" * 998 + b"\n" + TAIL)
    with pytest.raises(Refused, match=r"^line 7 .*a line longer than 1000 bytes"):
        list(gunzip_statements([over[i:i + 5] for i in range(0, len(over), 5)]))
    with pytest.raises(Refused, match=r"^line 7 .*a line longer than"):  # and with no newline at all
        parse(HEAD + b"-- " + b"x" * 1200)
    parse(HEAD + b"CREATE TABLE `c` (" + b"`a` int," * 14 + b"`b` int NULL);\n" + TAIL)  # 50 tokens
    with pytest.raises(Refused, match=r"^line 7 .*more than 50 tokens"):
        parse(HEAD + b"CREATE TABLE `c` (" + b"`a` int," * 14 + b"`b` int NOT NULL);\n" + TAIL)


def test_a_dump_not_ending_with_mariadb_dumps_last_line_is_incomplete():
    with pytest.raises(BackupError, match="incomplete"):
        parse(HEAD + TAIL + b"SET NAMES utf8mb4;\n")
    with pytest.raises(BackupError, match="incomplete"):
        parse(HEAD + b"-- Dump completed\nCREATE TABLE `x` (`a` int);\n")


# -- the slow ones last (the caps at their real size)

def test_the_token_cap_is_100000():
    body = b"`a` int," * 33331 + b"`b` int"  # 99996 tokens, 100000 with CREATE TABLE `c` ( ... )
    Parser().feed(b"CREATE TABLE `c` (" + body + b");")
    with pytest.raises(Refused, match="more than 100000 tokens"):
        Parser().feed(b"CREATE TABLE `c` (" + body + b" NULL);")


def test_the_caps_are_16_mib_a_line_and_a_statement():
    parser = Parser()
    parser.feed(b"-- " + b"x" * (16 * 1024 * 1024 - 3))
    with pytest.raises(Refused, match=r"^line 2 of the dump is refused \(a line longer than 16 MiB\)$"):
        parser.feed(b"-- " + b"x" * (16 * 1024 * 1024 - 2))
    parser = Parser()
    parser.feed(b"CREATE TABLE `t` (`b` blob);")
    parser.feed(b"INSERT INTO `t` VALUES")
    for _ in range(15):
        parser.feed(b"(0x" + b"00" * (512 * 1024) + b"),")
    with pytest.raises(Refused, match=r"^line 2 .*\(a statement longer than 16 MiB\)$"):
        parser.feed(b"(0x" + b"00" * (512 * 1024) + b"),")


def test_a_gzip_bomb_of_one_long_line_is_refused_in_bounded_memory(tmp_path):
    """A 1 MiB gzip inflating to a single 1 GiB line: refused at the line cap, the process's
    peak RSS well under 100 MiB (mariadb-dump's longest line stays under 16 MiB)."""
    bomb = tmp_path / "bomb.sql.gz"
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"a" * (1 << 20)
    with open(bomb, "wb") as f:
        for _ in range(1024):
            f.write(gz.compress(block))
        f.write(gz.flush())
    assert bomb.stat().st_size < 1.1 * (1 << 20)
    # VmHWM: the peak of this process image (ru_maxrss would carry the forking pytest's over exec).
    probe = ("import re, sys\n"
             "from bingo_host.backup.dumpfile import gunzip_statements\n"
             "f = open(sys.argv[1], 'rb')\n"
             "try:\n"
             "    for _ in gunzip_statements(iter(lambda: f.read(256 * 1024), b'')): pass\n"
             "except Exception as exc:\n"
             "    print(exc)\n"
             "status = open('/proc/self/status').read()\n"
             "print(int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1)) // 1024)\n")
    r = subprocess.run([sys.executable, "-c", probe, str(bomb)], capture_output=True, text=True,
                       cwd=Path(__file__).parent.parent, timeout=120)
    message, rss_mib = r.stdout.splitlines()
    assert message == "line 1 of the dump is refused (a line longer than 16 MiB)"
    assert int(rss_mib) < 60, r.stdout
    print("peak RSS", rss_mib, "MiB")
