"""Checks of the CloudFormation templates in cloudformation/.

- cfn-lint passes on every template with no finding at all;
- the /etc/bingo-host/config.yaml that cfn-init writes, with sample parameter
  values substituted, is accepted by bingo-host's own config validator;
- no secret can leak: no password parameter, nothing secret in UserData or
  cfn-init metadata, the config only names where the password lives;
- the instance role grants every AWS action bingo-host calls
  (bingo_host.aws_actions.ACTIONS), and no more than it needs;
- the structural requirements (IMDSv2, retained encrypted data volume,
  private TLS-only bucket, pipeline, load balancer, CloudFront...).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bingo_host import layout, metrics
from bingo_host.facts import http
from bingo_host.status.records import overdue_hours
from tests import userdata
from tests.reports import HEALTHY_REPORT
from tests.templates import (ACCOUNT, CFN_DIR, CONFIG_PATH, CONFIG_TEMPLATES, PSEUDO, REGION, ROOT,
                             SAMPLE_PARAMETERS, SCENARIOS, STACK, TEMPLATE_FILES, TEMPLATES, Resolver,
                             as_list, config_files, instance_role, instance_statements, one,
                             rendered_config, resources)

PASSWORDISH = re.compile(r"pass(word)?|pwd|secret|credential|token", re.IGNORECASE)
# cfn-signal with cfn-init's exit status ($? right after it, or kept in $status).
SIGNAL = re.compile(r'cfn-signal -e (?:\$\?|"\$status") .*--resource (\w+)')


def validated_config(text: str, source: str):
    """The config parsed by bingo-host's own strict validator (raises ConfigError)."""
    # Imported here, not at module level, so that collection never depends on bingo_host.
    from bingo_host.config_file import load_config_text
    return load_config_text(text, source)


# ---------------------------------------------------------------- cfn-lint

def _cfn_lint_command() -> list[str]:
    beside = Path(sys.executable).with_name("cfn-lint")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("cfn-lint")
    if found:
        return [found]
    # cfn-lint has no __main__; its console script is cfnlint.runner:main.
    return [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())"]


def test_templates_exist():
    assert {"codedeploy-bucket.yaml", "single-instance.yaml", "ha.yaml"} <= set(TEMPLATES)
    assert CONFIG_TEMPLATES == ["ha.yaml", "single-instance.yaml"]


def test_cfn_lint_has_no_findings():
    result = subprocess.run([*_cfn_lint_command(), *map(str, TEMPLATE_FILES)],
                            capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), \
        f"cfn-lint (exit {result.returncode}):\n{result.stdout}{result.stderr}"


# ----------------------------------------------------------- config file

@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_config_file_is_valid_bingo_host_config(name, scenario):
    template = TEMPLATES[name]
    raw, text = rendered_config(template, SCENARIOS[scenario])
    assert "password: secretsmanager:${" in raw
    # ha.yaml's ARN is RDS's own secret ("rds!cluster-<uuid>"): the config must accept its '!'.
    cfg = validated_config(text, f"{name}:{CONFIG_PATH}")

    password = cfg.database.password
    assert password.startswith("secretsmanager:")
    assert cfg.platform == "auto"  # Debian 12 by default, AL2023 with its AMI parameters
    assert cfg.metrics.enabled  # the BingoHost alarms' data (observe: metrics push)
    # With MailDomain the app mails through SES as the stack's SMTP user, whose password the host
    # derives from the access key in SmtpSecret (which the instance role may read).
    resolver = Resolver(template, SCENARIOS[scenario])
    if "MailDomain" in SCENARIOS[scenario]:
        assert cfg.smtp.server == f"email-smtp.{REGION}.amazonaws.com"
        assert cfg.smtp.sender == "no-reply@bingo.example.com" and cfg.smtp.starttls
        assert cfg.smtp.username == resolver.ref("SmtpAccessKey")
        assert cfg.smtp.password == "secretsmanager:" + resolver.ref("SmtpSecret")
        role_policies = [p for r in resources(template, "AWS::IAM::Role").values()
                         for p in resolver.resolve(r["Properties"].get("Policies", []))]
        readable = {res for p in role_policies for st in p["PolicyDocument"]["Statement"]
                    if "secretsmanager:GetSecretValue" in as_list(st["Action"])
                    for res in as_list(st["Resource"])}
        assert cfg.smtp.password.removeprefix("secretsmanager:") in readable
    else:
        assert cfg.smtp.server is None
    assert cfg.app.health_path == "/api/health"
    assert cfg.app.requirement_overrides == ("mysql==0.0.3",)  # what the upstream app needs today
    if name == "single-instance.yaml":
        assert cfg.database.local
        assert password == "secretsmanager:" + Resolver(template).ref("DatabaseSecret")
        assert cfg.volume.device == "/dev/sdf"
        assert cfg.snapshots.enabled
        domain = SCENARIOS[scenario].get("DomainName")
        assert cfg.app.server_name == ((domain,) if domain else ("_",))
        assert cfg.https.domain == domain
        assert cfg.https.email == SCENARIOS[scenario].get("HttpsEmail")
    else:
        assert not cfg.database.local
        assert cfg.database.host == Resolver.SAMPLE_ATTRS["Endpoint.Address"]
        # The app has its own user and secret; the master login only creates that user.
        assert cfg.database.user != template["Parameters"]["MasterUsername"]["Default"]
        assert password == "secretsmanager:" + Resolver(template).ref("AppDatabaseSecret")
        assert cfg.database.admin_secret == "secretsmanager:" + Resolver.SAMPLE_ATTRS["MasterUserSecret.SecretArn"]
        written = {path for res in resources(template).values()
                   for cfg_ in res.get("Metadata", {}).get("AWS::CloudFormation::Init", {}).values()
                   if isinstance(cfg_, dict) for path in cfg_.get("files", {})}
        assert cfg.database.tls_ca in written  # cfn-init fetches the RDS CA bundle
        assert not cfg.snapshots.enabled
        assert "volume" not in yaml.safe_load(text)
        assert cfg.https.domain is None


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_config_file_is_private(name):
    (_, spec), = config_files(TEMPLATES[name])
    assert str(spec["mode"]) == "000600"
    assert spec["owner"] == "root" and spec["group"] == "root"


# ------------------------------------------------------------- no secrets

@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_no_password_parameters(name):
    for pname, spec in TEMPLATES[name].get("Parameters", {}).items():
        assert not spec.get("NoEcho"), f"NoEcho parameter {pname}"
        assert not PASSWORDISH.search(pname), f"password-ish parameter {pname}"
        assert not PASSWORDISH.search(str(spec.get("Default", ""))), pname


def _userdata_and_metadata(template: dict):
    for name, res in resources(template).items():
        if "Metadata" in res:
            yield f"{name}.Metadata", res["Metadata"]
        props = res.get("Properties", {})
        for holder in (props, props.get("LaunchTemplateData", {})):
            if "UserData" in holder:
                yield f"{name}.UserData", holder["UserData"]


