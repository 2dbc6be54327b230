"""The allowlist of what mariadb-dump writes for one database, checked statement by statement.

A restore never hands the client the dump's bytes: it hands it the checked tokens written out
again, one line for one line, without comments, so nothing the client reads was not checked and
no line of it starts a client command. Kept are only the statements a one-database dump holds
(session SETs, DROP TABLE IF EXISTS, CREATE TABLE, LOCK/UNLOCK TABLES, ALTER TABLE ... KEYS,
INSERT of literals). Refused, naming the line: anything else, a qualified name, a SET that would
change how the server reads the rest (session_vars.py), CONNECTION or DATA/INDEX DIRECTORY.
Triggers and views are refused, not loaded with their DEFINER stripped: a trigger's body is any
SQL no allowlist can vet, and a view cannot follow its tables into the live schema. Rows are
counted from the parsed VALUES, so text the app stored cannot change the count.
"""

from __future__ import annotations

import re

from . import BackupError
from .session_vars import SESSION_VARS, check_set

# mariadb-dump starts a new INSERT once one reaches --net-buffer-length (1 MiB by default); only
# a single row can make a longer one, and neither the client nor the server takes a statement
# over their max_allowed_packet (16 MiB by default). A real dump of the app stays far below.
LINE_MAX = 16 * 1024 * 1024
STATEMENT_MAX = 16 * 1024 * 1024
TOKENS_MAX = 100_000  # in a statement other than an INSERT's rows: a CREATE TABLE of the app has hundreds
SANDBOX_LINE = rb"/*M!999999\- enable the sandbox mode */"  # mariadb-dump's first line: --sandbox does it
TRAILER = b"-- Dump completed"  # mariadb-dump's last line (with --comments, its default)

_NAME_CHAR = rb"[A-Za-z0-9_$\x80-\xff]"
TOKEN = re.compile(rb"""
    (?P<space>[ \t\r\f\v]+)
  | (?P<string>'[^'\\\n]*+(?:(?:\\.|'')[^'\\\n]*+)*+')
  | (?P<dquoted>"[^"\\\n]*+(?:(?:\\.|"")[^"\\\n]*+)*+")
  | (?P<ident>`[^`\n]*+(?:``[^`\n]*+)*+`)
  | (?P<version>/\*(?:!\d{5}|M!\d{6})(?!\d))
  | (?P<close>\*/)
  | (?P<comment>/\*(?!M?!).*?\*/|--(?:[ \t\r\f\v].*)?$|\#.*$)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!""" + _NAME_CHAR + rb"""))
  | (?P<word>""" + _NAME_CHAR + rb"""+)
  | (?P<sysvar>@@[A-Za-z_][A-Za-z0-9_]*+(?![.$\x80-\xff]))
  | (?P<uservar>@[A-Za-z_][A-Za-z0-9_]*+(?![.$\x80-\xff@`'"]))
  | (?P<op><=>|<=|>=|<>|!=|/(?!\*)|[-+*%<>=!(),;.])
""", re.X)

# One row of an INSERT as mariadb-dump writes it (--hex-blob): literals only, no spaces.
# (Alternatives in this order: each row is matched possessively, without trying another.)
_VALUE = (rb"(?:'[^'\\\n]*+(?:\\.[^'\\\n]*+)*+'|NULL|0x[0-9A-Fa-f]++|b'[01]*+'"
          rb"|-?(?:\d++\.?\d*+|\.\d++)(?:[eE][-+]?\d++)?)")
ROW = re.compile(rb"[ \t\r]*\(" + _VALUE + rb"(?:," + _VALUE + rb")*+\)")
SEPARATOR = re.compile(rb"[ \t\r]*([,;])")
BLANK = re.compile(rb"[ \t\r]*(?:--(?:[ \t\r\f\v].*)?)?$")

ENGINES = frozenset({"INNODB", "MYISAM", "ARIA", "MEMORY"})
# Words that would make a CREATE TABLE read another table (CREATE ... SELECT / LIKE), or reach
# outside the datadir (another server, files elsewhere): in its definition, and after it.
BODY_REFUSED = frozenset({"SELECT", "CONNECTION", "DIRECTORY"})
OPTIONS_REFUSED = BODY_REFUSED | {"LIKE", "UNION", "IGNORE", "REPLACE", "AS"}


