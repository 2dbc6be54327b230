"""cloudformation/'s templates, loaded, and a Resolver of their intrinsic functions with sample
parameter values (SCENARIOS: every optional feature on): the config cfn-init writes, the role's grants."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CFN_DIR = ROOT / "cloudformation"
TEMPLATE_FILES = sorted(CFN_DIR.glob("*.yaml"))
CONFIG_PATH = "/etc/bingo-host/config.yaml"

REGION = "eu-west-1"
ACCOUNT = "123456789012"
STACK = "bingo-test"

# Values for parameters that have no Default (or whose Default is an SSM path).
SAMPLE_PARAMETERS = {
    "BundleBucketName": "bingo-deploy-bucket-1a2b3c",
    "WheelKey": "bingo_host-0.1.0-py3-none-any.whl",
    "CertificateArn": f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/0f0e0d0c-1111-2222-3333-444455556666",
    "OriginDomainName": "origin.bingo.example.com",
}
SAMPLE_BY_TYPE = {
    "AWS::EC2::VPC::Id": "vpc-0123456789abcdef0",
    "AWS::EC2::Subnet::Id": "subnet-0123456789abcdef0",
    "List<AWS::EC2::Subnet::Id>": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"],
    "AWS::EC2::AvailabilityZone::Name": f"{REGION}a",
    "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>": "ami-0123456789abcdef0",
}
# Extra parameter sets, on top of the defaults: every optional feature on.
SCENARIOS = {
    "defaults": {},
    "with-domain": {
        "DomainName": "bingo.example.com",
        "HttpsEmail": "admin@example.com",
        "HostedZoneId": "Z0123456789ABCDEFGHIJ",
        "CloudFrontCertificateArn": f"arn:aws:acm:us-east-1:{ACCOUNT}:certificate/abcd-0123",
        "InstanceType": "t4g.nano",
    },
    "signed": {"SigningKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
    "with-mail": {"MailDomain": "bingo.example.com"},
    "backups": {"BackupBucketName": "bingo-backups-1a2b3c"},
}
PSEUDO = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0000",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


# ---------------------------------------------------------------- loading

class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short tags (!Ref, !Sub, ...) into their long form."""


