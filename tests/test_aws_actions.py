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
from bingo_host.snapshot.ec2 import IMPLIED_ACTIONS

PACKAGE = Path(__file__).resolve().parent.parent / "bingo_host"


def calls_in_source() -> set[str]:
    services = {action.split(":")[0] for action in ACTIONS + DEPLOYER_ACTIONS}
    session = botocore.session.get_session()
    by_method = {}
    for service in services:
        for op in session.get_service_model(service).operation_names:
            by_method.setdefault(xform_name(op), set()).add(f"{service}:{op}")
    ec2_ops = set(session.get_service_model("ec2").operation_names)
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
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
            "secretsmanager:GetSecretValue", "kms:Verify", "kms:Sign"} <= called
