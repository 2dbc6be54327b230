"""Reading the config file: strict YAML (no aliases, duplicate keys or deep nesting), built into
a Config section by section, so every error names its field by dotted path and says why; every
error of a file at once (errors.ConfigErrors), an unknown key with the known one it resembles."""

from __future__ import annotations

import difflib
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from .config import Config
from .errors import ConfigError, raise_all
from .facts.systemd import systemd_calendar
from .fields import NotAllowed, clip, shown
from .path_fields import within


def _build(cls, data: Any, path: str, errors: list[ConfigError], checked: dict[str, Any]):
    """cls made from data, or None when a field of it is wrong; every error goes onto errors
    (in the file's order), every field that passed into checked by its dotted path."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(NotAllowed(path or "(top level)", "a mapping", data))
        return None
    known = {f.name: f for f in fields(cls)}
    values, failed = {}, False
    for key, value in data.items():
        f = known.get(key)
        where = f"{path}.{key}" if path else key
        if f is None:
            errors.append(_unknown(key, path, known))
            failed = True
        elif "section" in f.metadata:
            values[key] = _build(f.metadata["section"], value, where, errors, checked)
            failed = failed or values[key] is None
        else:
            try:
                values[key] = checked[where] = f.metadata["check"](value, where)
            except ConfigError as exc:
                errors.append(exc)
                failed = True
    if failed:
        return None
    try:
        return cls(**values)
    except ConfigError as exc:  # what one section's fields say together (__post_init__)
        errors.append(exc)
        return None


def _unknown(key: Any, path: str, known: dict) -> ConfigError:
    """An unknown key, with the known one it is closest to (a misspelling), if any."""
    name = clip(key) if isinstance(key, str) else shown(key)
    close = difflib.get_close_matches(key, known) if isinstance(key, str) else []
    hint = f"; did you mean {close[0]}?" if close else ""
    return ConfigError(f"{path}.{name}" if path else name,
                       f"unknown key{hint} (expected one of: {', '.join(known)})")


def _check_across(cfg: Config) -> list[ConfigError]:
    """What no single field can see: the data volume and the app tree must not overlap (the
    volume would hide the releases, or bootstrap would chown MariaDB's files to the app)."""
    root, mountpoint = cfg.app.root, cfg.volume.mountpoint
    if within(root, mountpoint) or within(mountpoint, root):
        return [ConfigError("volume.mountpoint", f"{mountpoint} overlaps app.root {root}: the data "
                                                 "volume and the app need separate trees")]
    return []


MAX_BYTES = 64 * 1024  # a full config with comments is ~3 KiB
MAX_DEPTH = 8  # a config needs four: the file, a section, a list, its items


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate and unhashable keys, aliases and deep nesting.

    Aliases are refused outright rather than counted: the config is a few flat sections, so no
    honest file needs one, while each alias can multiply the data ("billion laughs": 340 bytes
    became hundreds of MB). Nesting is capped so the recursive composer cannot overflow.
    """

    depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed: write the value out", event.start_mark)
        if self.depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None, None, f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # a list or mapping as a key
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain value, not a list or mapping",
                    key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {shown(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node, deep=False):
        # Built deep, at once: a constructor that trips on its input (2001-13-45, !!bool x, an
        # int beyond Python's 4300 digits) fails here, where its node is known.
        try:
            return super().construct_object(node, deep=True)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise yaml.constructor.ConstructorError(
                None, None, f"not a valid {node.tag.rsplit(':', 1)[-1]}", node.start_mark) from None


def load_config_text(text: str, source: str = "<string>", *, on_host: bool = False) -> Config:
    """The config in text, every error at once (ConfigErrors); on_host: with the checks that ask
    this host's tools (`config check` and `render`; bootstrap asks again before it writes the
    timers) of the fields that passed their own."""
    if len(text) > MAX_BYTES:
        raise ConfigError(source, f"larger than {MAX_BYTES // 1024} KiB: not a bingo-host config")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        problem = problem if len(problem) <= 200 else problem[:200] + "..."
        raise ConfigError(source, f"not valid YAML{where}: {problem}") from exc
    errors: list[ConfigError] = []
    checked: dict[str, Any] = {}
    cfg = _build(Config, data, "", errors, checked)
    if cfg is not None:
        errors += _check_across(cfg)
    if on_host:
        errors += _host_problems({**_defaults(), **checked})
    raise_all(errors)
    return cfg


def load_config(path: str | Path, *, on_host: bool = False) -> Config:
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # no further: the path may be /dev/zero
    except FileNotFoundError:
        raise ConfigError(str(path), "config file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read: {exc.strerror}") from exc
    if len(raw) > MAX_BYTES:
        raise ConfigError(str(path), f"larger than {MAX_BYTES // 1024} KiB: not a bingo-host config")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 text (byte {exc.start})") from None
    return load_config_text(text, str(path), on_host=on_host)


SCHEDULES = ("snapshots.schedule", "backups.schedule", "backups.drill_schedule", "patches.schedule")


def _defaults() -> dict[str, Any]:
    return {f"{section.name}.{f.name}": getattr(getattr(Config(), section.name), f.name)
            for section in fields(Config) if "section" in section.metadata
            for f in fields(section.metadata["section"])}


def _host_problems(values: dict[str, Any]) -> list[ConfigError]:
    """systemd's verdict on each schedule in values (dotted path: value; the backups' only when
    backups are enabled): the checks that ask this host's tools."""
    errors = []
    for path in SCHEDULES:
        if path.startswith("backups.") and not values["backups.enabled"]:
            continue
        try:
            systemd_calendar(values[path], path)
        except ConfigError as exc:
            errors.append(exc)
    return errors
