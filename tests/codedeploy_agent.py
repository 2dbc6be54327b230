"""The real AWS CodeDeploy agent's `codedeploy-local` in a test host.

The agent (Ruby, Apache-2.0) and the two gems Debian lacks (docopt, gli) are third-party test
tools, not part of the project: their source is read from $BINGO_CODEDEPLOY_SHARED/vendor/, from
../shared/vendor/ beside the checkout, or from what scripts/install-test-deps fetched at the pinned
releases, once per machine (scripts/fetch-codedeploy-agent into the test cache's codedeploy/vendor/). install() copies them
into a test host the way `gem install -i vendor` would lay them out; the agent's other gems are
Debian's ruby packages, in the test image.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.harness.image import CACHE_DIR

REPO = Path(__file__).resolve().parent.parent
AGENT = "/opt/codedeploy-agent/bin/codedeploy-local"
CONFIG = "/etc/codedeploy-agent/conf/codedeployagent.yml"
EVENTS = "BeforeInstall,Install,AfterInstall,ApplicationStart,ValidateService"
ENV = "BINGO_CODEDEPLOY_SHARED"
FETCHED = CACHE_DIR / "codedeploy"  # scripts/install-test-deps puts it here
GEMS = {"docopt": "0.5.0", "gli": "2.21.5"}  # gli: the bundled process_manager gem requires it
# The Debian packages the agent needs inside the host (also in tests/harness/image.py's image).
PACKAGES = ["ruby", "ruby-minitar", "ruby-zip", "ruby-logging", "ruby-aws-sdk-core", "ruby-aws-sdk-s3",
            "ruby-concurrent", "unzip"]


def has_agent(folder) -> bool:
    return bool(folder) and (Path(folder) / "vendor" / "aws-codedeploy-agent" / "bin" / "codedeploy-local").is_file()


def shared_dir() -> Path:
    """The folder whose vendor/ holds the agent's source."""
    for candidate in (os.environ.get(ENV), REPO.parent / "shared", FETCHED):
        if has_agent(candidate):
            return Path(candidate)
    raise FileNotFoundError(f"the CodeDeploy agent's source is not there: run scripts/install-test-deps, "
                            f"or set {ENV} to a folder holding vendor/aws-codedeploy-agent")


def install(host, packages: bool = True) -> None:
    """The agent into host, and the Debian packages it needs (already in the test image; a host
    with no route out, packages=False, takes them as the image has them)."""
    vendor = shared_dir() / "vendor"
    agent = host.root / "opt" / "codedeploy-agent"
    shutil.copytree(vendor / "aws-codedeploy-agent", agent, dirs_exist_ok=True)
    for name, version in GEMS.items():
        gem = agent / "vendor" / "gems" / f"{name}-{version}"
        shutil.copytree(vendor / f"{name}-{version}", gem, dirs_exist_ok=True)
        files = ",".join(f'"{f.relative_to(gem).as_posix()}"' for f in sorted((gem / "lib").rglob("*"))
                         if f.is_file())
        (agent / "vendor" / "specifications" / f"{name}-{version}.gemspec").write_text(
            f'Gem::Specification.new do |s|\n  s.name = "{name}"\n  s.version = "{version}"\n'
            f'  s.summary = "{name}"\n  s.authors = ["see LICENSE"]\n  s.require_paths = ["lib"]\n'
            f'  s.files = [{files}]\nend\n')
    subprocess.run(["chmod", "-R", "u+w", str(agent)], check=True)  # the source may be read-only
    conf = host.root / CONFIG.lstrip("/")
    conf.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(agent / "conf" / "codedeployagent.yml", conf)
    if packages:
        host.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
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
