"""bingo_host/aws_actions.py, the one table of AWS actions, against both sides: the calls the
code really makes, found in its source (`call(client, "Operation", ...)`, snapshot/ec2.py's
wrapper, and `<client>.operation_name(...)` for every operation of the services the code makes
clients for, from botocore's own service models), and what the templates' instance roles grant.
A call the table lacks, or a grant the code never makes, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import botocore.session
from botocore import xform_name

from bingo_host.aws_actions import ACTIONS, AGENT_ACTIONS, DEPLOYER_ACTIONS
from bingo_host.backup.store import IAM_ACTIONS as S3_ACTIONS
from bingo_host.snapshot.ec2 import IMPLIED_ACTIONS
from tests.templates import CONFIG_TEMPLATES, SCENARIOS, TEMPLATES, as_list, instance_statements

PACKAGE = Path(__file__).resolve().parent.parent / "bingo_host"


def _client_services(tree: ast.AST) -> set[str]:
    """Services named by `<anything>.client("svc", ...)` or `client("svc")` calls."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "client":
                found.add(node.args[0].value)
    return found


def _module_names(tree: ast.AST) -> set[str]:
    """Names a file binds by import: `integrity.verify(...)` is a module's, not a client's."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def calls_in_source(package: Path = PACKAGE) -> set[str]:
    trees = {path: ast.parse(path.read_text()) for path in package.rglob("*.py")}
    services = {action.split(":")[0] for action in ACTIONS + DEPLOYER_ACTIONS}
    for tree in trees.values():
        services |= _client_services(tree)
    services.discard("s3")  # S3's operation names are not its IAM actions: backup/store.py's table
    session = botocore.session.get_session()
    by_method = {}
    for service in services:
        for op in session.get_service_model(service).operation_names:
            by_method.setdefault(xform_name(op), set()).add(f"{service}:{op}")
    ec2_ops = set(session.get_service_model("ec2").operation_names)
    found = set()
    for path, tree in trees.items():
        modules = _module_names(tree)
        for node in ast.walk(tree):
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
            elif isinstance(func, ast.Attribute) and func.attr in by_method and (
                    (isinstance(func.value, ast.Name) and func.value.id not in modules)
                    or isinstance(func.value, (ast.Call, ast.Attribute))):
                found |= by_method[func.attr]
    found.discard("cloudformation:GetTemplate")  # jinja's Environment.get_template (render.py)
    return found


def granted_to_instance_roles() -> set[str]:
    """Every action any instance role of any template grants, in any scenario."""
    return {action for name in CONFIG_TEMPLATES for overrides in SCENARIOS.values()
            for statement in instance_statements(TEMPLATES[name], overrides)
            if statement["Effect"] == "Allow" for action in as_list(statement["Action"])}


def test_the_list_is_exactly_what_the_code_calls():
    called = calls_in_source()
    implied = {a for op, extra in IMPLIED_ACTIONS.items() if f"ec2:{op}" in called for a in extra}
    listed = set(ACTIONS) | set(DEPLOYER_ACTIONS)
    assert called | implied == listed, (called | implied) ^ listed
    assert not set(ACTIONS) & set(DEPLOYER_ACTIONS)


def test_the_templates_grant_what_the_code_calls_and_nothing_else():
    granted = granted_to_instance_roles()
    assert set(ACTIONS) - granted == set(), "the code calls it, no template grants it"
    assert granted - set(ACTIONS) - set(AGENT_ACTIONS) == set(), \
        "a template grants it, bingo-host never calls it (and the agent does not need it)"
    # An agent-only grant is one bingo-host never calls (S3 reads are both: the agent's on the
    # deployment bucket, bingo-host's on the backup prefix).
    assert not (set(AGENT_ACTIONS) - set(ACTIONS)) & calls_in_source()


def test_the_scan_sees_the_calls():
    called = calls_in_source()
    # One of each kind: the snapshot wrapper and a plain client method call.
    assert {"ec2:CreateSnapshot", "ec2:DescribeVolumes", "ec2:DescribeTags", "ssm:GetParameter",
            "secretsmanager:GetSecretValue", "kms:Verify", "kms:Sign", "s3:ListBucket",
            "s3:AbortMultipartUpload"} <= called


def test_the_scan_sees_a_new_service_and_ignores_modules(tmp_path):
    """A call through a client of a service the table never named is found (so the first test
    fails for it); `integrity.verify(...)` on an imported module is not a call to AWS."""
    (tmp_path / "metrics.py").write_text(
        "import boto3\nfrom . import integrity\n"
        "def ship(session):\n"
        "    session.client('cloudwatch').put_metric_data(Namespace='x', MetricData=[])\n"
        "    integrity.verify()\n")
    found = calls_in_source(tmp_path)
    assert "cloudwatch:PutMetricData" in found
    assert not any(a.endswith(":Verify") for a in found)
