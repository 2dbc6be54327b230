"""Accounts by name: their uid and gid (None: there is no such account)."""

from __future__ import annotations

import grp
import pwd


def ids(user: str) -> tuple[int, int] | None:
    """(uid, primary gid) of user; None when there is no such user."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def gid(group: str) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None
