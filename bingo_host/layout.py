"""Fixed locations bingo-host manages on a host, named once."""

ETC_DIR = "/etc/bingo-host"
STATE_DIR = "/var/lib/bingo-host"
LAUNCH_SIGNAL_FILE = f"{STATE_DIR}/launch-signal.json"  # 0600 root: the signal an ASG instance owes
LOCK_DIR = "/run/bingo-host"  # 0700 root: every lock file (ops/lock.py)
BIN = "/usr/local/bin/bingo-host"  # bootstrap links it to the running installation
PASSWORD_FILE = f"{ETC_DIR}/db-password"  # 0600 root: the generated app password
BACKUP_PASSWORD_FILE = f"{ETC_DIR}/db-backup-password"
DUMP_PASSWORD_FILE = f"{ETC_DIR}/db-dump-password"  # 0600 root: the dump user's (`bingo-host backup`)
RESTORE_PASSWORD_FILE = f"{ETC_DIR}/db-restore-password"  # 0600 root: the restore user's (loads)
SECRET_KEY_FILE = f"{ETC_DIR}/app-secret-key"  # 0600 root: the app's Flask secret_key
ADMIN_PASSWORD_FILE = f"{ETC_DIR}/app-admin-password"  # 0600 root: what `create-admin` set last
VASSALS_DIR = f"{ETC_DIR}/vassals"
UWSGI_VENV = "/opt/bingo-host/uwsgi"
HEALTH_WSGI_DIR = "/opt/bingo-host/wsgi"  # bingo_health.py: the health check around the app
HEALTH_MODULE = "bingo_health"
# bingo-host's source of each file the wrapper is installed as (HEALTH_WSGI_DIR/<name>.py)
HEALTH_SOURCES = {"health_wsgi.py": HEALTH_MODULE, "health_wsgi_bind.py": "bingo_health_bind",
                  "health_wsgi_db.py": "bingo_health_db"}
UWSGI_SERVICE = "bingo-uwsgi"
UWSGI_RUNTIME_DIR = "/run/bingo-uwsgi"
SNAPSHOT_UNIT = "bingo-host-snapshot"
DUMP_UNIT = "bingo-host-backup"  # `bingo-host backup` (logical dumps to S3)
DRILL_UNIT = "bingo-host-restore-drill"
RENEW_UNIT = "bingo-host-certbot-renew"
METRICS_UNIT = "bingo-host-metrics"
PATCH_UNIT = "bingo-host-patch"
JOURNAL_EXPORT_UNIT = "bingo-host-journal-export"
RESIZE_UNIT = "bingo-host-resize"  # at boot: bootstrap again when memory or CPUs changed
FIREWALL_UNIT = "bingo-host-firewall"  # loads FIREWALL_RULES: the app's users reach no metadata service
FIREWALL_RULES = f"{ETC_DIR}/firewall.nft"
LOG_DIR = "/var/log/bingo-host"  # the journal's excerpts the CloudWatch agent reads
CLOUDWATCH_AGENT_CONFIG = "/opt/aws/amazon-cloudwatch-agent/etc/bingo-host.json"
CLOUDWATCH_AGENT_CTL = "/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl"
REFRESH_UNIT = "bingo-host-secrets-refresh"
# the CloudWatch namespace of `bingo-host metrics push` and the agent (the stack's alarms watch it)
METRICS_NAMESPACE = "BingoHost"
# the EC2 instance metadata service (facts/imds.py asks it; the firewall keeps the app's users from it)
IMDS_ADDRESS = "169.254.169.254"
IMDS_ADDRESS_IPV6 = "fd00:ec2::254"  # Nitro instances, when the instance's IPv6 endpoint is on
SYSTEMD_DIR = "/etc/systemd/system"
JINJA_CACHE = "/var/cache/bingo-host/jinja"  # compiled templates (root only: Jinja executes them)
PIP_CACHE = "/var/cache/bingo-host/pip"  # root's: bingo-host's own upgrades (never the build account's)
BUILD_USER = "bingo-build"  # builds the app's virtualenvs (deploy/builder.py): not root, not the app
BUILD_HOME = f"{STATE_DIR}/build"  # 0700, the build account's HOME (its uv cache: <app root>/uv-cache)
BUILD_WORK = f"{STATE_DIR}/build-work"  # root's 0755: one scratch directory per build, the account's
SWAP_FILE = "/swapfile"
FSTAB_MARK = "# bingo-host"
BACKUP_DB_USER = "bingobackup"  # the snapshot's lock (RELOAD only)
DUMP_DB_USER = "bingodump"  # mariadb-dump of the app database (SELECT, SHOW VIEW, TRIGGER on it)
RESTORE_DB_USER = "bingorestore"  # loads a dump: the <name>_restore and <name>_drill schemas only
# bingo-host's own trees outside /etc and /run: no app.root or data volume may be, hold or hide them
OWN_TREES = ("/opt/bingo-host", STATE_DIR, LOG_DIR, "/var/cache/bingo-host")


def app_socket(app_name: str) -> str:
    """Where nginx sends the app's requests: a symlink to the serving slot's socket (slot_socket),
    flipped atomically by a release switch."""
    return f"{UWSGI_RUNTIME_DIR}/{app_name}.sock"


def vassal_file(app_name: str) -> str:
    """The one vassal of bingo-host before release slots (its workers chain-reloaded in place):
    a switch replaces it by a slot's vassal."""
    return f"{VASSALS_DIR}/{app_name}.ini"


# Two vassals take turns: a switch starts the release on the slot that does not serve, points
# app_socket at it once its workers answer, then stops the other.
SLOTS = ("blue", "green")


def slot_vassal_file(app_name: str, slot: str) -> str:
    return f"{VASSALS_DIR}/{app_name}-{slot}.ini"


def slot_socket(app_name: str, slot: str) -> str:
    return f"{UWSGI_RUNTIME_DIR}/{app_name}-{slot}.sock"


def app_fifo_dir(app_name: str) -> str:
    """The app user's directory for its uWSGI masters' FIFOs and stats sockets (a master creates
    them after it dropped privileges, so not in the emperor's root-owned runtime directory)."""
    return f"{UWSGI_RUNTIME_DIR}/{app_name}"


def app_master_fifo(app_name: str) -> str:
    """The master FIFO of the vassal before release slots (vassal_file)."""
    return f"{app_fifo_dir(app_name)}/master.fifo"


def slot_fifo(app_name: str, slot: str) -> str:
    """A slot's master FIFO: `q` shuts it down gracefully (each worker finishes its request)."""
    return f"{app_fifo_dir(app_name)}/{slot}.fifo"


def slot_bind_record(app_name: str, slot: str) -> str:
    """How a slot master's first bind went (health_wsgi.py writes it; deploy/first_bind.py reads)."""
    return f"{app_fifo_dir(app_name)}/{slot}.bind"


def slot_stats(app_name: str, slot: str) -> str:
    """A slot's uWSGI stats socket (JSON: each worker's pid, whether it accepts, idle or busy)."""
    return f"{app_fifo_dir(app_name)}/{slot}.stats"


PYUWSGI_REQUIREMENT = "pyuwsgi==2.0.30.post1"  # prebuilt wheels: no compiler on a nano instance
