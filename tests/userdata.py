"""Runs a template's UserData script in bash with every command that would change this machine
(package managers, swap, downloads, services, cfn-init, cfn-signal) replaced by a stub that logs
its call, and the paths it writes (/swapfile, /opt/aws, /tmp/ssm.deb, /etc/apt/apt.conf.d/) moved
under tmp_path."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# Each stub logs "name args" to the call log and exits 0, unless given a body here.
LOGGED = ("apt-get", "python3", "pip", "curl", "systemctl", "udevadm", "fallocate", "mkswap",
          "swapon", "dd", "sleep", "cfn-init", "cfn-signal")
PACKAGE_MANAGERS = ("apt-get", "dnf", "pip", "dpkg")


@dataclass
class Run:
    calls: list[str]  # "name args", in the order the script made them
    swapfile: Path

    def names(self) -> list[str]:
        return [c.split()[0] for c in self.calls]

    def index(self, name: str) -> int:
        return self.names().index(name)

    def first_package_manager(self) -> int:
        """Index of the first call that installs software (apt-get, dnf, pip, dpkg -i)."""
        return min(i for i, c in enumerate(self.calls)
                   if c.split()[0] in PACKAGE_MANAGERS and "--print-architecture" not in c)


def run(tmp_path: Path, script: str, *, mem_kib: int = 464_000, dnf: bool = False,
        swapfile_exists: bool = False, bodies: dict[str, str] | None = None) -> Run:
    """Runs ``script``; ``dnf``: the machine has dnf (Amazon Linux), else apt-get (Debian);
    ``bodies``: stub bodies run after the call is logged (e.g. cfn-signal's refusals)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls"
    log.touch()
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       {mem_kib} kB\nMemFree:        1000 kB\n")
    swapfile = tmp_path / "swapfile"
    if swapfile_exists:
        swapfile.write_bytes(b"old")
    names = [*LOGGED, "dpkg", *(["dnf"] if dnf else [])]
    bodies = {"dpkg": '[ "$1" = --print-architecture ] && echo amd64; exit 0', **(bodies or {})}
    for name in names:
        body = bodies.get(name, "exit 0")
        (bindir / name).write_text(f'#!/bin/bash\necho "{name} $*" >> {log}\n{body}\n')
        (bindir / name).chmod(0o755)
    script = (script.replace("/opt/aws/bin/", f"{bindir}/").replace("/opt/aws", f"{tmp_path}/aws")
              .replace("/swapfile", str(swapfile)).replace("/proc/meminfo", str(meminfo))
              .replace("/tmp/ssm.deb", str(tmp_path / "ssm.deb"))
              .replace("/etc/apt/apt.conf.d/", f"{tmp_path}/apt.conf.d/"))
    (tmp_path / "apt.conf.d").mkdir()
    result = subprocess.run(["bash", "-c", script], env={"PATH": f"{bindir}:/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return Run(log.read_text().splitlines(), swapfile)
