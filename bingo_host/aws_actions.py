"""Every AWS API action bingo-host calls: the single lists IAM policies are checked against.

ACTIONS are called on a host (the instance role grants them); DEPLOYER_ACTIONS by
`bingo-host bundle --sign-key` where revisions are built (the deployer role grants them).
tests/test_aws_actions.py fails when the code calls an action missing here, or the templates'
instance roles grant one that is neither here nor in AGENT_ACTIONS.
"""

ACTIONS = (
    "cloudformation:SignalResource",  # launch_signal (ha.yaml: on its own stack only)
    "codedeploy:GetDeploymentGroup",  # launch_signal: whether a launch deployment will come
    "cloudwatch:PutMetricData",  # `bingo-host metrics push` (metrics.enabled)
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:DescribeTags",
    "ec2:CreateSnapshot",
    "ec2:CreateTags",
    "ec2:DeleteTags",  # restore: the replaced volume loses bingo-host:role
    "ec2:DeleteSnapshot",
    "ec2:CreateVolume",
    "ec2:AttachVolume",
    "ec2:DetachVolume",
    "kms:Verify",
    # backups (backup/store.py): only under backups.prefix of backups.bucket
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:GetObject",
    "s3:ListBucket",
    "s3:PutObject",
    "s3:PutObjectTagging",
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter",
)

DEPLOYER_ACTIONS = (
    "kms:DescribeKey",
    "kms:Sign",
)

# Granted to the instance role for the agents beside bingo-host, which never calls them itself:
# the CodeDeploy agent downloads revisions from the bucket, the CloudWatch agent ships log files.
AGENT_ACTIONS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:ListBucket",
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:PutRetentionPolicy",
)
