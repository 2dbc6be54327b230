"""The SET statements a dump may hold: which session variables, which values.

A dump saves a variable (SET @OLD_SQL_MODE=@@SQL_MODE), sets it for the load, and puts it
back (SET SQL_MODE=@OLD_SQL_MODE). Allowed: a @user variable takes a session variable's value;
a session variable takes a value that keeps the server reading the rest of the dump as the
parser did (no NO_BACKSLASH_ESCAPES or ANSI_QUOTES; no character set in which a multibyte
character can end in a backslash or a quote, as in GBK or SJIS), or the value saved from
itself. So every value a session variable has during the load is one of those, or the client's.
"""

from __future__ import annotations

import re

# Session variables a dump may set, and the values it may give them (see _value_ok).
SAFE_CHARSETS = frozenset({"utf8mb4", "utf8mb3", "utf8", "latin1", "ascii", "binary"})
SQL_MODES = frozenset({
    "NO_AUTO_VALUE_ON_ZERO", "STRICT_TRANS_TABLES", "STRICT_ALL_TABLES", "NO_ZERO_IN_DATE",
    "NO_ZERO_DATE", "ALLOW_INVALID_DATES", "ERROR_FOR_DIVISION_BY_ZERO", "TRADITIONAL",
    "NO_AUTO_CREATE_USER", "NO_ENGINE_SUBSTITUTION", "ONLY_FULL_GROUP_BY", "NO_UNSIGNED_SUBTRACTION",
    "NO_DIR_IN_CREATE", "IGNORE_BAD_TABLE_OPTIONS", "PAD_CHAR_TO_FULL_LENGTH", "REAL_AS_FLOAT",
    "HIGH_NOT_PRECEDENCE", "SIMULTANEOUS_ASSIGNMENT", "TIME_ROUND_FRACTIONAL", ""})
CHARSET_VARS = frozenset({"character_set_client", "character_set_results", "character_set_connection"})
SWITCH_VARS = frozenset({"foreign_key_checks", "unique_checks", "sql_notes", "note_verbosity",
                         "check_constraint_checks", "autocommit"})
SESSION_VARS = CHARSET_VARS | SWITCH_VARS | {"collation_connection", "time_zone", "sql_mode"}
_TIME_ZONE = re.compile(r"[+-]\d{2}:\d{2}|SYSTEM")


def check_set(tokens: list[tuple[str, bytes]], saved: dict[str, str]) -> str | None:
    """Why SET <tokens> is refused, or None; records in `saved` what each @user variable holds."""
    items, current = [], []
    for token in tokens:
        if token == ("op", b","):
            items.append(current)
            current = []
        else:
            current.append(token)
    items.append(current)
    for item in items:
        kinds = [k for k, _ in item]
        texts = [t.decode(errors="replace") for _, t in item]
        if kinds[:1] == ["word"] and texts[0].upper() == "NAMES":
            ok = len(item) in (2, 4) and texts[1].lower() in SAFE_CHARSETS and kinds[1] == "word" and (
                len(item) == 2 or texts[2].upper() == "COLLATE" and _safe_collation(texts[3]))
            if not ok:
                return "SET NAMES other than an ASCII-safe character set"
            continue
        if len(item) != 3 or item[1] != ("op", b"="):
            return "a SET other than variable = value"
        target_kind, target, value_kind, value = kinds[0], texts[0], kinds[2], texts[2]
        if target_kind == "uservar" and value_kind == "sysvar":
            saved[target.lower()] = value[2:].lower()
            continue
        if target_kind != "word" or target.lower() not in SESSION_VARS:
            return f"a SET of a variable other than the dump's session ones: {target}"
        name = target.lower()
        if value_kind == "uservar":
            if saved.get(value.lower()) != name:
                return f"{target} set from a variable that did not save it"
        elif not _value_ok(name, value_kind, value):
            return f"{target} = {value} is not a value a restore allows"
    return None


def _safe_collation(name: str) -> bool:
    return name.strip("'").lower().split("_")[0] in SAFE_CHARSETS


def _value_ok(name: str, kind: str, value: str) -> bool:
    if name in SWITCH_VARS:
        return kind == "number" and value in ("0", "1")
    if name in CHARSET_VARS:
        return kind in ("word", "string") and value.strip("'").lower() in SAFE_CHARSETS
    if name == "collation_connection":
        return kind in ("word", "string") and _safe_collation(value)
    if name == "time_zone":
        return kind == "string" and bool(_TIME_ZONE.fullmatch(value[1:-1]))
    # sql_mode: modes that keep strings, quotes and escapes as the parser read them
    return kind == "string" and set(value[1:-1].upper().split(",")) <= SQL_MODES
