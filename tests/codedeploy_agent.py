"""The real AWS CodeDeploy agent's `codedeploy-local` in a test host.

The agent (Ruby, Apache-2.0) and the two gems Debian lacks are third-party test tools kept
outside the project, in the workplace's shared/ folder; `install-codedeploy-local` copies them
into a test host (Debian's ruby packages are in the test image). Found at $BINGO_CODEDEPLOY_SHARED,
next to the checkout (../shared), or at /work/shared.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AGENT = "/opt/codedeploy-agent/bin/codedeploy-local"
CONFIG = "/etc/codedeploy-agent/conf/codedeployagent.yml"
EVENTS = "BeforeInstall,Install,AfterInstall,ApplicationStart,ValidateService"


def shared_dir() -> Path:
    candidates = [os.environ.get("BINGO_CODEDEPLOY_SHARED"), REPO.parent / "shared", "/work/shared"]
    for c in candidates:
        if c and (Path(c) / "tools" / "install-codedeploy-local").is_file():
            return Path(c)
    raise FileNotFoundError("the CodeDeploy agent's installer (shared/tools/install-codedeploy-local) "
                            f"is not in any of {[str(c) for c in candidates if c]}: set "
                            "BINGO_CODEDEPLOY_SHARED to the folder holding tools/ and vendor/")


def install(host) -> None:
    """The agent into host, and the Debian packages it needs (already in the test image)."""
    script = shared_dir() / "tools" / "install-codedeploy-local"
    subprocess.run(["bash", str(script), str(host.root)], check=True, capture_output=True, text=True)
    packages = subprocess.run(["bash", str(script), "--packages"], check=True, capture_output=True,
                              text=True).stdout.split()
    host.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages, "unzip"],
             env={"DEBIAN_FRONTEND": "noninteractive"}, timeout=600)


def deploy(host, bundle: str, bundle_type: str, group_id: str = "bingo-group",
           group_name: str = "bingo-prod", events: str = EVENTS, env: dict | None = None,
           timeout: float = 1500) -> subprocess.CompletedProcess:
    """`codedeploy-local` as an operator would run it on the host (as root)."""
    return host.run([AGENT, "--bundle-location", bundle, "--type", bundle_type,
                     "--deployment-group", group_id, "--deployment-group-name", group_name,
                     "--application-name", "music-bingo", "--events", events],
                    env=env, check=False, timeout=timeout)


def deployment_id(output: str) -> str:
    """The id the agent gave the deployment (it prints the folder it deploys from)."""
    m = re.search(r"deployment from within folder \S+/(d-[A-Z0-9]+-local)", output)
    assert m, output
    return m.group(1)