class Refused(BackupError):
    def __init__(self, lineno: int, reason: str, text: bytes = b""):
        shown = f": {text[:60].decode(errors='replace')!r}" if text else ""
        super().__init__(f"line {lineno} of the dump is refused ({reason}){shown}")
        self.lineno = lineno


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


def _name(ident: bytes) -> str:
    return ident[1:-1].replace(b"``", b"`").decode("utf-8", errors="replace")


class Parser:
    """Feed it the dump's lines (without their newline); each feed returns the checked text
    for the client. .tables is {table: rows}, .complete whether mariadb-dump's last line came."""

    def __init__(self):
        self.lineno = 0
        self.tables: dict[str, int] = {}
        self.complete = False
        self._saved: dict[str, str] = {}  # @user variable -> the session variable saved in it
        self._reset()

    def _reset(self) -> None:
        self._tokens: list[tuple[str, bytes]] = []  # the statement's, without space and comments
        self._out: list[bytes] = []
        self._size = 0
        self._version = False  # inside /*!NNNNN ... */
        self._table: str | None = None  # inside an INSERT's VALUES: its table
        self._want_row = False
        self._line_start = True
        self._first = self.lineno  # a statement is refused by the line it starts on

    def feed(self, line: bytes) -> bytes:
        self.lineno += 1
        if len(line) > LINE_MAX:
            raise Refused(self.lineno, f"a line longer than {_size(LINE_MAX)}")
        if self.lineno == 1 and line.rstrip() == SANDBOX_LINE:
            return b"\n"  # the load runs with --sandbox itself
        if not self._out:
            self.complete = line.startswith(TRAILER)
        self._line_start = True
        pos, end, done = 0, len(line), []
        while pos < end:
            if self._table is not None:
                pos = self._values(line, pos)
                if self._table is None:
                    done.append(self._finish())
                continue
            m = TOKEN.match(line, pos)
            if not m:
                raise Refused(self.lineno, "not SQL that mariadb-dump writes", line[pos:])
            pos = m.end()
            if m.lastgroup in ("space", "comment"):
                if self._out and not self._out[-1].endswith((b" ", b"\n")):
                    self._emit(b" ")
            elif self._token(m.lastgroup, m.group(), line):
                done.append(self._finish())
        # One line out for each line in, so the client's line numbers are the dump's.
        if self._out:
            self._emit(b"\n")
            return b" ".join(done)
        return b" ".join(done) + b"\n"

    def finish(self) -> None:
        """The end of the dump: a statement or a versioned comment still open is refused."""
        if self._out:
            raise Refused(self.lineno, "the dump is incomplete: it ends inside a statement")

    def _emit(self, text: bytes) -> None:
        self._size += len(text)
        if self._size > STATEMENT_MAX:
            raise Refused(self._first, f"a statement longer than {_size(STATEMENT_MAX)}")
        self._out.append(text)

    def _token(self, kind: str, text: bytes, line: bytes) -> bool:
        """Take one token; True when it ended a statement (a ';')."""
        if not self._out:
            self._first = self.lineno
        if kind == "version":
            if self._version:
                raise Refused(self.lineno, "a versioned comment inside another", text)
            self._version = True
            self._emit(text + b" ")
            return False
        if kind == "close":
            if not self._version:
                raise Refused(self.lineno, "'*/' outside a comment", text)
            self._version = False
            self._emit(b"*/" if self._out[-1].endswith(b" ") else b" */")
            return False
        if kind == "dquoted":
            raise Refused(self.lineno, 'a "double-quoted" string (mariadb-dump quotes with \')', text)
        if text == b".":
            raise Refused(self.lineno, "a qualified name (`db`.`table`): a dump names its own tables only",
                          line)
        if self._line_start and self._out and text[:1] == b"-":
            self._emit(b" ")  # never '--' at the start of a line the client reads
        self._line_start = False
        if text == b";":
            if self._version:
                raise Refused(self.lineno, "a statement ends inside a versioned comment", line)
            self._check()
            self._emit(b";")
            return True
        if len(self._tokens) >= TOKENS_MAX:
            raise Refused(self.lineno, f"a statement of more than {TOKENS_MAX} tokens")
        self._tokens.append((kind, text))
        self._emit(text)
        if kind == "word" and text.upper() == b"VALUES" and self._tokens[0][1].upper() == b"INSERT":
            self._insert_head()
        return False

    def _finish(self) -> bytes:
        text = b"".join(self._out)
        self._reset()
        return text

    # -- INSERT INTO `t` [(`a`, ...)] VALUES (...), (...);

    def _insert_head(self) -> None:
        tokens = self._tokens
        if self._version:
            raise Refused(self._first, "an INSERT inside a versioned comment")
        if len(tokens) < 4 or tokens[1][1].upper() != b"INTO" or tokens[2][0] != "ident":
            raise Refused(self._first, "not INSERT INTO `table` VALUES")
        columns = tokens[3:-1]  # mariadb-dump names them for a table with generated columns
        if columns:
            names = columns[1:-1:2]
            commas = columns[2:-1:2]
            if (columns[0][1], columns[-1][1]) != (b"(", b")") or len(columns) % 2 == 0 or \
                    any(k != "ident" for k, _ in names) or any(t != ("op", b",") for t in commas):
                raise Refused(self._first, "an INSERT's column list holds more than `names`")
        table = _name(tokens[2][1])
        if table not in self.tables:
            raise Refused(self._first, "an INSERT into a table the dump did not create")
        self._want_row = True
        self._table = table

    def _values(self, line: bytes, pos: int) -> int:
        """The VALUES list from pos: rows of literals, ',' between them, ';' at the end."""
        start = pos
        while pos < len(line):
            if self._want_row:
                m = ROW.match(line, pos)
                if not m:
                    if BLANK.match(line, pos):
                        break
                    raise Refused(self.lineno, "an INSERT row holds more than literal values", line[pos:])
                self.tables[self._table] += 1
                self._want_row = False
            else:
                m = SEPARATOR.match(line, pos)
                if not m:
                    if BLANK.match(line, pos):
                        break
                    raise Refused(self.lineno, "text after an INSERT row", line[pos:])
                if m.group(1) == b";":
                    self._emit(line[start:m.end()])
                    self._table = None
                    return m.end()
                self._want_row = True
            pos = m.end()
        self._emit(line[start:pos])
        return len(line)

    # -- the other statements, checked whole at their ';'

    def _check(self) -> None:
        tokens = self._tokens
        if not tokens:
            raise Refused(self._first, "an empty statement")
        for kind, text in tokens:
            if kind == "sysvar" and text[2:].lower().decode() not in SESSION_VARS:
                raise Refused(self._first, "a variable other than the dump's session ones", text)
        words = [t.upper().decode("latin-1") if k == "word" else k for k, t in tokens]
        if words[0] == "SET":
            return self._check_set(tokens[1:])
        shapes = (["DROP", "TABLE", "IF", "EXISTS", "ident"], ["LOCK", "TABLES", "ident", "WRITE"],
                  ["UNLOCK", "TABLES"], ["ALTER", "TABLE", "ident", "DISABLE", "KEYS"],
                  ["ALTER", "TABLE", "ident", "ENABLE", "KEYS"])
        if words in shapes:
            return
        if words[:3] == ["CREATE", "TABLE", "ident"]:
            return self._check_create(tokens, words)
        raise Refused(self._first, "not a statement mariadb-dump writes for one database",
                      b" ".join(t for _, t in tokens[:4]))

    def _check_create(self, tokens, words) -> None:
        if tokens[3:4] != [("op", b"(")]:
            raise Refused(self._first, "not CREATE TABLE `table` (...)")
        depth, body_end = 0, None
        for i, (kind, text) in enumerate(tokens[3:], 3):
            depth += {b"(": 1, b")": -1}.get(text, 0) if kind == "op" else 0
            if depth == 0:
                body_end = i
                break
        if body_end is None:
            raise Refused(self._first, "unbalanced parentheses in CREATE TABLE")
        for i, (kind, text) in enumerate(tokens):
            word = words[i]
            refused = BODY_REFUSED if i < body_end else OPTIONS_REFUSED
            if kind in ("uservar", "sysvar") or word in refused:
                raise Refused(self._first, "CREATE TABLE with more than a table's definition", text)
            if word == "ENGINE":
                value = tokens[i + 2] if i + 2 < len(tokens) and tokens[i + 1][1] == b"=" else (None, b"")
                if value[1].upper().decode(errors="replace") not in ENGINES:
                    raise Refused(self._first, "a table engine other than InnoDB, MyISAM, Aria, MEMORY",
                                  value[1])
        self.tables.setdefault(_name(tokens[2][1]), 0)

    def _check_set(self, tokens) -> None:
        if reason := check_set(tokens, self._saved):
            raise Refused(self._first, reason)
