"""Where the CodeDeploy agent puts a deployment, read the way the agent itself reads it.

The agent unpacks each revision into ``<root_dir>/<DEPLOYMENT_GROUP_ID>/<DEPLOYMENT_ID>/
deployment-archive``, where ``root_dir`` comes from its config file (``:root_dir:``). The hooks
find the revision (its appspec.yml, the bingo-host wheel) there, and `bingo-host deploy` lays a
deployment out in the same place (`Layout`), so hooks behave the same under both. The one reader
of the agent's config.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

import yaml

from . import DeployError

CONFIG = "/etc/codedeploy-agent/conf/codedeployagent.yml"
DEFAULT_ROOT_DIR = "/opt/codedeploy-agent/deployment-root"  # the agent's own default
ARCHIVES_TO_RETAIN = 5  # its :max_revisions: default (command_executor.rb)
TRACKING_DIR = "ongoing-deployment"  # its :ongoing_deployment_tracking: default (config.rb)
TRACKING_STALE_AFTER = 86400  # older tracking files are left-overs it deletes itself


def _setting(key: str, config: str | None):
    """One `:key:` of the agent's config; None when the file or the key is missing."""
    config = config or CONFIG
    try:
        with open(config) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        return None
    except (OSError, yaml.YAMLError) as exc:
        raise DeployError(f"{config}: cannot read the CodeDeploy agent's config: {exc}") from None
    return data.get(f":{key}") if isinstance(data, dict) else None


def root_dir(config: str | None = None) -> str:
    """The agent's deployment root: ``:root_dir:`` of its config, or the agent's default."""
    value = _setting("root_dir", config)
    return str(value).rstrip("/") if value else DEFAULT_ROOT_DIR


def max_revisions(config: str | None = None) -> int:
    """Deployment directories the agent keeps per group: ``:max_revisions:``, default 5."""
    value = _setting("max_revisions", config)
    if value is None:
        return ARCHIVES_TO_RETAIN
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if isinstance(value, bool) or count < 1:
        raise DeployError(f"{config or CONFIG}: invalid :max_revisions: {value!r} (the agent "
                          "refuses it too)")
    return count


def ongoing_deployments(config: str | None = None, now: float | None = None) -> list[str]:
    """Deployments the agent is running a lifecycle event of: the daemon writes
    ``<root_dir>/ongoing-deployment/<deployment id>`` before each event's command and deletes
    it after (deployment_command_tracker.rb); a file older than a day is one it ignores."""
    tracking = f"{root_dir(config)}/{_setting('ongoing_deployment_tracking', config) or TRACKING_DIR}"
    now = time.time() if now is None else now
    try:
        names = os.listdir(tracking)
    except OSError:
        return []
    found = []
    for name in sorted(names):
        try:
            if now - os.stat(f"{tracking}/{name}").st_mtime <= TRACKING_STALE_AFTER:
                found.append(name)
        except OSError:  # deleted meanwhile: that event is over
            continue
    return found


@dataclass(frozen=True)
class Layout:
    """One deployment's places under the agent's root_dir, as the agent names them:

        <root>/<group id>/<deployment id>/        the deployment directory
            bundle.tar -> BUNDLE                  (a file revision; a directory is copied instead)
            deployment-archive/                   the unpacked revision: hooks run from here
            logs/scripts.log                      every script's output, [stdout]/[stderr] lines
        <root>/deployment-instructions/
            <group id>_most_recent_install        deployment directory, written after DownloadBundle
            <group id>_last_successful_install    deployment directory, written after Install
            <group id>-cleanup                    what the last Install created (removed by the next)
            <group id>-install.json               the last Install's instructions
    """

    root: str
    group_id: str
    deployment_id: str
    group_dir: str = field(init=False)
    deployment_dir: str = field(init=False)
    archive: str = field(init=False)
    script_log: str = field(init=False)
    instructions: str = field(init=False)
    last_successful_install: str = field(init=False)
    most_recent_install: str = field(init=False)
    cleanup_file: str = field(init=False)
    install_file: str = field(init=False)

    def __post_init__(self):
        group = f"{self.root}/{self.group_id}"
        deployment = f"{group}/{self.deployment_id}"
        instructions = f"{self.root}/deployment-instructions"
        for name, path in (
                ("group_dir", group), ("deployment_dir", deployment),
                ("archive", f"{deployment}/deployment-archive"),
                ("script_log", f"{deployment}/logs/scripts.log"),
                ("instructions", instructions),
                ("last_successful_install", f"{instructions}/{self.group_id}_last_successful_install"),
                ("most_recent_install", f"{instructions}/{self.group_id}_most_recent_install"),
                ("cleanup_file", f"{instructions}/{self.group_id}-cleanup"),
                ("install_file", f"{instructions}/{self.group_id}-install.json")):
            object.__setattr__(self, name, path)


def archive_dir(env, config: str | None = None) -> str:
    """This deployment's unpacked revision; a DeployError naming the path when it is not there."""
    group, deployment = env.get("DEPLOYMENT_GROUP_ID"), env.get("DEPLOYMENT_ID")
    if not group or not deployment:
        raise DeployError("DEPLOYMENT_GROUP_ID and DEPLOYMENT_ID must be set (hooks run under the "
                          "CodeDeploy agent or `bingo-host deploy`)")
    path = Layout(root_dir(config), group, deployment).archive
    if not os.path.isfile(f"{path}/appspec.yml"):
        raise DeployError(f"the revision of deployment {deployment} is not at {path} (no appspec.yml "
                          f"there; the agent's root_dir is read from {config or CONFIG})")
    return path


def strip_leading_directory(dest: str) -> None:
    """The agent's rule: one top-level directory holding an appspec is the revision's root."""
    entries = os.listdir(dest)
    if len(entries) != 1:
        return
    top = os.path.join(dest, entries[0])
    if os.path.isdir(top) and not os.path.islink(top) \
            and any(re.search("appspec", e, re.I) for e in os.listdir(top)):
        tmp = f"{dest}.strip"
        os.rename(top, tmp)
        os.rmdir(dest)
        os.rename(tmp, dest)