def _construct_tag(loader: CfnLoader, tag_suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass


TEMPLATES = {path.name: load_template(path) for path in TEMPLATE_FILES}


def resources(template: dict, rtype: str | None = None) -> dict:
    return {name: res for name, res in template.get("Resources", {}).items()
            if rtype is None or res["Type"] == rtype}


def one(template: dict, rtype: str) -> tuple[str, dict]:
    found = resources(template, rtype)
    assert len(found) == 1, f"expected one {rtype}, found {sorted(found)}"
    return next(iter(found.items()))


def config_files(template: dict):
    """(resource name, file spec) of every cfn-init file entry writing CONFIG_PATH."""
    for name, res in resources(template).items():
        init = res.get("Metadata", {}).get("AWS::CloudFormation::Init", {})
        for config_name, config in init.items():
            if config_name == "configSets":
                continue
            spec = config.get("files", {}).get(CONFIG_PATH)
            if spec is not None:
                yield name, spec


def init_commands(template: dict, config: str, overrides: dict | None = None) -> list[tuple[str, str, str | None]]:
    """(name, command, test) of one cfn-init config's commands, resolved with the overrides, in
    the order cfn-init runs them (by name): the command runs in a shell when its test (if any)
    exits 0, and must exit 0 itself. The file entry writing CONFIG_PATH names the resource."""
    (name, _), = config_files(template)
    spec = template["Resources"][name]["Metadata"]["AWS::CloudFormation::Init"][config]
    resolver = Resolver(template, overrides)
    found = []
    for key, command in sorted(spec.get("commands", {}).items()):
        assert set(command) <= {"command", "test"}, f"{config}.{key}: keys a test runner must honour"
        test = command.get("test")
        found.append((key, resolver.resolve(command["command"]), test and resolver.resolve(test)))
    return found


CONFIG_TEMPLATES = sorted(name for name, t in TEMPLATES.items() if list(config_files(t)))


# -------------------------------------------------------------- resolving

NO_VALUE = object()


class Resolver:
    """Evaluates the intrinsic functions of a template with sample values.

    Parameters take the scenario's value, else their Default, else a sample;
    resources resolve to sample IDs, ARNs and endpoints.
    """

    SAMPLE_ATTRS = {
        "Endpoint.Address": "bingo-test.cluster-c0ffee.eu-west-1.rds.amazonaws.com",
        "Endpoint.Port": "3306",
        "MasterUserSecret.SecretArn":
            f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!cluster-0123-abcdef-AbCdEf",
        "AvailabilityZone": f"{REGION}a",
        "DomainName": "d111111abcdef8.cloudfront.net",
        "DNSName": "bingo-test-alb-123456.eu-west-1.elb.amazonaws.com",
        "LatestVersionNumber": "1",
    }

    def __init__(self, template: dict, overrides: dict | None = None):
        self.template = template
        self.parameters = {}
        for name, spec in template.get("Parameters", {}).items():
            if overrides and name in overrides:
                value = overrides[name]
            elif name in SAMPLE_PARAMETERS:
                value = SAMPLE_PARAMETERS[name]
            elif spec["Type"] in SAMPLE_BY_TYPE:
                value = SAMPLE_BY_TYPE[spec["Type"]]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                raise AssertionError(f"no sample value for parameter {name}: add one to the test")
            self.parameters[name] = str(value) if isinstance(value, (int, float)) else value
        self.conditions = {}

    # -- names
    def ref(self, name: str):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return self.parameters[name]
        res = self.template["Resources"][name]
        if res["Type"] == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
        if res["Type"] == "AWS::EC2::Volume":
            return "vol-0123456789abcdef0"
        if res["Type"] == "AWS::EC2::EIP":
            return "203.0.113.10"
        return f"{STACK}-{name}-SAMPLE"

    def get_att(self, name: str, attribute: str):
        assert name in self.template["Resources"], f"GetAtt of unknown resource {name}"
        if attribute in self.SAMPLE_ATTRS:
            return self.SAMPLE_ATTRS[attribute]
        if attribute.endswith("Arn"):
            return f"arn:aws:sample:{REGION}:{ACCOUNT}:{name}"
        return f"{name}-{attribute}-SAMPLE"

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    # -- functions
    def sub(self, text: str, variables: dict) -> str:
        def replace(match: re.Match) -> str:
            expr = match.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in variables:
                value = variables[expr]
            elif expr in PSEUDO or expr in self.parameters or expr in self.template["Resources"]:
                value = self.ref(expr)
            else:
                resource, _, attribute = expr.partition(".")
                assert attribute, f"unresolvable ${{{expr}}}"
                value = self.get_att(resource, attribute)
            assert isinstance(value, str), f"${{{expr}}} is not a string: {value!r}"
            return value

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def resolve(self, node):
        if isinstance(node, list):
            return [v for v in (self.resolve(item) for item in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                return self.get_att(arg[0], ".".join(arg[1:]))
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg, {})
                text, variables = arg
                return self.sub(text, {k: self.resolve(v) for k, v in variables.items()})
            if key == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.condition(cond) else no)
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(self.resolve(items))
            if key == "Fn::Split":
                sep, text = arg
                return self.resolve(text).split(sep)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Base64":
                return self.resolve(arg)
            if key == "Fn::ImportValue":
                return f"imported-{self.resolve(arg)}"
            if key == "Fn::GetAZs":
                return [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in node.items()) if v is not NO_VALUE}


def rendered_config(template: dict, overrides: dict) -> tuple[str, str]:
    """(raw Fn::Sub text, resolved text) of the config file written by cfn-init."""
    files = list(config_files(template))
    assert len(files) == 1, f"expected one resource writing {CONFIG_PATH}"
    _, spec = files[0]
    content = spec["content"]
    assert isinstance(content, dict) and "Fn::Sub" in content, "config content must be an !Sub"
    sub = content["Fn::Sub"]
    raw = sub if isinstance(sub, str) else sub[0]
    return raw, Resolver(template, overrides).resolve(content)


# -------------------------------------------------------------------- IAM

def instance_role(template: dict) -> tuple[str, dict]:
    """The role of the instance profile used by the launch template."""
    _, lt = one(template, "AWS::EC2::LaunchTemplate")
    profile_ref = lt["Properties"]["LaunchTemplateData"]["IamInstanceProfile"]["Arn"]["Fn::GetAtt"][0]
    profile = template["Resources"][profile_ref]
    (role_ref,) = profile["Properties"]["Roles"]
    return role_ref["Ref"], template["Resources"][role_ref["Ref"]]


def instance_statements(template: dict, overrides: dict | None = None) -> list[dict]:
    """Statements of the inline policies of the instance role and of the policies attached to it
    (a statement under Fn::If as the parameters in overrides decide)."""
    role_name, role = instance_role(template)
    documents = [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
    for res in resources(template).values():
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            props = res["Properties"]
            if {"Ref": role_name} in props.get("Roles", []) or props.get("RoleName") == {"Ref": role_name}:
                documents.append(props["PolicyDocument"])
    statements = []
    resolver = Resolver(template, overrides)
    for doc in documents:
        found = doc["Statement"]
        for statement in found if isinstance(found, list) else [found]:
            if "Fn::If" in statement:
                statement = resolver.resolve(statement)
                if statement is NO_VALUE:
                    continue
            statements.append(statement)
    return statements


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]
