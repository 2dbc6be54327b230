"""Launch = serving (ha.yaml): an Auto Scaling instance tells CloudFormation it is ready only once
its launch deployment passed ValidateService, and that it failed as soon as a hook of it fails,
so a rolling update waits for serving instances and a bad revision fails it at once.

`bingo-host launch-signal` (cfn-init, before the CodeDeploy agent is installed) arms it: the
signal is recorded (root-only) and the hooks send it once (deliver). When the deployment group
has no successful deployment (the stack's creation: nothing will be deployed at launch) there
is nothing to wait for, and SUCCESS goes at once.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager

from . import layout, state
from .errors import BingoHostError

log = logging.getLogger(__name__)

NO_GROUP = ("DeploymentGroupDoesNotExistException", "ApplicationDoesNotExistException")


class SignalError(BingoHostError):
    """A launch signal that could not be armed or sent."""


def _clients(region: str):
    # boto3 only where a signal is armed or owed: ~260 ms (-X importtime) every hook would pay.
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    config = Config(connect_timeout=3, read_timeout=15, retries={"mode": "standard", "total_max_attempts": 5})
    return (session.client("cloudformation", region_name=region, config=config),
            session.client("codedeploy", region_name=region, config=config))


@contextmanager
def _aws(what: str):
    """A failure inside is one line naming the action and AWS's code."""
    from botocore.exceptions import BotoCoreError, ClientError  # with boto3: see _clients

    try:
        yield
    except ClientError as exc:
        err = exc.response.get("Error", {})
        raise SignalError(f"{what}: {err.get('Code', '?')}: {err.get('Message', '')}".rstrip(": ")) from None
    except BotoCoreError as exc:
        raise SignalError(f"{what}: {exc}") from None


def deployed_before(codedeploy, application: str, group: str) -> bool:
    """Whether the deployment group has a successful deployment (then one runs at launch)."""
    from botocore.exceptions import ClientError  # with boto3: see _clients

    try:
        info = codedeploy.get_deployment_group(applicationName=application,
                                               deploymentGroupName=group).get("deploymentGroupInfo")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in NO_GROUP:  # the stack is being created
            return False
        raise
    if not isinstance(info, dict):
        raise SignalError(f"codedeploy:GetDeploymentGroup {application}/{group}: an answer without "
                          "deploymentGroupInfo")
    return bool((info.get("lastSuccessfulDeployment") or {}).get("deploymentId"))


def send(rec: dict, status: str, cloudformation) -> None:
    with _aws(f"cloudformation:SignalResource {status} to {rec['stack']}/{rec['resource']}"):
        cloudformation.signal_resource(StackName=rec["stack"], LogicalResourceId=rec["resource"],
                                       UniqueId=rec["instance_id"], Status=status)
    log.info(f"launch signal: {status} sent to {rec['stack']}/{rec['resource']} for {rec['instance_id']}")


def arm(stack: str, resource: str, region: str, application: str, group: str, instance_id: str,
        path: str | None = None, dry_run: bool = False, clients=None) -> str:
    """Record the signal this instance owes, or send SUCCESS now when no deployment will come;
    once per instance (cfn-hup re-runs cfn-init on updates: a recorded signal is never re-armed).
    What it did, one line."""
    path = path or layout.LAUNCH_SIGNAL_FILE
    if state.read_json(path) is not None:
        return f"launch signal: already armed ({path})"
    rec = {"stack": stack, "resource": resource, "region": region, "instance_id": instance_id}
    cloudformation, codedeploy = clients or _clients(region)
    with _aws(f"codedeploy:GetDeploymentGroup {application}/{group}"):
        pending = deployed_before(codedeploy, application, group)
    if dry_run:
        return f"launch signal: would {'arm it' if pending else 'send SUCCESS now'} ({path})"
    if pending:
        state.write_json(path, {**rec, "status": "pending"}, mode=0o600)
        return f"launch signal: armed; the launch deployment's ValidateService sends it ({path})"
    send(rec, "SUCCESS", cloudformation)
    state.write_json(path, {**rec, "status": "sent", "signal": "SUCCESS", "at": int(time.time())}, mode=0o600)
    return f"launch signal: SUCCESS sent (deployment group {group} has no successful deployment)"


def deliver(status: str, path: str | None = None) -> None:
    """Send the armed signal once (`status`: SUCCESS or FAILURE); nothing when none is owed. Never
    raises: a signal CloudFormation refuses (no update in progress: a scale-out) or that cannot be
    sent is logged and kept in the record, and the deployment goes on as it would have."""
    path = path or layout.LAUNCH_SIGNAL_FILE
    if not os.path.exists(path):
        return
    rec = state.read_json(path) or {}
    if rec.get("status") != "pending":
        return
    try:
        send(rec, status, _clients(rec["region"])[0])
        done = {"status": "sent", "signal": status}
    except (SignalError, KeyError) as exc:
        log.error(f"launch signal: {status} not sent: {exc}")
        done = {"status": "failed", "signal": status, "error": str(exc)}
    state.write_json(path, {**rec, **done, "at": int(time.time())}, mode=0o600)
