"""A Context that answers a step's reads from a recorded host (a case file under tests/steps/)
and carries out nothing: what a step would change on that host is its list of change
descriptions. pyinfra's operation tests are the model: facts in, changes out.

A case records, under ``facts``, each fact the step reads, named ``<module>.<function>`` of
bingo_host (``paths.exists``, ``systemd.states``, ``signatures.read_signature``). A fact read with plain
arguments (strings, numbers, None) is recorded under those arguments joined by spaces; one read
with none (other arguments, a cursor or a platform, are handles, not names) is recorded as its
value. A fact read for several items at once (``systemd.states(*units)``) is recorded per item.
Values are YAML, made into the function's return type (a dataclass from a mapping or a list,
a set from a list, ...). ``{raise: text}`` makes the read raise BingoHostError(text); the string
``handle`` answers a fact that opens something (``mariadb.connect``) with a stand-in that only
passes through to other facts and to changes.

Managed files are recorded by state under ``files`` (path, or ``*`` for every other one):
``same``, ``absent`` (create), ``differs`` (update), ``mode`` (chmod/chown), ``special``
(replace). ``pending`` lists the actions (e.g. ``reload nginx``) an earlier run left owed;
``secrets`` what the secrets step, earlier in the run, gave the context;
``remove_unknown_db_accounts`` the bootstrap option.

The outcome: ``changes``, the descriptions in order (``{uuid}`` stands for a new random UUID);
with none, ``detail``, what the step returned; ``error``, part of a failed step's message;
``warnings``. Options: ``platform`` (debian12), ``host`` (mem_mib, cpus), ``config`` (as in
config.yaml), ``dry_run``.

A read the case does not record fails the test, naming the fact and its key; so does a
recorded fact the step never reads (the case no longer says what it claims).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, Union

import yaml

from bingo_host.config_file import load_config_text
from bingo_host.context import Context
from bingo_host.errors import BingoHostError
from bingo_host.facts import platforms
from bingo_host.facts.host import HostFacts
from bingo_host.ops import files
from bingo_host.render import ManagedFile
from bingo_host.resolve import resolve

FILE_ACTIONS = {"absent": "create", "differs": "update", "mode": "chmod/chown", "special": "replace"}


class NotRecorded(BaseException):
    """The step read something its case does not record (not an Exception: the engine must
    not turn it into a failed step)."""


class Handle:
    """What a recorded ``handle`` fact gives the step: usable as a connection or a cursor (it
    opens and closes), readable by nothing but other recorded facts."""

    def __init__(self, name: str):
        self.name = name

    def cursor(self) -> "Handle":
        return self

    def close(self) -> None:
        pass

    def __enter__(self) -> "Handle":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __repr__(self) -> str:
        return f"<recorded {self.name}>"


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float))


def fact_name(fn: Callable) -> str:
    return f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}"


def convert(value: Any, hint: Any) -> Any:
    """A YAML value as the type ``hint`` says (dataclasses, containers, optionals)."""
    if value is None or hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return convert(value, options[0]) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        fields = typing.get_type_hints(hint)
        if isinstance(value, list):
            value = dict(zip(fields, value))
        return hint(**{k: convert(v, fields[k]) for k, v in value.items()})
    if origin is dict:
        return {convert(k, args[0]): convert(v, args[1]) for k, v in value.items()}
    if origin in (list, set, frozenset):
        return origin(convert(v, args[0]) for v in value)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(convert(v, args[0]) for v in value)
        return tuple(convert(v, a) for v, a in zip(value, args))
    return value


class RecordedContext(Context):
    def __init__(self, case: dict, name: str):
        platform = platforms.PLATFORMS[case.get("platform", "debian12")]
        host = case.get("host", {})
        facts = HostFacts(host.get("mem_mib", 512) << 20, host.get("cpus", 2),
                          datadir=host.get("datadir"), tls_domain=host.get("tls_domain"))
        cfg = load_config_text(yaml.safe_dump(case.get("config") or {}))
        super().__init__(resolve(cfg, platform, facts), platform, facts,
                         dry_run=case.get("dry_run", False))
        self.secrets.update(case.get("secrets", {}))  # what the secrets step gave the run
        self.remove_unknown_db_accounts = case.get("remove_unknown_db_accounts", False)
        self.case_name = name
        self.recorded = case.get("facts", {})
        self.files = case.get("files", {})
        self.left_owed = set(case.get("pending", []))
        self.read: set[tuple[str, str | None]] = set()
        self.files_read: set[str] = set()
        self.prefetched: set[str] = set()

    # -- reads --

    def prefetch(self, fn: Callable, *keys: Any) -> None:
        """The case answers each read itself; test_steps checks the step's UNITS name what it reads."""
        self.prefetched = set(keys)

    def fact(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        name = fact_name(fn)
        shown = f"{name}({', '.join(map(repr, args))})"
        if name not in self.recorded:
            raise NotRecorded(f"{self.case_name}: the step read {shown}; the case records no {name}")
        table = self.recorded[name]
        hint = typing.get_type_hints(fn).get("return", Any)
        varargs = any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(fn).parameters.values())
        if varargs and typing.get_origin(hint) is dict:  # answered per item
            return {a: self._answer(name, shown, table, str(a), typing.get_args(hint)[1]) for a in args}
        key = " ".join(str(a) for a in args if _plain(a))
        if not key:
            self.read.add((name, None))
            return self._value(table, hint, name)
        return self._answer(name, shown, table, key, hint)

    def _answer(self, name: str, shown: str, table: Any, key: str, hint: Any) -> Any:
        if not isinstance(table, dict) or key not in table:
            raise NotRecorded(f"{self.case_name}: the step read {shown}; the case records no "
                              f"{name} for {key!r}")
        self.read.add((name, key))
        value = table[key]
        if dataclasses.is_dataclass(hint) and "name" in {f.name for f in dataclasses.fields(hint)} \
                and isinstance(value, dict) and "name" not in value:
            value = {"name": key, **value}
        return self._value(value, hint, name)

    @staticmethod
    def _value(value: Any, hint: Any, name: str) -> Any:
        if isinstance(value, dict) and set(value) == {"raise"}:
            raise BingoHostError(value["raise"])
        if value == "handle":
            return Handle(name)
        return convert(value, hint)

    def file_change(self, mf: ManagedFile) -> files.FileChange | None:
        state = self.files.get(mf.path, self.files.get("*"))
        if state is None:
            raise NotRecorded(f"{self.case_name}: the step compared the managed file {mf.path}; the "
                              "case records no state for it (files: {path: same | absent | ...})")
        self.files_read.add(mf.path if mf.path in self.files else "*")
        if state == "same":
            return None
        return files.FileChange(mf.path, FILE_ACTIONS[state], "")

    def pending(self, action: str) -> bool:
        return action in self.owed or action in self.left_owed

    # -- changes: recorded, never carried out --

    def change(self, description: str, fn: Callable | None = None) -> Any:
        self.changes.append(description)
        return None

    def set_pending(self, action: str) -> None:
        self.owed.add(action)

    def done(self, action: str) -> None:
        self.owed.discard(action)
        self.left_owed.discard(action)

    def unread(self) -> list[str]:
        """What the case records that the step never read."""
        left = []
        for name, table in self.recorded.items():
            keys = table.keys() if isinstance(table, dict) and (name, None) not in self.read else [None]
            left += [f"{name} {key!r}" if key is not None else name
                     for key in keys if (name, key) not in self.read]
        left += [f"files {path!r}" for path in self.files if path not in self.files_read]
        return left


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}
