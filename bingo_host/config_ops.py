"""The config's sections for what runs beside the app: snapshots, backups, deploy's signature,
metrics, the CloudWatch agent, security updates and the firewall. Each field's doc is its line
in docs/configuration.md (scripts/config-reference)."""

from __future__ import annotations

from dataclasses import dataclass

from .fields import (boolean, choice, integer, kms_key_arn, optional, or_auto, pattern, required_with,
                     s3_bucket, s3_prefix, setting)
from .fields import schedule as on_calendar  # `schedule` is a field's name in the classes below


@dataclass(frozen=True)
class Snapshots:
    """EBS snapshots of the data volume: a systemd timer runs `bingo-host snapshot`."""
    enabled: bool = setting(True, boolean, "a timer runs `bingo-host snapshot`")
    schedule: str = setting("daily", on_calendar, "when the timer runs")
    keep: int = setting(7, integer(1, 1000), "snapshots kept per volume")
    volumes: str = setting("data", choice("data", "all"),
                           "data: the volume at volume.device only (bootstrap rebuilds the root "
                           "volume); all: every volume attached to the instance (the root one "
                           "crash-consistent)")
    stack: str = setting("auto", or_auto(pattern(
        r"[A-Za-z][A-Za-z0-9-]{0,127}", "a CloudFormation stack name: a letter, then letters, "
                                        "digits and '-', at most 128 characters")),
        "the bingo-host:stack tag every snapshot gets, the only ones retention deletes (the "
        "stack's IAM policy allows DeleteSnapshot on exactly these): auto = the instance's "
        "aws:cloudformation:stack-name tag, else its instance id")


@dataclass(frozen=True)
class Backups:
    """Logical dumps (`bingo-host backup`) to S3, beside the EBS snapshots (also for an external
    database), and restore drills that prove a dump restores."""
    enabled: bool = setting(False, boolean, "timers run `bingo-host backup` and "
                                             "`bingo-host restore-drill`")
    bucket: str | None = setting(None, optional(s3_bucket), "the S3 bucket the dumps go to; "
                                 "required when enabled (the instance role may write only the prefix)")
    prefix: str = setting("bingo-host/", s3_prefix, "the key prefix: "
                          "<prefix><database.name>-<UTC time>.sql.gz (and .json)")
    schedule: str = setting("daily", on_calendar, "when `bingo-host backup` runs")
    keep: int = setting(14, integer(1, 1000), "complete dumps kept")
    drill_schedule: str = setting("monthly", on_calendar, "when the latest dump is restored into a "
                                  "scratch database and its row counts checked")

    def __post_init__(self):
        required_with(self.enabled, self.bucket, "backups.bucket", "backups.enabled is true",
                      "the S3 bucket the dumps go to")


@dataclass(frozen=True)
class Deploy:
    """What a revision must carry to be installed."""
    require_signature: bool = setting(False, boolean, "true: BeforeInstall refuses revisions whose "
                                      "manifest is not signed with signing_key")
    signing_key: str | None = setting(None, optional(kms_key_arn), "the KMS key revisions are "
                                      "signed with (`bingo-host bundle --sign-key`)")
    keep_release: bool = setting(False, boolean, "true (with a local database): the last revision "
                                 "that passed ValidateService is kept on the data volume, and a "
                                 "bootstrap that finds no release deploys it (a replacement instance "
                                 "serves with no pipeline run)")

    def __post_init__(self):
        required_with(self.require_signature, self.signing_key, "deploy.signing_key",
                      "deploy.require_signature is true", "the KMS key ARN revisions are signed with")


@dataclass(frozen=True)
class Metrics:
    """CloudWatch custom metrics (namespace BingoHost): memory, swap and disk use and nginx's 5xx
    count, what the alarms watch, for one short process every interval."""
    enabled: bool = setting(False, boolean, "a timer runs `bingo-host metrics push` (needs "
                            "cloudwatch:PutMetricData; ~50 MiB for under a second a run)")
    interval_minutes: int = setting(5, integer(1, 60), "how often; Http5xx counts nginx's 5xx "
                                    "over this interval")


@dataclass(frozen=True)
class CloudwatchAgent:
    """The CloudWatch agent ships the logs to CloudWatch Logs (and its own metrics)."""
    enabled: bool | str = setting("auto", or_auto(boolean), "auto: on from 1 GiB of memory (the "
                                  "agent keeps ~40-60 MiB resident, a tenth of a nano) where the "
                                  "platform packages it (Amazon Linux 2023, not Debian 12)")


@dataclass(frozen=True)
class Patches:
    """Security updates on a timer (`bingo-host patch`), never during a deployment, under a
    memory bound."""
    enabled: bool = setting(True, boolean, "a timer runs `bingo-host patch`")
    schedule: str = setting("*-*-* 04:30:00", on_calendar, "when (with up to 30 minutes' random delay)")
    release: str = setting("latest", pattern(
        r"latest|20\d\d\.\d{1,3}\.\d{8}", "'latest' or an Amazon Linux release version such as "
                                         "2023.9.20251117"),
        "Amazon Linux 2023's repositories are versioned: updates come from this release version "
        "(latest, or a tested one: the fleet moves only when you change it)")


@dataclass(frozen=True)
class Firewall:
    """An nftables table of bingo-host's own (bingo-host-firewall.service)."""
    enabled: bool = setting(True, boolean, "rejects what the app's user sends to the instance "
                            "metadata service (the instance role's credentials); off only where the "
                            "host does not own its network namespace (a container sharing its "
                            "machine's network): the rule would be the machine's")
