"""Where the CodeDeploy agent puts a deployment, read the way the agent itself reads it.

The agent unpacks each revision into ``<root_dir>/<DEPLOYMENT_GROUP_ID>/<DEPLOYMENT_ID>/
deployment-archive``, where ``root_dir`` comes from its config file (``:root_dir:``). The hooks
find the revision (its appspec.yml, the bingo-host wheel) there, and `bingo-host deploy` lays a
deployment out in the same place, so hooks behave the same under both.
"""

from __future__ import annotations

import os

from . import DeployError

CONFIG = "/etc/codedeploy-agent/conf/codedeployagent.yml"
DEFAULT_ROOT_DIR = "/opt/codedeploy-agent/deployment-root"  # the agent's own default


def root_dir(config: str = CONFIG) -> str:
    """The agent's deployment root: ``:root_dir:`` of its config, or the agent's default."""
    import yaml

    try:
        with open(config) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        return DEFAULT_ROOT_DIR
    except (OSError, yaml.YAMLError) as exc:
        raise DeployError(f"{config}: cannot read the CodeDeploy agent's config: {exc}") from None
    value = data.get(":root_dir") if isinstance(data, dict) else None
    return str(value).rstrip("/") if value else DEFAULT_ROOT_DIR


def deployment_dir(group_id: str, deployment_id: str, config: str = CONFIG) -> str:
    return f"{root_dir(config)}/{group_id}/{deployment_id}"


def archive_dir(env, config: str = CONFIG) -> str:
    """This deployment's unpacked revision; a DeployError naming the path when it is not there."""
    group, deployment = env.get("DEPLOYMENT_GROUP_ID"), env.get("DEPLOYMENT_ID")
    if not group or not deployment:
        raise DeployError("DEPLOYMENT_GROUP_ID and DEPLOYMENT_ID must be set (hooks run under the "
                          "CodeDeploy agent or `bingo-host deploy`)")
    path = f"{deployment_dir(group, deployment, config)}/deployment-archive"
    if not os.path.isfile(f"{path}/appspec.yml"):
        raise DeployError(f"the revision of deployment {deployment} is not at {path} (no appspec.yml "
                          f"there; the agent's root_dir is read from {config})")
    return path
