"""Debian's policy-rc.d during an install: ours is marked, and never outlives the next run (the
packages step removing a leftover: tests/steps/packages/killed-install-left-policy-rc-d.yaml)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from bingo_host.facts.packages import policy_rc_d_is_ours
from bingo_host.ops import packages

REPO = Path(__file__).resolve().parent.parent
ADMINS = "#!/bin/sh\n# the admin's: hold everything off on this box\nexit 101\n"


def _killed_while_installing(path: Path) -> None:
    """A run SIGKILLed inside services_held_off, as during a long apt-get install."""
    code = ("import os, signal\nfrom bingo_host.ops.packages import services_held_off\n"
            f"with services_held_off(True, {str(path)!r}):\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == -signal.SIGKILL


def test_a_killed_install_leaves_a_marked_file_the_next_install_removes(tmp_path):
    path = tmp_path / "policy-rc.d"
    _killed_while_installing(path)
    assert path.read_text() == packages.POLICY_SCRIPT and os.access(path, os.X_OK)
    assert policy_rc_d_is_ours(str(path))
    with packages.services_held_off(True, str(path)):
        assert subprocess.run([str(path)]).returncode == 101  # held off meanwhile
    assert not path.exists()


def test_the_admins_policy_rc_d_is_kept(tmp_path):
    path = tmp_path / "policy-rc.d"
    path.write_text(ADMINS)
    assert not policy_rc_d_is_ours(str(path))
    with packages.services_held_off(True, str(path)):
        assert path.read_text() == ADMINS
    packages.remove_policy_rc_d(str(path))
    assert path.read_text() == ADMINS
