"""The app's user and directory layout, bingo.ini, and the placeholder page before a first deploy.

    <root>/releases/<id>/     one directory per deployment (root's, read-only to the app)
    <root>/current            symlink to the serving release (the placeholder until a deploy)
    <root>/shared/bingo.ini   the app's settings and database password (root:<app group> 0640)

The app runs as a dedicated system user (no login shell, no sudo, no home of its own) that owns
nothing: the app writes no file (bingo-host renders its secret_key), so an exploit of it can
change neither its code nor its settings. It reads bingo.ini through its group.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import sys
from pathlib import Path

from ...ops import files
from ... import layout, subp

NAME = "app"


def _ensure_dir(ctx, path: str, mode: int, owner: str, group: str) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None

    def settle():
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        shutil.chown(path, owner, group)

    if st is None:
        ctx.change(f"create {path}", settle)
    elif (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (mode, pwd.getpwnam(owner).pw_uid,
                                                          grp.getgrnam(group).gr_gid):
        ctx.change(f"set {path} to {mode:04o} {owner}:{group}", settle)


def _ensure_user(ctx, user: str, home: str) -> None:
    """A system user and its group; make_context has already refused an existing user that
    must not run the app (facts/host.check_app_user)."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        ctx.change(f"create system user {user}", lambda: subp.run(
            ["useradd", "--system", "--user-group", "--home-dir", home, "--no-create-home",
             "--shell", ctx.platform.nologin, user]))


def _ensure_bin_link(ctx) -> None:
    """/usr/local/bin/bingo-host -> this installation, for units, hooks and admins."""
    here = Path(sys.executable).parent / "bingo-host"
    if not here.exists():
        return  # running from a source tree (python -m bingo_host): nothing to link
    current = os.readlink(layout.BIN) if os.path.islink(layout.BIN) else None
    if current != str(here):
        ctx.change(f"link {layout.BIN} -> {here}", lambda: files.symlink(layout.BIN, str(here)))


def converge(ctx) -> str:
    cfg = ctx.cfg
    user = cfg.app.user
    root = cfg.app.root
    _ensure_user(ctx, user, root)
    if ctx.dry_run and ctx.changes:
        return ""
    _ensure_dir(ctx, root, 0o755, "root", "root")
    _ensure_dir(ctx, f"{root}/releases", 0o755, "root", "root")
    _ensure_dir(ctx, f"{root}/shared", 0o750, "root", user)
    _ensure_dir(ctx, layout.STATE_DIR, 0o755, "root", "root")
    for template in ("bingo.ini", "placeholder.html"):  # bingo.ini owes RELOAD_APP (uwsgi step)
        ctx.ensure_file(ctx.managed(template))
    current = f"{root}/current"
    if not os.path.lexists(current):
        ctx.change(f"point {current} at the placeholder page", lambda: os.symlink("placeholder", current))
    _ensure_bin_link(ctx)
    return f"{root} laid out for {user}"
