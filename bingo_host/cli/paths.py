"""The paths a user gives the commands, checked while the command line is parsed: a path that
cannot work (missing, under a regular file, the wrong type, not readable or not writable by
this user) is bad input, one line and exit 2, before anything changes. The work itself still
meets the host as it is then (a race, root-only checks): cli/__init__.py turns the OSError of
that into one line and exit 1.

Every path option and argument is one of these types (tests/test_cli_paths.py walks them all).
"""

from __future__ import annotations

import os
import stat

import click

READ = os.R_OK
SEARCH = os.X_OK
WRITE = os.W_OK


NOUNS = {"file": "a regular file", "dir": "a directory", "socket": "a unix socket"}


def _is(mode: int, kind: str) -> bool:
    return {"file": stat.S_ISREG, "dir": stat.S_ISDIR, "socket": stat.S_ISSOCK}[kind](mode)


def _what(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "neither a file nor a directory"


class UserPath(click.Path):
    """A path to read (kinds: file, dir, socket; several: any of them) or to write (output=True:
    a file written by replacing it, or a directory made if it is missing). Converts to str."""

    def __init__(self, *kinds: str, output: bool = False, metavar: str = "PATH", parents: bool = False):
        super().__init__(file_okay="file" in kinds or "socket" in kinds, dir_okay="dir" in kinds)
        self.kinds, self.output, self.metavar = kinds, output, metavar
        self.parents = parents  # output: the command makes missing directories above the path

    def get_metavar(self, param, ctx=None):  # click 8.2 added ctx
        return self.metavar

    def convert(self, value, param, ctx):
        path = os.fspath(value)
        problem = self.problem(path)
        if problem:
            self.fail(f"{path}: {problem}", param, ctx)
        return path

    def problem(self, path: str) -> str | None:
        """Why path cannot be used as this type; None if it can."""
        if not path:
            return "empty path"
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return self._new(path) if self.output else os.strerror(2)
        except OSError as exc:  # ENOTDIR (under a regular file), EACCES (a directory not searchable)
            return exc.strerror
        if not any(_is(st.st_mode, kind) for kind in self.kinds):
            return f"is {_what(st.st_mode)}, not {' or '.join(NOUNS[k] for k in self.kinds)}"
        if self.output:
            where = path if stat.S_ISDIR(st.st_mode) else _parent(path)
            return None if os.access(where, WRITE | SEARCH) else f"{where}: Permission denied"
        wanted = READ | SEARCH if stat.S_ISDIR(st.st_mode) else READ
        if stat.S_ISSOCK(st.st_mode):
            wanted = WRITE
        return None if os.access(path, wanted) else "Permission denied"

    def _new(self, path: str) -> str | None:
        """A path to write that is not there yet: its directory must be, and writable (with
        parents: the nearest directory that is)."""
        parent = _parent(path)
        while self.parents and not os.path.lexists(parent) and parent != os.path.dirname(parent):
            parent = os.path.dirname(parent)
        try:
            st = os.stat(parent)
        except OSError as exc:
            return f"{parent}: {exc.strerror}"
        if not stat.S_ISDIR(st.st_mode):
            return f"{parent}: Not a directory"
        return None if os.access(parent, WRITE | SEARCH) else f"{parent}: Permission denied"


def _parent(path: str) -> str:
    return os.path.dirname(os.path.abspath(path))


class ConfigPath(UserPath):
    """--config: a readable regular file, or none there (deploy runs without one, the commands
    that need one say so when they load it: "config file not found"); a path that cannot be
    one (its directory missing or not searchable, under a regular file) is refused, unless it
    is the default on a host not bootstrapped yet."""

    def __init__(self):
        super().__init__("file")

    def convert(self, value, param, ctx):
        default = ctx is not None and param is not None and \
            ctx.get_parameter_source(param.name) == click.core.ParameterSource.DEFAULT
        if _missing(value) and (default or os.path.isdir(_parent(value))):
            return os.fspath(value)
        return super().convert(value, param, ctx)


def _missing(path) -> bool:
    """Nothing at path (not: this user may not look)."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


IN_FILE = UserPath("file")
IN_DIR = UserPath("dir", metavar="DIR")
IN_FILE_OR_DIR = UserPath("file", "dir")
SOCKET = UserPath("socket")
OUT_FILE = UserPath("file", output=True, metavar="FILE")
OUT_DIR = UserPath("dir", output=True, metavar="DIR")
NEW_FILE = UserPath("file", output=True, metavar="PATH", parents=True)
