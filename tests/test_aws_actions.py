"""bingo_host/aws_actions.py (the list the IAM policies are checked against, in
test_cloudformation.py) against the AWS calls the code really makes, found in its source:
`call(client, "Operation", ...)` (snapshot/ec2.py's wrapper) and `client.operation_name(...)`
for every operation of the services the code talks to (botocore's own service models)."""

from __future__ import annotations

import ast
from pathlib import Path

import botocore.session
from botocore import xform_name

from bingo_host.aws_actions import ACTIONS, DEPLOYER_ACTIONS
from bingo_host.backup.store import IAM_ACTIONS as S3_ACTIONS
from bingo_host.snapshot.ec2 import IMPLIED_ACTIONS

PACKAGE = Path(__file__).resolve().parent.parent / "bingo_host"


def calls_in_source() -> set[str]:
    """Every action the code's calls need; S3 calls (on a client named `s3`) through
    backup/store.py's table, since S3's operation names are not its IAM actions."""
    services = {action.split(":")[0] for action in ACTIONS + DEPLOYER_ACTIONS} - {"s3"}
    session = botocore.session.get_session()
    by_method = {}
    for service in services:
        for op in session.get_service_model(service).operation_names:
            by_method.setdefault(xform_name(op), set()).add(f"{service}:{op}")
    ec2_ops = set(session.get_service_model("ec2").operation_names)
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "s3":
                # called or handed to store._call: every use of an S3 client method counts
                assert node.attr in S3_ACTIONS, f"{path}: s3.{node.attr} is not in store.IAM_ACTIONS"
                found |= set(S3_ACTIONS[node.attr])
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "call" and len(node.args) >= 2 \
                    and isinstance(node.args[1], ast.Constant) and node.args[1].value in ec2_ops:
                found.add(f"ec2:{node.args[1].value}")
            elif isinstance(func, ast.Attribute) and func.attr in by_method \
                    and isinstance(func.value, ast.Name) and func.value.id in ("client", "ec2", "frozen"):
                found |= by_method[func.attr]
    return found


def test_the_list_is_exactly_what_the_code_calls():
    called = calls_in_source()
    implied = {a for op, extra in IMPLIED_ACTIONS.items() if f"ec2:{op}" in called for a in extra}
    listed = set(ACTIONS) | set(DEPLOYER_ACTIONS)
    assert called | implied == listed, (called | implied) ^ listed
    assert not set(ACTIONS) & set(DEPLOYER_ACTIONS)


def test_the_scan_sees_the_calls():
    called = calls_in_source()
    # One of each kind: the snapshot wrapper and a plain client method call.
    assert {"ec2:CreateSnapshot", "ec2:DescribeVolumes", "ssm:GetParameter",
            "secretsmanager:GetSecretValue", "kms:Verify", "kms:Sign", "s3:ListBucket",
            "s3:AbortMultipartUpload"} <= called
