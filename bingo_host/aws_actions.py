"""Every AWS API action bingo-host calls: the single lists IAM policies are checked against.

ACTIONS are called on a host (the instance role grants them); DEPLOYER_ACTIONS by
`bingo-host bundle --sign-key` where revisions are built (the deployer role grants them).
"""

ACTIONS = (
    "cloudwatch:PutMetricData",  # `bingo-host metrics push` (metrics.enabled)
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:CreateSnapshot",
    "ec2:CreateTags",
    "ec2:DeleteSnapshot",
    "kms:Verify",
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter",
)

DEPLOYER_ACTIONS = (
    "kms:DescribeKey",
    "kms:Sign",
)
