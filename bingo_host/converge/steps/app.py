"""The app's user and directory layout, bingo.ini, and the placeholder page before a first deploy.

    <root>/releases/<id>/     one directory per deployment (root's, read-only to the app)
    <root>/current            symlink to the serving release (the placeholder until a deploy)
    <root>/shared/bingo.ini   the app's settings and database password (root:<app group> 0640)

The app's system user (no shell, no sudo, no home) owns nothing, so an exploit of the app can
change neither its code nor its settings; it reads bingo.ini through its group. The build
account (layout.BUILD_USER, deploy/builder.py) owns only its home, its uv cache (<root>/uv-cache,
0700) and, during a build, its scratch directory.
"""

from __future__ import annotations

import os
import shutil

from ...errors import ConfigError
from ...facts import paths, users
from ...ops import files
from ... import __version__, layout, subp, versions

NAME = "app"


def _ensure_dir(ctx, path: str, mode: int, owner: str, group: str) -> None:
    st = ctx.fact(paths.stat, path)

    def settle():
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        shutil.chown(path, owner, group)

    if st is None:
        ctx.change(f"create {path}", settle)
    elif (st.mode, st.uid, st.gid) != (mode, ctx.fact(users.ids, owner)[0], ctx.fact(users.gid, group)):
        ctx.change(f"set {path} to {mode:04o} {owner}:{group}", settle)


def _ensure_user(ctx, user: str, home: str) -> None:
    """A system user and its group; make_context has already refused an existing user that
    must not run the app (resolve.check_app_user)."""
    if ctx.fact(users.ids, user) is None:
        ctx.change(f"create system user {user}", lambda: subp.run(
            ["useradd", "--system", "--user-group", "--home-dir", home, "--no-create-home",
             "--shell", ctx.platform.nologin, user]))


def _ensure_build_user(ctx, app_user: str) -> None:
    """The build account (deploy/builder.py): a system user with its own group (not the app's),
    no login shell, its home under bingo-host's state directory, created without a home (the
    home directory is made below with its mode)."""
    if app_user == layout.BUILD_USER:
        raise ConfigError("app.user", f"{app_user} is the account that builds the app's "
                                      "virtualenvs; the app needs a user of its own")
    found = ctx.fact(users.ids, layout.BUILD_USER)
    if found is None:
        ctx.change(f"create system user {layout.BUILD_USER} (builds the app's virtualenvs)",
                   lambda: subp.run(["useradd", "--system", "--user-group", "--home-dir",
                                     layout.BUILD_HOME, "--no-create-home", "--shell",
                                     ctx.platform.nologin, layout.BUILD_USER]))
        return
    if 0 in found:
        raise ConfigError("app", f"the existing user {layout.BUILD_USER} has uid or gid 0; the "
                                 "build account must be unprivileged (remove or rename it)")


def _ensure_bin_link(ctx) -> None:
    """/usr/local/bin/bingo-host -> this installation, for units, hooks and admins; never back
    to an older version than the one it runs (a bundle's upgrade outlives a cfn-init re-run)."""
    here = ctx.fact(paths.own_command)
    if here is None:
        return  # running from a source tree (python -m bingo_host): nothing to link
    target = ctx.fact(paths.readlink, layout.BIN)
    if target == here:
        return
    linked = ctx.fact(paths.bingo_host_version, layout.BIN) if target is not None else None
    if linked is not None and versions.newer(linked, __version__):
        ctx.warn(f"{layout.BIN} runs bingo-host {linked}, newer than this one "
                 f"({here}): left as it is")
        return
    ctx.change(f"link {layout.BIN} -> {here}", lambda: files.symlink(layout.BIN, here))


def converge(ctx) -> str:
    cfg = ctx.cfg
    user = cfg.app.user
    root = cfg.app.root
    _ensure_user(ctx, user, root)
    _ensure_build_user(ctx, user)
    if ctx.dry_run and ctx.changes:
        return ""
    _ensure_dir(ctx, root, 0o755, "root", "root")
    _ensure_dir(ctx, f"{root}/releases", 0o755, "root", "root")
    _ensure_dir(ctx, f"{root}/shared", 0o750, "root", user)
    _ensure_dir(ctx, layout.STATE_DIR, 0o755, "root", "root")
    _ensure_dir(ctx, layout.BUILD_HOME, 0o700, layout.BUILD_USER, layout.BUILD_USER)
    # Nothing inside BUILD_HOME is root's to manage: the account could put a link there (its
    # uv cache, <root>/uv-cache, is made at its first build: deploy/virtualenvs.py).
    _ensure_dir(ctx, layout.BUILD_WORK, 0o755, "root", "root")
    for template in ("bingo.ini", "placeholder.html"):  # bingo.ini owes RELOAD_APP (uwsgi step)
        ctx.ensure_file(ctx.managed(template))
    current = f"{root}/current"
    if not ctx.fact(paths.lexists, current):
        ctx.change(f"point {current} at the placeholder page", lambda: os.symlink("placeholder", current))
    _ensure_bin_link(ctx)
    return f"{root} laid out for {user}"