def _refs(node) -> set[str]:
    """Names referenced by Ref, GetAtt and ${...} in a template fragment."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(".".join(value))
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found.update(re.findall(r"\$\{([^}!][^}]*)\}", text))
            found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_no_secret_in_userdata_or_metadata(name):
    template = TEMPLATES[name]
    secret_resources = set(resources(template, "AWS::SecretsManager::Secret"))
    for where, fragment in _userdata_and_metadata(template):
        dumped = json.dumps(fragment)
        assert "{{resolve:secretsmanager" not in dumped, where
        assert "{{resolve:ssm-secure" not in dumped, where
        for ref in _refs(fragment):
            assert not PASSWORDISH.search(ref.split(".")[0]) or ref.split(".")[0] in secret_resources \
                or ref.endswith("MasterUserSecret.SecretArn"), f"{where} references {ref}"
            assert "SecretString" not in ref, f"{where} references {ref}"
        if where.endswith("UserData"):
            # UserData only runs cfn-init and cfn-signal: it names no secret at all.
            assert not any(r.split(".")[0] in secret_resources or "MasterUserSecret" in r
                           for r in _refs(fragment)), where
            script = Resolver(template).resolve(fragment)
            assert "cfn-init" in script and SIGNAL.search(script)


def test_single_instance_password_is_generated_secret():
    template = TEMPLATES["single-instance.yaml"]
    secret = resources(template, "AWS::SecretsManager::Secret")["DatabaseSecret"]
    generate = secret["Properties"]["GenerateSecretString"]
    if not generate.get("ExcludePunctuation"):
        excluded = generate.get("ExcludeCharacters", "")
        assert all(c in excluded for c in "'\"\\;#`$ ")
    assert "SecretString" not in secret["Properties"]
    # The data volume outlives the stack, so does the password of its database.
    assert secret.get("DeletionPolicy") == "Retain"


def test_ha_master_password_is_managed_by_rds():
    _, cluster = one(TEMPLATES["ha.yaml"], "AWS::RDS::DBCluster")
    props = cluster["Properties"]
    assert props["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in props
    assert props["MasterUsername"] == {"Ref": "MasterUsername"}


# -------------------------------------------------------------------- IAM

def _grants(statements: list[dict], action: str) -> list[dict]:
    """Allow statements whose Action matches action (simple '*' wildcards expanded)."""
    return [s for s in statements if s["Effect"] == "Allow"
            and any(fnmatch.fnmatchcase(action.lower(), pattern.lower())
                    for pattern in as_list(s["Action"]))]


def _aws_actions() -> tuple[str, ...]:
    from bingo_host.aws_actions import ACTIONS
    return ACTIONS


def _on_backup_prefix(statements: list[dict], action: str, overrides: dict) -> list[dict]:
    """Grants of action whose resources all lie in the backup bucket (its ARN or its keys)."""
    bucket = f"arn:aws:s3:::{SAMPLE_BACKUP_BUCKET}"
    resolver = Resolver(TEMPLATES["single-instance.yaml"], overrides)
    return [s for s in _grants(statements, action)
            if all(str(arn).startswith(bucket) for arn in as_list(resolver.resolve(s["Resource"])))]


SAMPLE_BACKUP_BUCKET = SCENARIOS["backups"]["BackupBucketName"]


@pytest.mark.parametrize("scenario", ["defaults", "signed", "backups"])
@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_instance_role_grants_every_action_bingo_host_calls(name, scenario):
    """Rule: every action in bingo_host.aws_actions.ACTIONS must be granted, except
    that the ec2:* ones serve only the data-volume snapshots: where the config
    written by cfn-init disables snapshots (ha.yaml: no data volume, Aurora
    backs the database up), they are not required and must not be granted; and
    kms:* serves only signed revisions: granted exactly when the config requires
    signatures; s3:* serves only backups: granted on the backup bucket exactly
    when the config enables them (the deployment bucket's reads are cfn-init's
    and the agent's, checked below)."""
    template = TEMPLATES[name]
    statements = instance_statements(template, SCENARIOS[scenario])
    _, text = rendered_config(template, SCENARIOS[scenario])
    config = yaml.safe_load(text)
    snapshots = config.get("snapshots", {}).get("enabled", True)
    signed = config.get("deploy", {}).get("require_signature", False)
    assert signed == (scenario == "signed")
    backups = config.get("backups", {}).get("enabled", False)
    assert backups == (scenario == "backups" and name == "single-instance.yaml")

    def grants(action):
        if action.startswith("s3:"):
            return _on_backup_prefix(statements, action, SCENARIOS[scenario])
        return _grants(statements, action)

    launch = "launch-signal" in json.dumps(template)  # ha.yaml's Auto Scaling instances
    optional = {"ec2": snapshots, "kms": signed, "s3": backups, "cloudformation": launch, "codedeploy": launch}
    required = [a for a in _aws_actions() if optional.get(a.split(":")[0], True)]
    missing = [a for a in required if not grants(a)]
    assert not missing, f"{name}: instance role lacks {missing}"
    unneeded = [a for a in _aws_actions() if a not in required and grants(a)]
    assert not unneeded, f"{name}: the config does not need {unneeded}, but the role grants them"
    for statement in _grants(statements, "kms:Verify"):
        assert statement["Resource"] == config["deploy"]["signing_key"] == SCENARIOS["signed"]["SigningKeyArn"]

    # Least privilege: no wildcard service-wide grants.
    for statement in statements:
        for action in as_list(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), statement


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_instance_role_resources_are_restricted(name):
    template = TEMPLATES[name]
    resolver = Resolver(template)
    statements = instance_statements(template)
    _, text = rendered_config(template, {})
    config = yaml.safe_load(text)
    named = {value.removeprefix("secretsmanager:")
             for value in (config["database"]["password"], config["database"].get("admin_secret"),
                           config.get("musicbingo", {}).get("secret_key"))
             if value and value.startswith("secretsmanager:")}

    # The secrets: exactly the ones the config names.
    granted = set()
    for statement in _grants(statements, "secretsmanager:GetSecretValue"):
        granted.update(as_list(resolver.resolve(statement["Resource"])))
    assert granted == named
    # The bucket: only the deployment bucket.
    bucket = SAMPLE_PARAMETERS["BundleBucketName"]
    for action in ("s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"):
        grants = _grants(statements, action)
        assert grants, f"{name}: no {action}"
        for statement in grants:
            for arn in as_list(resolver.resolve(statement["Resource"])):
                assert arn in (f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"), arn
    # Snapshots: tagging only while creating a snapshot or volume, or the restore's own marks on
    # this stack's volumes; creating snapshots only of this stack's tagged volumes (the data
    # volume, first or restored) and only tagged with this stack's name; deleting only those.
    for statement in _grants(statements, "ec2:CreateTags"):
        _check_tagging(resolver.resolve(statement))
    for statement in _grants(statements, "ec2:DeleteSnapshot"):
        assert statement["Condition"] == {
            "StringEquals": {"aws:ResourceTag/bingo-host:stack": {"Ref": "AWS::StackName"}}}
    creates = _grants(statements, "ec2:CreateSnapshot")
    arns = {arn for s in creates for arn in as_list(resolver.resolve(s["Resource"]))}
    tagged = f"arn:aws:ec2:{REGION}:{ACCOUNT}:volume/*"  # under the stack-tag condition
    assert arns in (set(), {tagged, f"arn:aws:ec2:{REGION}::snapshot/*"}), arns
    for statement in creates:
        arns = as_list(resolver.resolve(statement["Resource"]))
        if any(":snapshot/" in arn for arn in arns):
            assert statement["Condition"] == {
                "StringEquals": {"aws:RequestTag/bingo-host:stack": {"Ref": "AWS::StackName"}}}
        if tagged in arns:
            assert statement["Condition"] == {
                "StringEquals": {"aws:ResourceTag/bingo-host:stack": {"Ref": "AWS::StackName"}}}
    for statement in statements:
        if any(not a.startswith("ec2:Describe") for a in as_list(statement["Action"])):
            # PutMetricData has no resource-level permissions: its namespace condition limits it.
            if statement["Action"] == "cloudwatch:PutMetricData":
                assert statement["Condition"] == {"StringEquals": {"cloudwatch:namespace": "BingoHost"}}
                continue
            assert statement["Resource"] != "*", statement

    _, role = instance_role(template)
    managed = [resolver.resolve(arn) for arn in role["Properties"]["ManagedPolicyArns"]]
    assert managed == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]


def test_backups_reach_only_this_stacks_prefix_of_the_backup_bucket():
    """The instance writes, reads and deletes dumps under <stack>/ of the backup bucket only,
    lists only that prefix, never deletes object versions, and never writes the deployment
    bucket; the backup bucket's own stack keeps deleted dumps (versioning) and refuses
    unencrypted uploads and plain HTTP."""
    template = TEMPLATES["single-instance.yaml"]
    overrides = SCENARIOS["backups"]
    resolver = Resolver(template, overrides)
    statements = instance_statements(template, overrides)
    bucket = f"arn:aws:s3:::{SAMPLE_BACKUP_BUCKET}"
    for action in ("s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload", "s3:DeleteObject"):
        grants = _grants(statements, action)
        assert grants, action
        for statement in grants:
            assert as_list(resolver.resolve(statement["Resource"])) == [f"{bucket}/{STACK}/*"], statement
    (listing,) = _on_backup_prefix(statements, "s3:ListBucket", overrides)
    assert resolver.resolve(listing["Resource"]) == bucket
    assert resolver.resolve(listing["Condition"]) == {"StringLike": {"s3:prefix": f"{STACK}/*"}}
    assert not _grants(statements, "s3:DeleteObjectVersion")
    _, text = rendered_config(template, overrides)
    config = validated_config(text, "single-instance.yaml backups")
    assert (config.backups.enabled, config.backups.bucket, config.backups.prefix) == (
        True, SAMPLE_BACKUP_BUCKET, f"{STACK}/")

    backup = TEMPLATES["backup-bucket.yaml"]
    _, bucket_res = one(backup, "AWS::S3::Bucket")
    props = bucket_res["Properties"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled" and bucket_res["DeletionPolicy"] == "Retain"
    assert all(props["PublicAccessBlockConfiguration"].values())
    _, policy = one(backup, "AWS::S3::BucketPolicy")
    denies = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"}
    assert denies["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert denies["DenyUnencryptedDumps"]["Condition"] == {"Null": {"s3:x-amz-server-side-encryption": "true"}}


RETENTION_ACTIONS = ("s3:DeleteObjectVersion", "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration")


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_the_instance_role_cannot_shorten_backup_retention(name):
    """No way for the instance to remove a dump for good: no version deletes, no versioning,
    lifecycle or bucket-policy changes, no Recycle Bin actions (its snapshots stay there)."""
    statements = instance_statements(TEMPLATES[name], SCENARIOS["backups"])
    for action in (*RETENTION_ACTIONS, "s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
                   "s3:PutBucketObjectLockConfiguration", "rbin:DeleteRule", "rbin:UpdateRule",
                   "ec2:RestoreSnapshotFromRecycleBin"):
        assert not _grants(statements, action), (name, action)


@pytest.mark.parametrize("admins", [[], ["arn:aws:iam::123456789012:role/BackupAdmin"]])
def test_backup_bucket_denies_removing_versions_to_all_but_root_and_admins(admins):
    """What the lifecycle keeps, only the account root (and RetentionAdminArns) can remove."""
    backup = TEMPLATES["backup-bucket.yaml"]
    _, bucket = one(backup, "AWS::S3::Bucket")
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-deleted-dumps"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": {"Ref": "NoncurrentVersionDays"}}
    _, policy = one(backup, "AWS::S3::BucketPolicy")
    assert policy["DeletionPolicy"] == "Retain"  # stays on the retained bucket
    resolver = Resolver(backup, {"RetentionAdminArns": admins} if admins else None)
    denies = {s["Sid"]: resolver.resolve(s) for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    deny = denies["OnlyAdminsRemoveVersions"]
    assert (deny["Effect"], deny["Principal"], sorted(deny["Action"])) == ("Deny", "*", sorted(RETENTION_ACTIONS))
    arn = f"arn:aws:sample:{REGION}:{ACCOUNT}:BackupBucket"
    assert deny["Resource"] == [arn, f"{arn}/*"]
    assert deny["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": [f"arn:aws:iam::{ACCOUNT}:root", *admins]}}


def test_deleted_snapshots_stay_in_the_recycle_bin():
    """Tag-level rule on the tag bingo-host puts on its snapshots (and its retention matches
    on): a deleted snapshot of this stack is recoverable for SnapshotRecycleDays."""
    from bingo_host.snapshot.ec2 import STACK_TAG

    template = TEMPLATES["single-instance.yaml"]
    _, rule = one(template, "AWS::Rbin::Rule")
    resolver = Resolver(template)
    props = resolver.resolve(rule["Properties"])
    assert props["ResourceType"] == "EBS_SNAPSHOT"
    assert props["ResourceTags"] == [{"ResourceTagKey": STACK_TAG, "ResourceTagValue": STACK}]
    assert props["RetentionPeriod"] == {"RetentionPeriodUnit": "DAYS", "RetentionPeriodValue": "14"}
    assert "SnapshotRecycleDays" in str(rule["Properties"]["RetentionPeriod"])
    assert "ExcludeResourceTags" not in props and "LockConfiguration" not in props
    # ha.yaml has no data volume and takes no EBS snapshots (Aurora keeps its own backups).
    assert not resources(TEMPLATES["ha.yaml"], "AWS::Rbin::Rule")


def _check_tagging(statement: dict) -> None:
    from bingo_host.restore import ebs

    cond = statement["Condition"]
    if "ec2:CreateAction" in cond.get("StringEquals", {}):
        assert cond["StringEquals"]["ec2:CreateAction"] in ("CreateSnapshot", "CreateVolume")
        return
    assert cond["StringEquals"]["aws:ResourceTag/bingo-host:stack"] == STACK, statement
    assert sorted(cond["ForAllValues:StringEquals"]["aws:TagKeys"]) == sorted(ebs.MARKS), statement
    assert all(":volume/" in arn for arn in as_list(statement["Resource"])), statement


def test_restore_moves_only_this_stacks_volumes():
    """What `restore --snapshot` calls (CreateVolume, AttachVolume, DetachVolume, CreateSnapshot
    of the volume it made) is granted only on volumes (and the instance) tagged with this
    stack's name, and CreateVolume only for an encrypted volume that carries that tag."""
    template = TEMPLATES["single-instance.yaml"]
    resolver = Resolver(template)
    statements = [resolver.resolve(s) for s in instance_statements(template)]
    for action in ("ec2:CreateVolume", "ec2:AttachVolume", "ec2:DetachVolume", "ec2:CreateSnapshot",
                   "ec2:DeleteTags"):
        grants = _grants(statements, action)
        assert grants, action
        for statement in grants:
            for arn in as_list(statement["Resource"]):
                if ":snapshot/" in arn:
                    continue  # the snapshot a volume is made from, or the snapshot made
                assert arn.rsplit(":", 1)[1].split("/")[0] in ("volume", "instance"), arn
                equals = statement["Condition"]["StringEquals"]
                key = ("aws:RequestTag/bingo-host:stack" if action == "ec2:CreateVolume"
                       else "aws:ResourceTag/bingo-host:stack")
                assert equals[key] == STACK, (action, statement)
                if action == "ec2:CreateVolume":
                    assert statement["Condition"]["Bool"]["ec2:Encrypted"] == "true"


# ------------------------------------------------------------ instances

@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_launch_template_requires_imdsv2(name):
    _, lt = one(TEMPLATES[name], "AWS::EC2::LaunchTemplate")
    options = lt["Properties"]["LaunchTemplateData"]["MetadataOptions"]
    assert options["HttpTokens"] == "required"
    assert options["HttpPutResponseHopLimit"] in (1, 2)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_debian_12_ami_matches_instance_architecture(name, scenario):
    """Debian 12, the OS the suite boots end to end: the latest AMI of the instance type's
    architecture from Debian's public SSM parameters, resolved by EC2 when it launches an instance
    ("resolve:ssm:" in the launch template). AL2023's parameters stay named in the descriptions."""
    template = TEMPLATES[name]
    params = template["Parameters"]
    x86 = "/aws/service/debian/release/12/latest/amd64"
    arm64 = "/aws/service/debian/release/12/latest/arm64"
    assert (params["AmiX86"]["Default"], params["AmiArm64"]["Default"]) == (x86, arm64)
    for pname, arch in (("AmiX86", "x86_64"), ("AmiArm64", "arm64")):
        al2023 = f"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
        assert al2023 in " ".join(params[pname]["Description"].split()), pname
        assert re.fullmatch(params[pname]["AllowedPattern"], al2023)
    resolver = Resolver(template, SCENARIOS[scenario])
    _, lt = one(template, "AWS::EC2::LaunchTemplate")
    data = resolver.resolve(lt["Properties"]["LaunchTemplateData"])
    instance_type = resolver.ref("InstanceType")
    arm = instance_type.startswith("t4g.")
    assert data["ImageId"] == "resolve:ssm:" + (arm64 if arm else x86)
    # Debian's image tooling registers its AMIs with root device /dev/xvda, as AL2023's are: the
    # mapping makes the root volume gp3 and encrypted (another name would add a second volume).
    (root,) = data["BlockDeviceMappings"]
    assert root["DeviceName"] == "/dev/xvda" and root["Ebs"]["Encrypted"] is True
    if name == "single-instance.yaml":
        assert params["InstanceType"]["Default"] == "t3a.nano"
    assert "t4g.nano" in params["InstanceType"]["AllowedValues"]


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_an_update_that_changes_nothing_keeps_the_instances(name):
    """An AWS::SSM::Parameter::Value parameter is resolved again by every stack update: once
    AWS publishes a new AMI, any update (even with no change) gave the launch template a new
    version, which replaces the instance (single-instance: with its data volume still attached
    to the old one). The AMI is resolved by EC2 at launch instead; ImageId pins one on purpose."""
    template = TEMPLATES[name]
    for pname, spec in template["Parameters"].items():
        assert not spec["Type"].startswith("AWS::SSM::Parameter::Value"), pname
    _, lt = one(template, "AWS::EC2::LaunchTemplate")
    pinned = Resolver(template, {"ImageId": "ami-0123456789abcdef0"})
    assert pinned.resolve(lt["Properties"]["LaunchTemplateData"])["ImageId"] == "ami-0123456789abcdef0"
    assert re.fullmatch(template["Parameters"]["ImageId"]["AllowedPattern"], "ami-0123456789abcdef0")
    assert template["Parameters"]["ImageId"]["Default"] == ""


def test_single_instance_type_change_is_no_replacement():
    """Every new launch template version replaces an AWS::EC2::Instance; its own InstanceType
    property is changed with a stop and start (same instance, same attached data volume)."""
    template = TEMPLATES["single-instance.yaml"]
    _, lt = one(template, "AWS::EC2::LaunchTemplate")
    assert "InstanceType" not in lt["Properties"]["LaunchTemplateData"]
    _, instance = one(template, "AWS::EC2::Instance")
    assert instance["Properties"]["InstanceType"] == {"Ref": "InstanceType"}


def _init_commands(template: dict) -> list[str]:
    """cfn-init commands in configSet order (commands of a config run sorted by name)."""
    (name, _), = config_files(template)
    init = template["Resources"][name]["Metadata"]["AWS::CloudFormation::Init"]
    resolver = Resolver(template)
    (config_set,) = init["configSets"].values()
    commands = []
    for config_name in config_set:
        assert set(init[config_name]) <= {"commands", "files"}, config_name
        for _, spec in sorted(init[config_name].get("commands", {}).items()):
            commands.append(resolver.resolve(spec["command"]))
    return commands


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_cfn_init_installs_bingo_host_and_bootstraps(name):
    commands = _init_commands(TEMPLATES[name])
    joined = "\n".join(commands)
    assert re.search(r"dnf install -y .*\bpython3\.11 python3\.11-pip\b", joined)
    # Debian 12's python3 is 3.11 (python3.11 below); venv needs python3-venv, `aws s3 cp` awscli
    assert re.search(r"apt-get install -y .*\bpython3-venv\b.*\bawscli\b", joined)
    assert "python3.11 -m venv /opt/bingo-host/venv" in joined
    bucket, wheel = SAMPLE_PARAMETERS["BundleBucketName"], SAMPLE_PARAMETERS["WheelKey"]
    assert f'aws s3 cp --region {REGION} "s3://{bucket}/{wheel}"' in joined
    assert "python3.11 -m bingo_host.install_floor" in joined  # tests/test_dependency_lock.py
    assert f"aws-codedeploy-{REGION}" in joined and "ruby" in joined
    assert commands.index("/opt/bingo-host/venv/bin/bingo-host bootstrap") >= 0
    assert not any("secret" in c.lower() or "password" in c.lower() for c in commands)


def test_single_instance_data_volume():
    template = TEMPLATES["single-instance.yaml"]
    volume_name, volume = one(template, "AWS::EC2::Volume")
    assert volume["DeletionPolicy"] == "Retain" and volume["UpdateReplacePolicy"] == "Retain"
    assert volume["Properties"]["Encrypted"] is True
    assert volume["Properties"]["VolumeType"] == "gp3"
    # The instance attaches it during the bootstrap its CreationPolicy waits for: the volume
    # must exist before the instance, never wait for it (a deadlock CloudFormation times out).
    instance, _ = one(template, "AWS::EC2::Instance")
    assert instance not in _dependencies(template, volume_name)
    assert volume_name in _dependencies(template, instance)


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_cfn_signal_goes_to_a_creation_policy(name):
    template = TEMPLATES[name]
    _, lt = one(template, "AWS::EC2::LaunchTemplate")
    script = Resolver(template).resolve(lt["Properties"]["LaunchTemplateData"]["UserData"])
    (signalled,) = SIGNAL.findall(script)
    (init_resource,) = re.findall(r"cfn-init .*--resource (\w+)", script)
    assert "AWS::CloudFormation::Init" in template["Resources"][init_resource]["Metadata"]
    policy = template["Resources"][signalled]["CreationPolicy"]["ResourceSignal"]
    assert policy["Timeout"] == "PT30M"


def test_single_instance_network_and_dns():
    template = TEMPLATES["single-instance.yaml"]
    _, sg = one(template, "AWS::EC2::SecurityGroup")
    ingress = sg["Properties"]["SecurityGroupIngress"]
    ssh = [r for r in ingress if r["FromPort"] == 22]
    assert [r.get("CidrIp") for r in ssh] == [{"Ref": "SshCidr"}]
    public = {(r["FromPort"], r["ToPort"]) for r in ingress if r.get("CidrIp") == "0.0.0.0/0"}
    assert public == {(80, 80), (443, 443)}
    record = resources(template, "AWS::Route53::RecordSet")["DnsRecord"]
    assert record["Condition"] in template["Conditions"]



@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_single_instance_url_says_http_until_bootstrap_has_the_certificate(scenario):
    """Bootstrap gets the certificate only once the domain resolves to the instance (until then
    it serves plain HTTP), so Url is http://; HttpsUrl exists only with a domain and an e-mail,
    and says when it answers."""
    template = TEMPLATES["single-instance.yaml"]
    params = SCENARIOS[scenario]
    resolver = Resolver(template, params)
    outputs = template["Outputs"]
    host = params.get("DomainName") or resolver.resolve({"Ref": "ElasticIp"})
    assert resolver.resolve(outputs["Url"]["Value"]) == f"http://{host}/"
    assert outputs["HttpsUrl"]["Condition"] == "HasHttps"
    assert "bootstrap gets the certificate" in outputs["HttpsUrl"]["Description"]
    if params.get("DomainName"):
        assert resolver.resolve(outputs["HttpsUrl"]["Value"]) == f"https://{params['DomainName']}/"

# ------------------------------------------------------------ deployment

def test_bucket_is_versioned_encrypted_private_and_tls_only():
    template = TEMPLATES["codedeploy-bucket.yaml"]
    _, bucket = one(template, "AWS::S3::Bucket")
    props = bucket["Properties"]
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert all(props["PublicAccessBlockConfiguration"][k] is True for k in (
        "BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    _, policy = one(template, "AWS::S3::BucketPolicy")
    deny_tls = [s for s in policy["Properties"]["PolicyDocument"]["Statement"]
                if s["Effect"] == "Deny"
                and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
    assert deny_tls and deny_tls[0]["Action"] == "s3:*"
    outputs = template["Outputs"]
    assert "Export" in outputs["BucketName"] and "Export" in outputs["BundleUrl"]
    assert "Export" in outputs["SigningKeyArn"] and "Export" in outputs["DeployerRoleArn"]
    resolved = Resolver(template).resolve(outputs["BundleUrl"]["Value"])
    assert resolved.endswith("/musicbingo-prod.zip")


def _tags(resource: dict) -> dict:
    return {t["Key"]: t["Value"] for t in resource["Properties"].get("Tags", [])}


def test_only_tagged_deployers_write_the_bucket_and_the_deployer_signs():
    """Objects in the bucket run as root on every instance: PutObject is denied to every
    principal without the bingo-host:bucket-writer tag, which the deployer role and the
    pipelines' roles carry; the deployer role signs with the stack's asymmetric key."""
    from bingo_host.aws_actions import DEPLOYER_ACTIONS

    template = TEMPLATES["codedeploy-bucket.yaml"]
    resolver = Resolver(template)
    _, policy = one(template, "AWS::S3::BucketPolicy")
    statements = resolver.resolve(policy["Properties"]["PolicyDocument"]["Statement"])
    (deny,) = [s for s in statements if s["Effect"] == "Deny" and "s3:PutObject" in as_list(s["Action"])]
    assert deny["Principal"] == "*"
    assert deny["Condition"] == {"StringNotEquals": {"aws:PrincipalTag/bingo-host:bucket-writer": "true"}}
    _, key = one(template, "AWS::KMS::Key")
    assert (key["Properties"]["KeyUsage"], key["Properties"]["KeySpec"]) == ("SIGN_VERIFY", "RSA_3072")
    _, role = one(template, "AWS::IAM::Role")
    assert _tags(role) == {"bingo-host:bucket-writer": "true"}
    granted = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    for action in DEPLOYER_ACTIONS:
        (statement,) = _grants(granted, action)
        assert resolver.resolve(statement["Resource"]) == resolver.get_att("SigningKey", "Arn")
    assert _grants(granted, "s3:PutObject")
    for name in CONFIG_TEMPLATES:
        roles = resources(TEMPLATES[name], "AWS::IAM::Role")
        writers = [n for n, r in roles.items() if _tags(r).get("bingo-host:bucket-writer") == "true"]
        assert writers == ["PipelineRole"], name
        assert not _grants(instance_statements(TEMPLATES[name], SCENARIOS["signed"]), "s3:PutObject")


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_pipeline_deploys_bundle_with_codedeploy(name):
    template = TEMPLATES[name]
    resolver = Resolver(template)
    _, pipeline = one(template, "AWS::CodePipeline::Pipeline")
    source, deploy = resolver.resolve(pipeline["Properties"]["Stages"])
    (source_action,) = source["Actions"]
    assert source_action["ActionTypeId"]["Provider"] == "S3"
    assert source_action["Configuration"]["S3ObjectKey"] == "musicbingo-prod.zip"
    assert source_action["Configuration"]["S3Bucket"] == SAMPLE_PARAMETERS["BundleBucketName"]
    (deploy_action,) = deploy["Actions"]
    assert deploy_action["ActionTypeId"]["Provider"] == "CodeDeploy"
    group_name, group = one(template, "AWS::CodeDeploy::DeploymentGroup")
    assert deploy_action["Configuration"]["DeploymentGroupName"] == resolver.ref(group_name)
    props = group["Properties"]
    if name == "ha.yaml":
        assert props["DeploymentStyle"] == {"DeploymentType": "IN_PLACE",
                                            "DeploymentOption": "WITH_TRAFFIC_CONTROL"}
        assert props["DeploymentConfigName"] == "CodeDeployDefault.OneAtATime"
        assert props["LoadBalancerInfo"]["TargetGroupInfoList"]
    else:
        (tag_filter,) = props["Ec2TagFilters"]
        _, instance = one(template, "AWS::EC2::Instance")
        assert {"Key": tag_filter["Key"], "Value": tag_filter["Value"]} in instance["Properties"]["Tags"]


# -------------------------------------------------------------------- HA

def test_ha_database_cluster():
    template = TEMPLATES["ha.yaml"]
    _, cluster = one(template, "AWS::RDS::DBCluster")
    props = cluster["Properties"]
    assert props["Engine"] == "aurora-mysql"
    assert "ServerlessV2ScalingConfiguration" in props
    assert props["StorageEncrypted"] is True
    for db_instance in resources(template, "AWS::RDS::DBInstance").values():
        assert db_instance["Properties"]["DBInstanceClass"] == "db.serverless"
    # MySQL only from the instances' security group.
    sg_ref = props["VpcSecurityGroupIds"][0]["Fn::GetAtt"][0]
    (rule,) = template["Resources"][sg_ref]["Properties"]["SecurityGroupIngress"]
    assert (rule["FromPort"], rule["ToPort"]) == (3306, 3306)
    assert rule["SourceSecurityGroupId"] == {"Fn::GetAtt": ["InstanceSecurityGroup", "GroupId"]}
    assert "CidrIp" not in rule


def test_ha_auto_scaling_and_load_balancer():
    template = TEMPLATES["ha.yaml"]
    _, asg = one(template, "AWS::AutoScaling::AutoScalingGroup")
    assert int(Resolver(template).resolve(asg["Properties"]["MinSize"])) >= 2
    assert template["Parameters"]["MinInstances"]["MinValue"] >= 2
    assert not resources(template, "AWS::EC2::Volume")
    _, target_group = one(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    # What decides an instance's replacement (HealthCheckType ELB) is the shallow check, which a
    # shared database's outage never fails: the config cfn-init writes names it, apart from the
    # deep check ValidateService and status use.
    config = yaml.safe_load(rendered_config(template, {})[1])
    props = target_group["Properties"]
    assert asg["Properties"]["HealthCheckType"] == "ELB"
    assert props["HealthCheckPath"] == config["app"]["live_path"] == "/api/health/live"
    assert config["app"]["health_path"] == "/api/health"
    assert (props["HealthCheckIntervalSeconds"], props["HealthyThresholdCount"], props["UnhealthyThresholdCount"]) \
        == (15, 2, 3)
    assert props["Matcher"] == {"HttpCode": str(http.HEALTHY_STATUS)}
    listeners = {l["Properties"]["Port"]: l["Properties"]
                 for l in resources(template, "AWS::ElasticLoadBalancingV2::Listener").values()}
    # CloudFront reaches the origin over HTTPS only: nothing listens on port 80.
    assert list(listeners) == [443]
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]


def test_ha_load_balancer_answers_only_cloudfront():
    """The listener's default is 403; its one forwarding rule needs the header whose value
    CloudFront sends to the origin, both read from the same generated secret. Only 443 is open,
    and with CloudFrontPrefixListId only to CloudFront's addresses."""
    template = TEMPLATES["ha.yaml"]
    listener_name, listener = one(template, "AWS::ElasticLoadBalancingV2::Listener")
    (default,) = listener["Properties"]["DefaultActions"]
    assert default["Type"] == "fixed-response"
    assert default["FixedResponseConfig"]["StatusCode"] == "403"
    _, rule = one(template, "AWS::ElasticLoadBalancingV2::ListenerRule")
    assert rule["Properties"]["ListenerArn"] == {"Ref": listener_name}
    (condition,) = rule["Properties"]["Conditions"]
    header = condition["HttpHeaderConfig"]
    (forward,) = rule["Properties"]["Actions"]
    assert forward["Type"] == "forward"
    _, dist = one(template, "AWS::CloudFront::Distribution")
    (origin,) = dist["Properties"]["DistributionConfig"]["Origins"]
    (sent,) = origin["OriginCustomHeaders"]
    assert sent["HeaderName"] == header["HttpHeaderName"]
    assert [sent["HeaderValue"]] == header["Values"]
    secret = re.fullmatch(r"\{\{resolve:secretsmanager:\$\{(\w+)\}\}\}", sent["HeaderValue"]["Fn::Sub"]).group(1)
    assert "GenerateSecretString" in template["Resources"][secret]["Properties"]

    ingress = {n: r for n, r in resources(template, "AWS::EC2::SecurityGroupIngress").items()
               if r["Properties"]["GroupId"] == {"Fn::GetAtt": ["LoadBalancerSecurityGroup", "GroupId"]}}
    assert "SecurityGroupIngress" not in template["Resources"]["LoadBalancerSecurityGroup"]["Properties"]
    for pl, expected in (("", {"CidrIp": "0.0.0.0/0"}), ("pl-0123456789abcdef0", {"SourcePrefixListId": "pl-0123456789abcdef0"})):
        resolver = Resolver(template, {"CloudFrontPrefixListId": pl})
        (live,) = [r for r in ingress.values() if resolver.condition(r["Condition"])]
        props = resolver.resolve(live["Properties"])
        assert (props["FromPort"], props["ToPort"]) == (443, 443)
        assert {k: props[k] for k in expected} == expected


def test_ha_optional_waf_and_target_tracking():
    template = TEMPLATES["ha.yaml"]
    acl_name, acl = one(template, "AWS::WAFv2::WebACL")
    assert acl["Condition"] == "CreateWaf" and acl["Properties"]["Scope"] == "REGIONAL"
    groups = {r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in acl["Properties"]["Rules"]}
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"} <= groups
    _, association = one(template, "AWS::WAFv2::WebACLAssociation")
    assert association["Properties"] == {"ResourceArn": {"Ref": "LoadBalancer"},
                                         "WebACLArn": {"Fn::GetAtt": [acl_name, "Arn"]}}
    _, policy = one(template, "AWS::AutoScaling::ScalingPolicy")
    assert policy["Properties"]["PolicyType"] == "TargetTrackingScaling"
    assert policy["Properties"]["AutoScalingGroupName"] == {"Ref": "AutoScalingGroup"}
    assert policy["Properties"]["TargetTrackingConfiguration"]["TargetValue"] == {"Ref": "ScalingCpuTarget"}


def test_ha_cloudfront_caches_static_files_but_never_the_api():
    caching_optimized = "658327ea-f89d-4fab-a63d-7e88639e58f6"
    caching_disabled = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
    all_viewer = {"216adef6-5c7f-47e4-b989-5492eafa07d3",   # AllViewer
                  "b689b0a8-53d0-40ab-baf2-68738e2966ac"}   # AllViewerExceptHostHeader
    _, dist = one(TEMPLATES["ha.yaml"], "AWS::CloudFront::Distribution")
    config = dist["Properties"]["DistributionConfig"]
    assert config["DefaultCacheBehavior"]["CachePolicyId"] == caching_optimized
    (api,) = [b for b in config["CacheBehaviors"] if b["PathPattern"] == "/api/*"]
    assert api["CachePolicyId"] == caching_disabled
    assert api["OriginRequestPolicyId"] in all_viewer
    assert {"POST", "PUT", "DELETE"} <= set(api["AllowedMethods"])


def test_a_restore_may_delete_only_the_role_tag():
    """DeleteTags naming no key deletes every tag (and ForAllValues holds for no keys): the Null
    condition refuses that; only bingo-host:role may go, which is what hides a replaced volume
    from a replacement instance's attach."""
    template = TEMPLATES["single-instance.yaml"]
    statements = [Resolver(template).resolve(s) for s in instance_statements(template)]
    (grant,) = _grants(statements, "ec2:DeleteTags")
    assert grant["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"] == ["bingo-host:role"]
    assert grant["Condition"]["Null"]["aws:TagKeys"] == "false"


def test_single_instance_attaches_its_volume_and_shares_the_secret_key():
    """No volume id in the template's attachments: bootstrap attaches the volume by its tags, which
    the stack's volume carries, and the secret_key outlives the instance (Secrets Manager)."""
    template = TEMPLATES["single-instance.yaml"]
    assert not resources(template, "AWS::EC2::VolumeAttachment")
    _, text = rendered_config(template, {})
    cfg = yaml.safe_load(text)
    assert cfg["volume"]["attach_as"] == cfg["volume"]["device"] == "/dev/sdf"
    tags = {t["Key"]: t["Value"] for t in template["Resources"]["DataVolume"]["Properties"]["Tags"]}
    assert tags["bingo-host:role"] == "database" and tags["bingo-host:stack"] == {"Ref": "AWS::StackName"}
    assert template["Resources"]["DataVolume"]["Properties"]["AvailabilityZone"] == {"Ref": "AvailabilityZone"}
    key = cfg["musicbingo"]["secret_key"]
    assert key == "secretsmanager:" + Resolver(template).resolve({"Ref": "AppSecretKey"})
    statements = [Resolver(template).resolve(s) for s in instance_statements(template)]
    (read,) = _grants(statements, "secretsmanager:GetSecretValue")
    assert Resolver(template).resolve({"Ref": "AppSecretKey"}) in as_list(read["Resource"])
    assert "CreationPolicy" in template["Resources"]["Instance"]


def test_ha_instances_share_one_secret_key():
    """Tokens one instance signs must be accepted by the others behind the load balancer."""
    template = TEMPLATES["ha.yaml"]
    _, text = rendered_config(template, {})
    key = yaml.safe_load(text)["musicbingo"]["secret_key"]
    secret = resources(template, "AWS::SecretsManager::Secret")["AppSecretKey"]
    assert key == "secretsmanager:" + Resolver(template).resolve({"Ref": "AppSecretKey"})
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32


# ------------------------------------------------------- updates, gating

def _init_resource(template: dict) -> tuple[str, dict]:
    (name, _), = config_files(template)
    return name, template["Resources"][name]["Metadata"]["AWS::CloudFormation::Init"]


def _userdata(template: dict) -> str:
    _, lt = one(template, "AWS::EC2::LaunchTemplate")
    return Resolver(template).resolve(lt["Properties"]["LaunchTemplateData"]["UserData"])


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_cfn_hup_reruns_bootstrap_when_the_metadata_changes(name):
    """cfn-hup is set up first (a host whose bootstrap failed can still be fixed by an update);
    its hook watches the very metadata cfn-init reads and re-runs the same configSet, bingo-host
    bootstrap included; its unit is ours and enabled."""
    template = TEMPLATES[name]
    resource, init = _init_resource(template)
    (config_set,) = init["configSets"].values()
    assert config_set[0] == "cfn_hup" and "bootstrap" in config_set
    resolver = Resolver(template)
    files = resolver.resolve(init["cfn_hup"]["files"])
    main = files["/etc/cfn/cfn-hup.conf"]["content"]
    assert f"stack={PSEUDO['AWS::StackId']}\n" in main and f"region={REGION}\n" in main
    hooks = [f for path, f in files.items() if path.startswith("/etc/cfn/hooks.d/")]
    (hook,) = hooks
    lines = dict(line.split("=", 1) for line in hook["content"].splitlines() if "=" in line)
    assert lines["triggers"] == "post.update"
    assert lines["path"] == f"Resources.{resource}.Metadata.AWS::CloudFormation::Init"
    assert lines["runas"] == "root"
    (boot_init,) = re.findall(r"^(/opt/aws/bin/cfn-init .*)$", _userdata(template), re.M)
    assert lines["action"] == boot_init
    for spec in files.values():
        assert str(spec["mode"]) in ("000400", "000644") and spec["owner"] == "root"
    unit = files["/etc/systemd/system/cfn-hup.service"]["content"]
    assert "ExecStart=/opt/aws/bin/cfn-hup\n" in unit and "WantedBy=multi-user.target" in unit
    assert "Type=simple\n" in unit  # a child of PID 1, cfn-hup (python-daemon) stays in the foreground
    (enable,) = init["cfn_hup"]["commands"].values()
    assert "systemctl enable --now cfn-hup.service" in enable["command"]
    assert any("bingo-host bootstrap" in c["command"] for c in init["bootstrap"]["commands"].values())


def _dependencies(template: dict, name: str, seen: set | None = None) -> set[str]:
    """Every resource name must be created before (Ref, GetAtt, ${} and DependsOn, transitively)."""
    seen = set() if seen is None else seen
    res = template["Resources"][name]
    direct = {ref.split(".")[0] for ref in _refs(res.get("Properties", {}))}
    depends = res.get("DependsOn", [])
    direct |= set(as_list(depends))
    for dep in direct & set(template["Resources"]) - seen:
        seen.add(dep)
        _dependencies(template, dep, seen)
    return seen


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_pipeline_waits_for_bootstrap(name):
    """CodePipeline starts a run as soon as it is created: the deployment group (and so the
    pipeline) is created only after the resource that bootstrap's cfn-signal completes, so that
    run cannot reach a host whose CodeDeploy agent is not installed yet."""
    template = TEMPLATES[name]
    (signalled,) = SIGNAL.findall(_userdata(template))
    assert "CreationPolicy" in template["Resources"][signalled]
    for rtype in ("AWS::CodeDeploy::DeploymentGroup", "AWS::CodePipeline::Pipeline"):
        resource, _ = one(template, rtype)
        assert signalled in _dependencies(template, resource), f"{resource} may start before bootstrap ended"


def _run_userdata(tmp_path, template: dict, init_status: int, refusals: int) -> list[str]:
    """Runs the UserData script with cfn-init exiting init_status and cfn-signal refusing the first
    `refusals` signals (throttling, a network blip)."""
    count = tmp_path / "signal-count"
    refuse = (f'echo >> {count}; [ "$(wc -l < {count})" -gt {refusals} ] && exit 0\n'
              'echo "Throttling: Rate exceeded" >&2; exit 1')
    ran = userdata.run(tmp_path, _userdata(template),
                       bodies={"cfn-init": f"exit {init_status}", "cfn-signal": refuse})
    return [c.removeprefix("cfn-signal ") for c in ran.calls if c.startswith("cfn-signal ")]


def test_a_refused_signal_is_retried_until_taken(tmp_path):
    """single-instance: the instance's CreationPolicy waits for cfn-init's exit status; a signal
    lost to a refusal (throttling, a network blip) would leave the stack waiting out its 30
    minutes, so it is retried until taken, a failure's too."""
    template = TEMPLATES["single-instance.yaml"]
    signals = _run_userdata(tmp_path, template, init_status=7, refusals=4)
    assert len(signals) == 5
    assert all(re.search(r"(^| )-e 7 .*--resource Instance", s) for s in signals), signals


def test_a_signal_taken_at_once_is_sent_once(tmp_path):
    signals = _run_userdata(tmp_path, TEMPLATES["single-instance.yaml"], init_status=0, refusals=0)
    assert len(signals) == 1 and "-e 0 " in signals[0]


# ---------------------------------------------------------------- alarms

BINGO_NAMESPACE = layout.METRICS_NAMESPACE
TEMPLATE_BODY_LIMIT = 51_200  # bytes: CloudFormation's TemplateBody; larger ones need an S3 upload
STATUS_METRICS = {metrics.HEALTHY, *metrics.AGES}  # what pages someone when the host stops working


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda p: p.name)
def test_every_template_fits_the_template_body_limit(path):
    """`aws cloudformation deploy` sends a template inline only up to 51,200 bytes."""
    assert path.stat().st_size < TEMPLATE_BODY_LIMIT, f"{path.name}: {path.stat().st_size} bytes"


AWS_DOC = ROOT / "docs" / "aws.md"  # where the operator copies the deploy commands from


def _documented_deploy_commands() -> dict[str, list[str]]:
    """template file name -> the argv of docs/aws.md's `aws cloudformation deploy` of it."""
    text = AWS_DOC.read_text()
    commands = {}
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("aws cloudformation deploy "):
                argv = shlex.split(line, comments=True)
                commands[Path(argv[argv.index("--template-file") + 1]).name] = argv
    return commands


def _option_values(argv: list[str], option: str) -> list[str]:
    if option not in argv:
        return []
    values = []
    for arg in argv[argv.index(option) + 1:]:
        if arg.startswith("--"):
            break
        values.append(arg)
    return values


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda p: p.name)
def test_documented_deploy_commands_copy_paste_clean(path):
    """Each template's command in docs/aws.md names the capability its IAM resources need, --s3-bucket if
    it is over the inline limit, and every parameter without a default (sample values valid)."""
    argv = _documented_deploy_commands().get(path.name)
    assert argv, f"docs/aws.md has no `aws cloudformation deploy --template-file cloudformation/{path.name}`"
    assert Path(ROOT, argv[argv.index("--template-file") + 1]) == path
    template = TEMPLATES[path.name]
    iam = [r for r in resources(template).values() if r["Type"].startswith("AWS::IAM::")]
    named = [r for r in iam if r["Type"] != "AWS::IAM::AccessKey"  # its UserName names the user it is for
             and {"RoleName", "UserName", "GroupName", "ManagedPolicyName", "InstanceProfileName"}
             & set(r.get("Properties", {}))]
    capabilities = set(_option_values(argv, "--capabilities"))
    if named:
        assert "CAPABILITY_NAMED_IAM" in capabilities
    elif iam:
        assert capabilities & {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"}
    if path.stat().st_size >= TEMPLATE_BODY_LIMIT:
        assert _option_values(argv, "--s3-bucket")
    overrides = dict(v.split("=", 1) for v in _option_values(argv, "--parameter-overrides"))
    parameters = template.get("Parameters", {})
    assert set(overrides) <= set(parameters)
    assert {n for n, spec in parameters.items() if "Default" not in spec} <= set(overrides)
    for name, value in overrides.items():
        pattern = parameters[name].get("AllowedPattern")
        if pattern and "$(" not in value:
            assert re.fullmatch(pattern, value), f"{name}={value}"


def _alarms(template: dict) -> dict:
    return resources(template, "AWS::CloudWatch::Alarm")


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_alarms_notify_one_topic_with_an_optional_email(name):
    template = TEMPLATES[name]
    topic, _ = one(template, "AWS::SNS::Topic")
    _, subscription = one(template, "AWS::SNS::Subscription")
    assert subscription["Properties"]["TopicArn"] == {"Ref": topic}
    assert subscription["Properties"]["Protocol"] == "email"
    resolver = Resolver(template, {"AlarmEmail": "ops@example.com"})
    assert resolver.condition(subscription["Condition"])
    assert not Resolver(template).condition(subscription["Condition"])
    for alarm_name, alarm in _alarms(template).items():
        assert {"Ref": topic} in alarm["Properties"]["AlarmActions"], alarm_name
    assert template["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": topic}


INSIGHTS = re.compile(r"SELECT (?:MAX|MIN)\((\w+)\) FROM SCHEMA\((\w+), ([\w, ]+)\)")


def _watched_with_dimensions(alarm: dict) -> set[tuple[str, str, frozenset]]:
    """(namespace, metric, dimension names) an alarm watches: plain, in metric math, or in a
    Metrics Insights query (whose SCHEMA names exactly the dimensions of the metrics it reads)."""
    props = alarm["Properties"]
    if "MetricName" in props:
        return {(props["Namespace"], props["MetricName"], frozenset(d["Name"] for d in props["Dimensions"]))}
    found = set()
    for query in props["Metrics"]:
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            found.add((metric["Namespace"], metric["MetricName"],
                       frozenset(d["Name"] for d in metric.get("Dimensions", []))))
        else:
            expression = query["Expression"]
            expression = expression["Fn::Sub"] if isinstance(expression, dict) else expression
            if match := INSIGHTS.match(expression):
                found.add((match.group(2), match.group(1), frozenset(match.group(3).split(", "))))
    return found


def _watched(alarm: dict) -> set[tuple[str, str]]:
    return {(ns, metric) for ns, metric, _ in _watched_with_dimensions(alarm)}


def _stack_alarms(name: str, scenario: str) -> tuple[dict, object]:
    """The alarms a stack creates with the scenario's parameters, and its config as bingo-host reads it."""
    template = TEMPLATES[name]
    overrides = SCENARIOS[scenario]
    resolver = Resolver(template, overrides)
    alarms = {n: a for n, a in _alarms(template).items()
              if "Condition" not in a or resolver.condition(a["Condition"])}
    return alarms, validated_config(rendered_config(template, overrides)[1], f"{name}:{scenario}")


@pytest.mark.parametrize("name, scenario", [(n, s) for n in CONFIG_TEMPLATES for s in ("defaults", "backups")])
def test_alarms_watch_what_metrics_push_sends_and_missing_data_breaches(name, scenario):
    """Every BingoHost metric an alarm reads, with its dimensions, is one `metrics push` sends with
    the config the stack writes (metrics.metric_data, not a list copied here); every status-derived
    metric it sends has an alarm that takes no data (a dead host) as breaching."""
    alarms, cfg = _stack_alarms(name, scenario)
    sent = {(BINGO_NAMESPACE, d["MetricName"], frozenset(x["Name"] for x in d["Dimensions"]))
            for d in metrics.metric_data(HEALTHY_REPORT, cfg, 0, "i-0123456789abcdef0", 1.0)}
    watched = {}
    for alarm_name, alarm in alarms.items():
        for key in _watched_with_dimensions(alarm):
            if key[0] == BINGO_NAMESPACE:
                assert key in sent, f"{alarm_name} watches {key}, which metrics push never sends"
                watched.setdefault(key[1], []).append(alarm)
    status_sent = {metric for _, metric, _ in sent} & STATUS_METRICS
    assert metrics.HEALTHY in status_sent
    for metric in status_sent:
        assert watched.get(metric), f"no alarm on {metric}"
        for alarm in watched[metric]:
            assert alarm["Properties"]["TreatMissingData"] == "breaching", metric


@pytest.mark.parametrize("name, scenario", [(n, s) for n in CONFIG_TEMPLATES for s in ("defaults", "backups")])
def test_age_alarms_follow_the_configured_schedules(name, scenario):
    """An age alarm fires where `status` calls the run late: overdue_hours of the schedule the
    stack's config sets (two periods and an hour)."""
    alarms, cfg = _stack_alarms(name, scenario)
    for metric, (_, _, section, field) in metrics.AGES.items():
        found = [a for a in alarms.values() if a["Properties"].get("MetricName") == metric]
        if not getattr(cfg, section).enabled:
            assert not found, f"{metric}: alarmed on, but the config turns {section} off"
            continue
        (alarm,) = found
        props = alarm["Properties"]
        assert props["Threshold"] == overdue_hours(getattr(getattr(cfg, section), field)), metric
        assert props["ComparisonOperator"] == "GreaterThanThreshold"
        assert props["Period"] == 3600 and props["Statistic"] == "Minimum"


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_optional_site_health_check_alarms_where_route53_puts_metrics(name, monkeypatch):
    """SiteHealthCheck adds a Route 53 health check of /api/health; its alarm (missing data
    breaches) exists where Route 53 puts the metric, us-east-1, and notifies the topic."""
    template = TEMPLATES[name]
    check_name, check = one(template, "AWS::Route53::HealthCheck")
    (alarm,) = [a for a in _alarms(template).values() if a["Properties"].get("Namespace") == "AWS/Route53"]
    props = alarm["Properties"]
    assert props["Dimensions"] == [{"Name": "HealthCheckId", "Value": {"Ref": check_name}}]
    assert props["MetricName"] == "HealthCheckStatus" and props["TreatMissingData"] == "breaching"
    on = {"SiteHealthCheck": "true", **SCENARIOS["with-domain"]}
    assert not Resolver(template).condition(check["Condition"])
    assert Resolver(template, on).condition(check["Condition"])
    config = Resolver(template, on).resolve(check["Properties"]["HealthCheckConfig"])
    assert config["ResourcePath"] == "/api/health" and config["Type"] == "HTTPS"
    assert config["FullyQualifiedDomainName"] == on["DomainName"]
    assert not Resolver(template, on).condition(alarm["Condition"])  # eu-west-1
    monkeypatch.setitem(PSEUDO, "AWS::Region", "us-east-1")
    assert Resolver(template, on).condition(alarm["Condition"])


def test_single_instance_recovers_and_alarms_on_its_own_metrics():
    template = TEMPLATES["single-instance.yaml"]
    alarms = _alarms(template)
    instance, _ = one(template, "AWS::EC2::Instance")
    resolver = Resolver(template)
    (recovery,) = [a for a in alarms.values() if a["Properties"].get("MetricName") == "StatusCheckFailed_System"]
    props = resolver.resolve(recovery["Properties"])
    assert props["Namespace"] == "AWS/EC2"
    assert f"arn:aws:automate:{REGION}:ec2:recover" in props["AlarmActions"]
    assert recovery["Properties"]["Dimensions"] == [{"Name": "InstanceId", "Value": {"Ref": instance}}]
    watched = {metric for a in alarms.values() for ns, metric in _watched(a) if ns == BINGO_NAMESPACE}
    assert {"Http5xx", "MemoryUsedPercent", "SwapUsedPercent", "DiskUsedPercent"} | STATUS_METRICS == watched
    for alarm in alarms.values():
        props = alarm["Properties"]
        if props.get("Namespace") == BINGO_NAMESPACE:
            assert props["Dimensions"] == [{"Name": "InstanceId", "Value": {"Ref": instance}}]
        elif "Metrics" in props:  # a Metrics Insights query: of this instance only
            (query,) = props["Metrics"]
            assert resolver.resolve(query["Expression"]).endswith(
                f" WHERE InstanceId = '{resolver.ref(instance)}'")


def test_ha_alarms_on_the_load_balancer_and_every_instance():
    template = TEMPLATES["ha.yaml"]
    watched = set().union(*(_watched(a) for a in _alarms(template).values()))
    assert {("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"), ("AWS/ApplicationELB", "RequestCount"),
            ("AWS/ApplicationELB", "UnHealthyHostCount")} <= watched
    assert {m for ns, m in watched if ns == BINGO_NAMESPACE} == {
        "MemoryUsedPercent", "SwapUsedPercent", "DiskUsedPercent", metrics.HEALTHY}


@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_instance_role_puts_only_bingo_host_metrics_and_logs(name):
    template = TEMPLATES[name]
    statements = instance_statements(template)
    (put,) = _grants(statements, "cloudwatch:PutMetricData")
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": BINGO_NAMESPACE}}
    resolver = Resolver(template)
    for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
        (grant,) = _grants(statements, action)
        for arn in resolver.resolve(grant["Resource"]):
            assert arn.startswith(f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/bingo-host/"), arn


# ------------------------------------------------------------------ mail

@pytest.mark.parametrize("name", CONFIG_TEMPLATES)
def test_mail_identity_and_smtp_user_only_with_a_mail_domain(name):
    """SES identity for MailDomain (DKIM records where the zone is ours) and an SMTP user that may
    only send as that domain; its access key lands in a secret, never in an output."""
    template = TEMPLATES[name]
    with_mail = Resolver(template, {"MailDomain": "bingo.example.com", "HostedZoneId": "Z0123456789ABCDEFGHIJ"})
    without = Resolver(template)
    for rtype in ("AWS::SES::EmailIdentity", "AWS::IAM::User", "AWS::IAM::AccessKey"):
        _, res = one(template, rtype)
        assert with_mail.condition(res["Condition"]) and not without.condition(res["Condition"]), rtype
    _, user = one(template, "AWS::IAM::User")
    (policy,) = with_mail.resolve(user["Properties"]["Policies"])
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "ses:SendRawEmail"
    assert statement["Resource"] == f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/bingo.example.com"
    assert statement["Condition"] == {"StringLike": {"ses:FromAddress": "*@bingo.example.com"}}
    key_name, _ = one(template, "AWS::IAM::AccessKey")
    secret = resources(template, "AWS::SecretsManager::Secret")["SmtpSecret"]
    assert f"${{{key_name}.SecretAccessKey}}" in secret["Properties"]["SecretString"]["Fn::Sub"]
    dkim = [r for r in resources(template, "AWS::Route53::RecordSet").values()
            if r.get("Condition") == "CreateDkimRecords"]
    assert len(dkim) == 3
    assert "SecretAccessKey" not in json.dumps(template["Outputs"])


# --------------------------------------------------------------- checkov

def _checkov_command() -> list[str]:
    own_venv = ROOT / ".venv-checkov" / "bin" / "checkov"
    found = own_venv if own_venv.exists() else shutil.which("checkov")
    assert found, "checkov is not installed (scripts/install-test-deps puts it in .venv-checkov)"
    return [str(found)]


@pytest.fixture(scope="module")
def checkov_report() -> dict:
    """One checkov run over the whole directory (offline: --skip-download): its start-up is most
    of its cost, so the per-template tests share it."""
    result = subprocess.run(
        [*_checkov_command(), "--directory", str(CFN_DIR), "--framework", "cloudformation",
         "--skip-download", "--compact", "--output", "json"],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=300)
    report = json.loads(result.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    return report


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_checkov_passes_with_only_reasoned_inline_skips(name, checkov_report):
    """checkov fails no check; every skip is in the template's own metadata with a reason, none
    on the command line."""
    def of_this(kind: str) -> list[dict]:
        return [c for c in checkov_report["results"][kind] if c["file_path"] == f"/{name}"]
    failed = [f"{c['check_id']} {c['resource']}" for c in of_this("failed_checks")]
    assert not failed, failed
    assert of_this("passed_checks")
    skipped = of_this("skipped_checks")
    inline = {(s["id"], res_name) for res_name, res in resources(TEMPLATES[name]).items()
              for s in res.get("Metadata", {}).get("checkov", {}).get("skip", [])}
    assert {(c["check_id"], c["resource"].split(".", 1)[1]) for c in skipped} == inline
    for check in skipped:
        assert len(check["check_result"]["suppress_comment"] or "") > 20, check["check_id"]


def test_ha_app_database_password_is_its_own_secret_fit_for_the_apps_url():
    """The app logs in with its own user, not the RDS-managed master (rotated every 7 days);
    the app puts its password into a URL unquoted, so it has no punctuation."""
    template = TEMPLATES["ha.yaml"]
    _, text = rendered_config(template, {})
    database = yaml.safe_load(text)["database"]
    secret = resources(template, "AWS::SecretsManager::Secret")["AppDatabaseSecret"]
    assert database["password"] == "secretsmanager:" + Resolver(template).ref("AppDatabaseSecret")
    generate = secret["Properties"]["GenerateSecretString"]
    assert generate["ExcludePunctuation"] and generate["GenerateStringKey"] == "password"
    assert json.loads(generate["SecretStringTemplate"])["username"] == database["user"]


# ---------------------------------------------------------------- ha: launch = serving, WAF

def test_ha_instances_signal_through_bingo_host_once_their_launch_deployment_serves():
    """cfn-init arms bingo-host's launch signal after bootstrap and before the CodeDeploy agent
    (so no launch deployment can end before it is armed), for this stack's group and deployment
    group; the role may signal this stack only and read that deployment group only."""
    template = TEMPLATES["ha.yaml"]
    _, init = _init_resource(template)
    (config_set,) = init["configSets"].values()
    assert config_set.index("bootstrap") < config_set.index("launch_signal") < \
        config_set.index("install_codedeploy_agent")
    (command,) = init["launch_signal"]["commands"].values()
    argv = shlex.split(Resolver(template).resolve(command["command"]))
    assert argv[:2] == ["/opt/bingo-host/venv/bin/bingo-host", "launch-signal"]
    options = dict(zip(argv[2::2], argv[3::2]))
    _, group = one(template, "AWS::CodeDeploy::DeploymentGroup")
    assert options == {"--stack": STACK, "--resource": one(template, "AWS::AutoScaling::AutoScalingGroup")[0],
                       "--region": REGION, "--application": Resolver(template).resolve({"Ref": "CodeDeployApplication"}),
                       "--deployment-group": Resolver(template).resolve(group["Properties"]["DeploymentGroupName"])}
    statements = instance_statements(template, {})
    (signal,) = _grants(statements, "cloudformation:SignalResource")
    assert signal["Resource"] == {"Ref": "AWS::StackId"}  # this stack only
    (read,) = _grants(statements, "codedeploy:GetDeploymentGroup")
    assert Resolver(template).resolve(read["Resource"]) == (f"arn:aws:codedeploy:{REGION}:{ACCOUNT}:deploymentgroup:"
                                f"{options['--application']}/{options['--deployment-group']}")


@pytest.mark.parametrize("init_status, signals", [(0, []), (3, ["-e 3 "])])
def test_ha_userdata_signals_only_a_failed_cfn_init(tmp_path, init_status, signals):
    ran = userdata.run(tmp_path, _userdata(TEMPLATES["ha.yaml"]), bodies={"cfn-init": f"exit {init_status}"})
    sent = [c for c in ran.calls if c.startswith("cfn-signal ")]
    assert len(sent) == len(signals) and all(s in c for s, c in zip(signals, sent)), sent
    assert all("--resource AutoScalingGroup" in c for c in sent)


def test_ha_waf_lets_the_apis_bodies_through_and_has_no_ip_rule_behind_cloudfront():
    template = TEMPLATES["ha.yaml"]
    _, acl = one(template, "AWS::WAFv2::WebACL")
    groups = {r["Statement"]["ManagedRuleGroupStatement"]["Name"]: r["Statement"]["ManagedRuleGroupStatement"]
              for r in acl["Properties"]["Rules"]}
    assert "AWSManagedRulesAmazonIpReputationList" not in groups
    assert groups["AWSManagedRulesCommonRuleSet"]["RuleActionOverrides"] == [
        {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}]
