"""Every AWS API action bingo-host calls: the single list IAM policies are checked against."""

ACTIONS = (
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:CreateSnapshot",
    "ec2:CreateTags",
    "ec2:DeleteSnapshot",
    "secretsmanager:GetSecretValue",
    "ssm:GetParameter",
)
