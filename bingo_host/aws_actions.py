"""Every AWS API action bingo-host calls: the single lists IAM policies are checked against.

ACTIONS are called on a host (the instance role grants them); DEPLOYER_ACTIONS by
`bingo-host bundle --sign-key` where revisions are built (the deployer role grants them).
"""

ACTIONS = (
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:CreateSnapshot",
    "ec2:CreateTags",
    "ec2:DeleteSnapshot",
    "ec2:CreateVolume",
    "ec2:AttachVolume",
    "ec2:DetachVolume",
    "kms:Verify",
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter",
)

DEPLOYER_ACTIONS = (
    "kms:DescribeKey",
    "kms:Sign",
)
