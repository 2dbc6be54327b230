"""What sudo lets a user do, in sudo's own words: `sudo -n -l -U USER`.

sudoers has groups (%ops), aliases (User_Alias), uids (#1001), ALL, negations, includes, and
other sources (LDAP, sssd): only sudo reads all of them correctly, so bingo-host asks it
instead of reading the files. Without sudo installed nobody can use it. An answer that is
neither of sudo's two (not allowed / may run) is an error, never a yes or no.
"""

from __future__ import annotations

import shutil

from .. import subp
from ..errors import BingoHostError

NOISE = ("sudo: unable to resolve host ",)  # a warning sudo adds on a host without its own name


def parse_list(user: str, stdout: str) -> tuple[str, ...] | None:
    """The commands `sudo -l -U user` lists for user (each as sudo prints it, e.g. '(ALL : ALL)
    ALL'), () when it may run none; None when the output is neither answer."""
    lines = stdout.splitlines()
    if f"User {user} is not allowed to run sudo on " in stdout:
        return ()
    header = f"User {user} may run the following commands on "
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    if start is None:
        return None
    rules = []
    for line in lines[start + 1:]:
        if not line.startswith((" ", "\t")):  # the list ends at the first unindented line
            break
        rules.append(line.strip())
    return tuple(rules) or ("(sudo named no command)",)


def rules(user: str) -> tuple[str, ...]:
    """What sudo lets user run, () for nothing (or no sudo on this host). BingoHostError when
    sudo's answer cannot be read."""
    if shutil.which("sudo") is None:
        return ()
    result = subp.run(["sudo", "-n", "-l", "-U", user], rcs=(0, 1), timeout=60)
    found = parse_list(user, result.stdout)
    if found is None:
        said = [line for line in (result.stderr + result.stdout).splitlines()
                if line.strip() and not line.startswith(NOISE)]
        raise BingoHostError(f"cannot tell whether {user} may use sudo: `sudo -l -U {user}` said "
                             f"{said[0][:200] if said else 'nothing'!r} (exit {result.returncode})")
    return found
