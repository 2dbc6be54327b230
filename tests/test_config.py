"""Config validation: every bad value is rejected naming its field, and nothing is written."""

import shutil

import pytest
from click.testing import CliRunner

from bingo_host.cli import main
from bingo_host.config import Config, to_dict, with_values
from bingo_host.config_file import load_config, load_config_text
from bingo_host.errors import ConfigError

VALID = [
    ("", {}),
    ("platform: debian12", {("platform",): "debian12"}),
    ("app: {server_name: 'bingo.example.com www.example.com'}",
     {("app", "server_name"): ("bingo.example.com", "www.example.com")}),
    ("app: {server_name: [bingo.example.com, '*.example.org']}",
     {("app", "server_name"): ("bingo.example.com", "*.example.org")}),
    ("app: {processes: 3, user: bingo}", {("app", "processes"): 3, ("app", "user"): "bingo"}),
    ("app: {requirement_overrides: ['mysql==0.0.3', ' Foo_Bar[x,y] >= 1.0, <2 ']}",
     {("app", "requirement_overrides"): ("mysql==0.0.3", "Foo_Bar[x,y] >= 1.0, <2")}),
    ("app: {requirement_overrides: []}", {("app", "requirement_overrides"): ()}),
    ("database: {host: db.cluster-abc.eu-west-1.rds.amazonaws.com, port: 3307}",
     {("database", "host"): "db.cluster-abc.eu-west-1.rds.amazonaws.com"}),
    ("database: {host: 10.0.0.5}", {("database", "host"): "10.0.0.5"}),
    ("database: {password: 'ssm:/bingo/db-password'}", {("database", "password"): "ssm:/bingo/db-password"}),
    ("database: {password: 'secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:bingo-AbC123'}",
     {("database", "password"): "secretsmanager:arn:aws:secretsmanager:eu-west-1:123456789012:secret:bingo-AbC123"}),
    ("database: {password: 'Correct-Horse-9-Battery'}", {("database", "password"): "Correct-Horse-9-Battery"}),
    ("musicbingo: {secret_key: 'secretsmanager:bingo/app-secret-key'}",
     {("musicbingo", "secret_key"): "secretsmanager:bingo/app-secret-key"}),
    ("swap: {size: 512M}", {("swap", "size"): 512}),
    ("swap: {size: 2G}", {("swap", "size"): 2048}),
    ("swap: {size: 0}", {("swap", "size"): 0}),
    ("volume: {filesystem: xfs, device: /dev/xvdf}", {("volume", "filesystem"): "xfs"}),
    ("snapshots: {enabled: false, schedule: '*-*-* 03:30:00', keep: 14}",
     {("snapshots", "schedule"): "*-*-* 03:30:00", ("snapshots", "keep"): 14}),
    ("https: {domain: Bingo.Example.com., email: admin@example.com}",
     {("https", "domain"): "bingo.example.com"}),
    ("snapshots: {volumes: all, stack: bingo-prod-2}",
     {("snapshots", "volumes"): "all", ("snapshots", "stack"): "bingo-prod-2"}),
    ("smtp: {server: email-smtp.eu-west-1.amazonaws.com, sender: bingo@example.com, "
     "username: AKIAEXAMPLE123, password: 'secretsmanager:bingo/smtp'}",
     {("smtp", "port"): 587, ("smtp", "starttls"): True,
      ("smtp", "password"): "secretsmanager:bingo/smtp"}),
    ("smtp: {server: 10.0.0.25, port: 25, sender: bingo@example.com, starttls: false}",
     {("smtp", "username"): None, ("smtp", "password"): None}),
]


@pytest.mark.parametrize("text,expected", VALID, ids=[v[0] or "empty" for v in VALID])
def test_valid_configs(text, expected):
    cfg = load_config_text(text)
    for path, value in expected.items():
        obj = cfg
        for part in path:
            obj = getattr(obj, part)
        assert obj == value


def test_defaults_match_the_documented_interface():
    cfg = Config()
    assert (cfg.platform, cfg.app.name, cfg.app.root, cfg.app.health_path) == (
        "auto", "music-bingo", "/var/www/music-bingo", "/api/health")
    assert (cfg.database.host, cfg.database.port, cfg.database.name, cfg.database.user,
            cfg.database.password) == ("localhost", 3306, "bingo", "bingoapp", "generate")
    assert (cfg.volume.device, cfg.volume.mountpoint, cfg.volume.filesystem, cfg.volume.label) == (
        "/dev/sdf", "/var/lib/mysql", "ext4", "bingo-db")
    assert (cfg.snapshots.enabled, cfg.snapshots.schedule, cfg.snapshots.keep) == (True, "daily", 7)
    assert cfg.database.local


INVALID = [
    # (yaml, field named in the error, words the reason must contain)
    ("musicbingo: {secret_key: 'Correct-Horse-9-Battery'}", "musicbingo.secret_key",
     "never goes into the config file"),
    ("musicbingo: {secret_key: 'ssm:bad name'}", "musicbingo.secret_key", "ssm:"),
    ("nonsense: 1", "nonsense", "unknown key (expected one of: platform, app,"),
    ("app: {nme: x}", "app.nme", "unknown key; did you mean name? (expected one of: name, root, user,"),
    ("app: [1, 2]", "app", "must be a mapping (got a list)"),
    ("platform: centos7", "platform", "must be one of"),
    ("database: {name: 'bingo; DROP TABLE users'}", "database.name", "must be 1 to 64 letters, digits and _ (got 'bingo; DROP TABLE users')"),
    ("database: {name: \"bingo'\"}", "database.name", "(got \"bingo'\")"),
    ("database: {user: 'app`@`%'}", "database.user", "must be 1 to 32 letters, digits and _"),
    ("database: {port: '3306'}", "database.port", "must be an integer between 1 and 65535 (got '3306')"),
    ("database: {port: 70000}", "database.port", "between 1 and 65535"),
    ("database: {port: true}", "database.port", "must be an integer between 1 and 65535 (got true)"),
    ("database: {host: \"db.example.com\\nbind-address=0.0.0.0\"}", "database.host", "single line"),
    ("database: {host: 'db example'}", "database.host", "host name"),
    ("database: {password: \"pass'word-123456\"}", "database.password", "no quotes"),
    ("database: {password: 'short'}", "database.password", "12 to 128"),
    ("database: {password: 'has%percent-sign-1234'}", "database.password", "'%'"),
    ("database: {password: 'ssm:'}", "database.password", "parameter name"),
    ("musicbingo: {mode: \"BINGO\\n[database]\"}", "musicbingo.mode", "single line"),
    ("musicbingo: {mode: 'BINGO ]'}", "musicbingo.mode", "must be 1 to 32 letters, digits and _, starting with a letter (got 'BINGO ]')"),
    ("musicbingo: {columns: 0}", "musicbingo.columns", "between 1 and 20"),
    ("app: {server_name: 'example.com; include /etc/passwd'}", "app.server_name", "host name"),
    ("app: {server_name: 'example.com { return 200; }'}", "app.server_name", "host name"),
    ("app: {server_name: '_ example.com'}", "app.server_name", "stand alone"),
    ("app: {root: '/var/www/../etc'}", "app.root", "path segments"),
    ("app: {root: 'var/www'}", "app.root", "absolute path"),
    ("app: {root: '/var/www/music bingo'}", "app.root", "path segments"),
    ("app: {root: '/'}", "app.root", "path segments"),
    ("app: {health_path: '/api/../admin'}", "app.health_path", "no '..'"),
    ("app: {health_path: '/api; return 200'}", "app.health_path", "URL path"),
    ("app: {live_path: 'api/live'}", "app.live_path", "URL path"),
    ("app: {live_path: /api/health}", "app.live_path", "must differ from app.health_path"),
    ("app: {health_path: /h, live_path: /h}", "app.live_path", "must differ from app.health_path"),
    ("app: {name: 'Music_Bingo'}", "app.name", "lower-case"),
    ("app: {name: \"bingo\\nExecStart=/bin/sh\"}", "app.name", "single line"),
    ("app: {processes: 0}", "app.processes", "must be 'auto' or an integer between 1 and 64 (got 0)"),
    ("app: {processes: four}", "app.processes", "must be 'auto' or an integer between 1 and 64 (got 'four')"),
    ("app: {requirement_overrides: 'mysql==0.0.3'}", "app.requirement_overrides", "must be a list of"),
    ("app: {requirement_overrides: ['--index-url=https://evil/simple']}", "app.requirement_overrides[0]",
     "not a requirement specifier"),
    ("app: {requirement_overrides: ['mysql==0.0.3', 'MySQL==0.0.4']}", "app.requirement_overrides[1]",
     "mysql is already overridden by app.requirement_overrides[0]"),
    ("app: {user: 'root; rm'}", "app.user", "user name"),
    ("volume: {device: /etc/passwd}", "volume.device", "under /dev"),
    ("volume: {device: /dev/../etc/shadow}", "volume.device", "under /dev"),
    ("volume: {filesystem: btrfs}", "volume.filesystem", "must be one of"),
    ("volume: {label: 'a-label-too-long'}", "volume.label", "1 to 12"),
    ("volume: {mountpoint: /var/lib/mysql/../../etc}", "volume.mountpoint", "path segments"),
    ("swap: {size: 1T}", "swap.size", "between 16M and 32G"),
    ("swap: {size: 4M}", "swap.size", "between 16M and 32G"),
    ("snapshots: {enabled: 'yes please'}", "snapshots.enabled", "true or false"),
    ("snapshots: {schedule: \"daily\\nExecStart=/bin/sh\"}", "snapshots.schedule", "single line"),
    ("snapshots: {schedule: 'daily;reboot'}", "snapshots.schedule", "OnCalendar"),
    ("snapshots: {keep: 0}", "snapshots.keep", "between 1 and 1000"),
    ("snapshots: {volumes: root}", "snapshots.volumes", "must be one of data, all"),
    ("snapshots: {stack: 'bingo prod'}", "snapshots.stack", "CloudFormation stack name"),
    ("smtp: {server: \"mail.example.com\\n[database]\", sender: a@example.com}", "smtp.server",
     "single line"),
    ("smtp: {server: 'mail example'}", "smtp.server", "host name"),
    ("smtp: {server: mail.example.com}", "smtp.sender", "required when smtp.server is set"),
    ("smtp: {server: mail.example.com, sender: '-oQ/tmp@x.com'}", "smtp.sender", "e-mail"),
    ("smtp: {port: 0}", "smtp.port", "between 1 and 65535"),
    ("smtp: {starttls: 'yes'}", "smtp.starttls", "true or false"),
    ("smtp: {server: m.example.com, sender: a@example.com, username: 'u%x', password: 'ssm:/p'}",
     "smtp.username", "no spaces, quotes or '%'"),
    ("smtp: {server: m.example.com, sender: a@example.com, username: u, password: generate}",
     "smtp.password", "cannot be 'generate'"),
    ("smtp: {server: m.example.com, sender: a@example.com, username: u, password: 'ssm:bad name'}",
     "smtp.password", "ssm:"),
    ("smtp: {server: m.example.com, sender: a@example.com, username: u, password: 'has%pct-1234567'}",
     "smtp.password", "'%'"),
    ("smtp: {server: m.example.com, sender: a@example.com, username: u}", "smtp.password",
     "go together"),
    ("smtp: {server: m.example.com, sender: a@example.com, password: 'ssm:/p'}", "smtp.username",
     "go together"),
    ("https: {domain: 192.0.2.10}", "https.domain", "not an IP address"),
    ("https: {domain: _}", "https.domain", "fully qualified"),
    ("https: {domain: localhost}", "https.domain", "fully qualified"),
    ("https: {email: 'not-an-email'}", "https.email", "e-mail address"),
    ("metrics: {enabled: 1}", "metrics.enabled", "true or false"),
    ("metrics: {interval_minutes: 0}", "metrics.interval_minutes", "between 1 and 60"),
    ("cloudwatch_agent: {enabled: 'yes'}", "cloudwatch_agent.enabled", "true or false"),
    ("patches: {schedule: \"daily\\nExecStart=/bin/sh\"}", "patches.schedule", "single line"),
    ("patches: {release: '2023.9'}", "patches.release", "release version"),
    ("patches: {release: '--releasever=x'}", "patches.release", "release version"),
    ("app: {name: a}\napp: {name: b}", "<string>", "duplicate key"),
    ("app: {name: [unclosed", "<string>", "not valid YAML"),
    ("- just\n- a list", "(top level)", "must be a mapping (got a list)"),
]


@pytest.mark.parametrize("text,field,reason", INVALID, ids=[i[1] + ":" + i[0][:30] for i in INVALID])
def test_invalid_configs_name_the_field(text, field, reason):
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert info.value.field == field
    assert reason in info.value.reason


@pytest.mark.parametrize("text,field,reason", INVALID[:12], ids=[i[1] for i in INVALID[:12]])
def test_cli_rejects_bad_config_with_exit_2_and_writes_nothing(tmp_path, text, field, reason):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--config", str(config), "render", "--out", str(out),
                                       "--platform", "debian12"])
    assert result.exit_code == 2, result.output
    assert f"{field}: " in result.output and reason in result.output
    assert not out.exists()


def test_missing_config_file_is_a_config_error(tmp_path):
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "nope.yaml"), "config", "check"])
    assert result.exit_code == 2
    assert "config file not found" in result.output


def test_config_check_masks_a_literal_password(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("database: {password: 'Correct-Horse-9-Battery'}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check"])
    assert result.exit_code == 0, result.output
    assert "Correct-Horse-9-Battery" not in result.output
    assert "password: '*****'" in result.output


def test_config_env_var_selects_the_file(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("database: {name: from_env}\n")
    result = CliRunner().invoke(main, ["config", "check", "--json"], env={"BINGO_HOST_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert '"name": "from_env"' in result.output


def test_config_check_resolves_auto_for_the_platform(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("swap: {size: 512M}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check", "--platform", "amzn2023"])
    assert result.exit_code == 0, result.output
    assert "'auto' resolved for amzn2023" in result.output
    assert "user: music-bingo" in result.output and "size: 512" in result.output
    assert "processes: auto" not in result.output


def test_config_check_masks_a_literal_smtp_password(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("smtp: {server: m.example.com, sender: a@example.com, username: u, "
                      "password: 'Smtp-Literal-Secret-9'}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check"])
    assert result.exit_code == 0, result.output
    assert "Smtp-Literal-Secret-9" not in result.output and "password: '*****'" in result.output


def test_cli_rejects_a_bad_smtp_block_with_exit_2_naming_the_field(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("smtp: {server: m.example.com, sender: a@example.com, username: u, "
                      "password: generate}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["--config", str(config), "render", "--out", str(out),
                                       "--platform", "debian12"])
    assert result.exit_code == 2 and "smtp.password: cannot be 'generate'" in result.output
    assert not out.exists()


def test_references_are_not_masked():
    cfg = load_config_text("database: {password: 'ssm:/bingo/pw'}")
    assert to_dict(cfg)["database"]["password"] == "ssm:/bingo/pw"


def test_example_config_is_valid_and_all_defaults():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "examples" / "config.yaml").read_text()
    # but the override the upstream app needs (its mysql==0.0.2 no longer builds)
    assert load_config_text(text) == with_values(Config(), app={"requirement_overrides": ("mysql==0.0.3",)})


def test_config_check_shows_the_requirement_overrides(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("app: {requirement_overrides: ['mysql==0.0.3']}\n")
    for args, shown in (([], "  requirement_overrides:\n  - mysql==0.0.3\n"),
                        (["--json"], '"requirement_overrides": [\n      "mysql==0.0.3"\n    ]')):
        result = CliRunner().invoke(main, ["--config", str(config), "config", "check", "--platform",
                                           "debian12", *args])
        assert result.exit_code == 0, result.output
        assert shown in result.output, result.output


# -- hostile configs (issue 13): each row passed `config check`, crashed with a traceback, or
# cost memory and time before; now: exit 2 naming the field, a short message, nothing written.

_LAUGHS = ("platform: [&a [lol, lol, lol, lol, lol, lol, lol, lol, lol], "
           + ", ".join(f"&{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcde", "bcdef")) + "]")

HOSTILE = [
    # (id, file content, field named ("{config}": the file), words the reason must contain)
    # 1. host names and addresses: RFC 1123 names, dotted quads, IPv6 without a scope id
    ("server_name-scope-id", 'app: {server_name: ["fe80::1%x; location ~ ^.leak { alias $arg_f; } #"]}',
     "app.server_name", "not '_' or a host name"),
    ("database.host-scope-id", 'database: {host: "fe80::1%x;bind-address=0.0.0.0"}',
     "database.host", "no IPv6 scope id"),
    ("database.host-bad-quad", "database: {host: 300.1.1.1}", "database.host", "host name or an IP"),
    # 2. paths that would wreck the host
    ("mountpoint-etc", "volume: {mountpoint: /etc}", "volume.mountpoint", "belongs to the system"),
    ("mountpoint-usr-lib", "volume: {mountpoint: /usr/lib/mysql}", "volume.mountpoint", "inside /usr"),
    ("mountpoint-lib64", "volume: {mountpoint: /lib64}", "volume.mountpoint", "belongs to the system"),
    ("root-tmp", "app: {root: /tmp}", "app.root", "system directory"),
    ("root-var-lib", "app: {root: /var/lib}", "app.root", "system directory"),
    ("root-run", "app: {root: /run/bingo}", "app.root", "inside /run"),
    ("root-mariadb", "app: {root: /var/lib/mysql/app}\nvolume: {mountpoint: /data/db}", "app.root",
     "inside /var/lib/mysql"),
    ("mountpoint-is-root", "volume: {mountpoint: /var/www/music-bingo}", "volume.mountpoint",
     "overlaps app.root"),
    ("mountpoint-in-root", "app: {root: /srv/bingo}\nvolume: {mountpoint: /srv/bingo/db}",
     "volume.mountpoint", "overlaps app.root"),
    ("root-in-mountpoint", "app: {root: /data/db/app}\nvolume: {mountpoint: /data/db}",
     "volume.mountpoint", "overlaps app.root"),
    # bingo-host's own trees: a volume there hides the toolkit root runs; an app.root there is
    # handed to the app (layout.OWN_TREES)
    ("mountpoint-own-install", "volume: {mountpoint: /opt/bingo-host}", "volume.mountpoint",
     "/opt/bingo-host is /opt/bingo-host, which is bingo-host's own"),
    ("mountpoint-in-own-state", "volume: {mountpoint: /var/lib/bingo-host/db}", "volume.mountpoint",
     "is inside /var/lib/bingo-host, which is bingo-host's own"),
    ("mountpoint-own-log", "volume: {mountpoint: /var/log/bingo-host}", "volume.mountpoint",
     "is /var/log/bingo-host, which"),
    ("mountpoint-in-own-cache", "volume: {mountpoint: /var/cache/bingo-host/jinja}", "volume.mountpoint",
     "is inside /var/cache/bingo-host, which"),
    ("mountpoint-own-etc", "volume: {mountpoint: /etc/bingo-host}", "volume.mountpoint", "inside /etc"),
    ("root-in-own", "app: {root: /opt/bingo-host/app}", "app.root", "inside /opt/bingo-host"),
    ("device-shm", "volume: {device: /dev/shm/x}", "volume.device", "block device under /dev"),
    ("device-tty", "volume: {device: /dev/tty}", "volume.device", "block device under /dev"),
    # 3. YAML bombs and size
    ("billion-laughs", _LAUGHS, "{config}", "aliases (*name) are not allowed"),
    ("deep-nesting", "[" * 3000, "{config}", "nested deeper than"),
    ("too-large", "# padding\n" * 7000, "{config}", "larger than 64 KiB"),
    ("long-value-quoted-short", "platform: " + "x" * 5000, "platform", "must be one of"),
    ("huge-integer", "database: {port: 1" + "0" * 5000 + "}", "{config}", "not a valid int"),
    ("impossible-date", "https: {email: 2001-13-45}", "{config}", "not a valid timestamp"),
    ("bad-bool-tag", "snapshots: {enabled: !!bool maybe}", "{config}", "not a valid bool"),
    ("bad-set-tag", "app: {server_name: !!set [a]}", "{config}", "not a valid set"),
    # 4. tracebacks, late failures and bools as numbers
    ("unhashable-key-block", "? [a]\n: 1", "{config}", "a key must be a plain value"),
    ("unhashable-key-flow", "{[1]: 2}", "{config}", "a key must be a plain value"),
    ("not-utf8", b'app: {name: "\xff\xfe"}', "{config}", "not UTF-8"),
    ("secretsmanager-bad-arn", "database: {password: 'secretsmanager:arn:x'}", "database.password",
     "secretsmanager: must be followed by"),
    ("ssm-bad-arn", "musicbingo: {secret_key: 'ssm:arn:x'}", "musicbingo.secret_key",
     "ssm: must be followed by"),
    ("ssm-relative-path", "database: {password: 'ssm:bingo/db'}", "database.password", "ssm:"),
    ("swap-false", "swap: {size: false}", "swap.size", "(got false)"),
    ("swap-float", "swap: {size: 0.0}", "swap.size", "(got 0.0)"),
    ("schedule-option", "snapshots: {schedule: '-h'}", "snapshots.schedule", "OnCalendar"),
    ("schedule-systemd-rejects", "snapshots: {schedule: '*-*-* 25:00:00'}", "snapshots.schedule",
     "systemd does not accept"),
    # 5. values that reach a command line as an argument
    ("email-option", "https: {email: '--help@b.co'}", "https.email", "not starting with '-'"),
    ("email-dots", "https: {email: 'a..b@example.com'}", "https.email", "e-mail address"),
    ("email-numeric-domain", "https: {email: 'a@1.2.3'}", "https.email", "e-mail address"),
    # 6. accounts the app must not be (or create)
    ("user-root", "app: {user: root}", "app.user", "system account"),
    ("user-mysql", "app: {user: mysql}", "app.user", "system account"),
    ("user-www-data", "app: {user: www-data}", "app.user", "system account"),
    ("user-nginx", "app: {user: nginx}", "app.user", "system account"),
    ("user-daemon", "app: {user: daemon}", "app.user", "system account"),
    ("user-systemd", "app: {user: systemd-network}", "app.user", "system account"),
    ("name-mysql", "app: {name: mysql}", "app.name", "system account"),
    ("name-nginx", "app: {name: nginx}", "app.name", "system account"),
    ("db-user-root", "database: {user: root}", "database.user", "MariaDB account"),
    ("db-user-backup", "database: {user: bingobackup}", "database.user", "MariaDB account"),
    ("db-name-mysql", "database: {name: mysql}", "database.name", "MariaDB system schema"),
    ("db-user-dump", "database: {user: bingodump}", "database.user", "MariaDB account"),
    # 7. backups: the bucket and prefix reach IAM-scoped S3 keys, the schedules a timer
    ("backups-no-bucket", "backups: {enabled: true}", "backups.bucket", "required when backups.enabled"),
    ("backups-bucket-dots", "backups: {bucket: my.bucket.example}", "backups.bucket", "S3 bucket name"),
    ("backups-bucket-upper", "backups: {bucket: MyBucket}", "backups.bucket", "S3 bucket name"),
    ("backups-bucket-reserved", "backups: {bucket: 'xn--bucket'}", "backups.bucket", "S3 bucket name"),
    ("backups-prefix-dotdot", "backups: {prefix: '../other/'}", "backups.prefix", "path segments"),
    ("backups-prefix-slash", "backups: {prefix: '/abs/'}", "backups.prefix", "path segments"),
    ("backups-prefix-no-slash", "backups: {prefix: 'bingo'}", "backups.prefix", "ending in '/'"),
    ("backups-keep-0", "backups: {keep: 0}", "backups.keep", "between 1 and 1000"),
    ("backups-drill-schedule", "backups: {enabled: true, bucket: bingo-backups, drill_schedule: '-h'}",
     "backups.drill_schedule", "OnCalendar"),
    ("backups-schedule-systemd-rejects", "backups: {enabled: true, bucket: bingo-backups, "
     "schedule: '*-*-* 25:00:00'}", "backups.schedule", "systemd does not accept"),
]


@pytest.mark.parametrize("content,field,reason", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_config_exits_2_naming_the_field_and_writes_nothing(tmp_path, content, field, reason):
    if "systemd does not accept" in reason and not shutil.which("systemd-analyze"):
        pytest.skip("no systemd-analyze on this machine")
    config = tmp_path / "config.yaml"
    (config.write_bytes if isinstance(content, bytes) else config.write_text)(content)
    field = field.replace("{config}", str(config))
    out = tmp_path / "out"
    for argv in (["config", "check"], ["render", "--out", str(out), "--platform", "debian12"]):
        result = CliRunner().invoke(main, ["--config", str(config), *argv])
        assert isinstance(result.exception, SystemExit), result.exc_info  # no traceback
        assert result.exit_code == 2, result.output
        assert result.output.startswith(f"bingo-host: error: {field}: "), result.output[:300]
        assert reason in result.output, result.output
        assert len(result.output) < 400  # values are quoted clipped, never whole
    assert not out.exists()


@pytest.mark.parametrize("value, why", [
    ("/srv/tools", "/srv/tools contains /srv/tools/bingo-host, which is bingo-host's own"),
    ("/srv/tools/bingo-host", "/srv/tools/bingo-host is /srv/tools/bingo-host, which"),
    ("/srv/tools/bingo-host/db", "is inside /srv/tools/bingo-host, which"),
])
def test_a_directory_holding_one_of_bingo_hosts_trees_is_refused(monkeypatch, value, why):
    """Every parent of today's own trees is a system directory (refused first, with a hint): a
    tree deeper down, if one is added, is still never hidden under a volume."""
    from bingo_host import path_fields

    monkeypatch.setattr(path_fields, "OWN_TREES", ("/srv/tools/bingo-host",))
    with pytest.raises(ConfigError) as info:
        path_fields.owned_dir()(value, "volume.mountpoint")
    assert info.value.field == "volume.mountpoint" and why in str(info.value)
    assert info.value.reason.endswith("which is bingo-host's own") and info.value.reason.startswith(value)
    assert path_fields.owned_dir()("/srv/tools-other", "volume.mountpoint") == "/srv/tools-other"


def test_enable_https_refuses_an_email_that_is_an_option():
    from bingo_host import https

    cfg = load_config_text("app: {server_name: bingo.example.com}")
    with pytest.raises(ConfigError) as info:
        https.validate(cfg, "bingo.example.com", "--help@b.co", False, None, False)
    assert info.value.field == "--email"


def test_schedule_without_systemd_analyze_keeps_the_character_check(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a workstation without systemd
    config = tmp_path / "config.yaml"
    config.write_text("snapshots: {schedule: '*-*-* 25:00:00'}\n")
    assert CliRunner().invoke(main, ["--config", str(config), "config", "check"]).exit_code == 0
    config.write_text("snapshots: {schedule: 'daily;reboot'}\n")
    assert CliRunner().invoke(main, ["--config", str(config), "config", "check"]).exit_code == 2


HOSTILE_NEIGHBOURS = [  # honest values next to the refused ones still pass
    "database: {host: '::1'}",
    "database: {host: '2001:db8::5'}",
    "app: {server_name: ['*.example.org', bingo.example.com, 192.0.2.10, '2001:db8::1']}",
    "volume: {device: /dev/nvme1n1}",
    "volume: {device: /dev/loop7}",
    "volume: {device: /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0}",
    "volume: {device: /dev/xvdba}",
    "volume: {mountpoint: /data/mysql}",
    "volume: {mountpoint: /tmp/bingo-loopdb-x/mnt}",
    "volume: {mountpoint: /var/lib/bingo-host-db}",  # beside bingo-host's own tree, not in it
    "volume: {mountpoint: /opt/bingo}",
    "app: {root: /srv/music-bingo}",
    "app: {root: /opt/music-bingo, user: ec2-user}",
    "https: {email: first.last+bingo@mail.example.com}",
    "database: {password: 'ssm:bingo-db-password'}",
    "database: {password: 'ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/bingo/db'}",
    "database: {password: 'secretsmanager:rds!db-0123-abc'}",
    "snapshots: {schedule: 'Mon..Fri *-*-* 03:00:00 Europe/Berlin'}",
    "app: {server_name: &n bingo.example.com}",  # an anchor alone multiplies nothing
    "backups: {enabled: true, bucket: bingo-backups-123, prefix: 'prod/bingo-1/', keep: 30}",
    "backups: {enabled: true, bucket: abc, prefix: '', drill_schedule: weekly}",
]


@pytest.mark.parametrize("text", HOSTILE_NEIGHBOURS)
def test_honest_values_beside_the_hostile_ones_pass(tmp_path, text):
    config = tmp_path / "config.yaml"
    config.write_text(text + "\n")
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check", "--platform", "debian12"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text, field, reason", [
    ("database: {admin_secret: 'secretsmanager:rds!db-1'}\n", "database.admin_secret", "only for an external"),
    ("database: {tls_ca: /etc/ca.pem}\n", "database.tls_ca", "only for an external"),
    ("database: {host: db.example.com, admin_secret: 'secretsmanager:m'}\n", "database.password",
     "every host using the database"),
    ("database: {host: db.example.com, admin_secret: 'master-Passw0rd-123'}\n", "database.admin_secret",
     "must be 'ssm:NAME' or 'secretsmanager:ID'"),
    ("database: {host: db.example.com, tls_ca: rds.pem}\n", "database.tls_ca", "absolute path"),
    ("database: {host: db.example.com, tls_ca: '/etc/a b.pem'}\n", "database.tls_ca", "path segments"),
])
def test_external_database_login_and_tls_fields_are_checked(text, field, reason):
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert info.value.field == field and reason in str(info.value)


def test_external_database_with_its_own_app_user():
    cfg = load_config_text("database: {host: db.example.com, password: 'secretsmanager:bingo/app-db',\n"
                           "           admin_secret: 'secretsmanager:rds!cluster-1', tls_ca: /etc/rds.pem}\n")
    assert cfg.database.admin_secret == "secretsmanager:rds!cluster-1"
    assert cfg.database.tls_ca == "/etc/rds.pem" and not cfg.database.local


# -- every error of a file in one run (issue 25) --

MANY_ERRORS = """\
app: {processes: four, nme: x, health_path: 'api; x'}
database: {password: 'Short Secret', port: '3306'}
swap: {size: 2048}
snapshots: {schedule: '*-*-* 25:00:00', keep: 0}
musicbingo: {mode: "%s"}
platfrom: debian12
""" % ("X" * 30 + " " + "Y" * 30)


def test_every_error_of_a_file_in_one_run_one_line_each(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(MANY_ERRORS)
    out = tmp_path / "out"
    expected = [
        "app.processes: must be 'auto' or an integer between 1 and 64 (got 'four')",
        "app.nme: unknown key; did you mean name? (expected one of: name, root, user, server_name, "
        "processes, health_path, live_path, keep_releases, requirement_overrides)",
        "app.health_path: must be a URL path starting with '/' (letters, digits and ._~/- only, no "
        "'..') (got 'api; x')",
        "database.password: a literal password needs 12 to 128 characters",
        "database.port: must be an integer between 1 and 65535 (got '3306')",
        "swap.size: must be 'auto', 0, or a size between 16M and 32G such as 512M or 2G (got 2048)",
        "snapshots.keep: must be an integer between 1 and 1000 (got 0)",
        "musicbingo.mode: must be 1 to 32 letters, digits and _, starting with a letter (got "
        f"'{'X' * 30} {'Y' * 8}...)",
        "platfrom: unknown key; did you mean platform? (expected one of: platform, app, musicbingo,",
    ]
    if shutil.which("systemd-analyze"):  # asked of the schedule beside the other errors
        expected.append("snapshots.schedule: systemd does not accept '*-*-* 25:00:00' as an "
                        "OnCalendar= expression")
    for argv in (["config", "check"], ["render", "--out", str(out), "--platform", "debian12"]):
        result = CliRunner().invoke(main, ["--config", str(config), *argv])
        assert result.exit_code == 2 and result.stdout == "", result.output
        lines = result.stderr.splitlines()
        assert len(lines) == len(expected), result.stderr
        for line, start in zip(lines, expected):
            assert line.startswith(f"bingo-host: error: {start}"), line
        assert "Short Secret" not in result.stderr and "(got a literal of 12 characters)" in lines[3]
    assert not out.exists()


def test_one_error_is_raised_as_itself_and_many_together():
    with pytest.raises(ConfigError) as one:
        load_config_text("swap: {size: 1T}")
    assert type(one.value).__name__ == "NotAllowed" and not hasattr(one.value, "errors")
    with pytest.raises(ConfigError) as many:
        load_config_text("swap: {size: 1T}\nmetrics: {enabled: 1}\nsmtp: {port: 0, nonsense: 1}")
    assert [e.field for e in many.value.errors] == ["swap.size", "metrics.enabled", "smtp.port",
                                                     "smtp.nonsense"]
    assert (many.value.field, many.value.reason) == ("swap.size", many.value.errors[0].reason)
    assert str(many.value) == "\n".join(str(e) for e in many.value.errors)


@pytest.mark.parametrize("text, field, hint", [
    ("plaform: debian12", "plaform", "did you mean platform?"),
    ("app: {procesess: 2}", "app.procesess", "did you mean processes?"),
    ("snapshot: {keep: 2}", "snapshot", "did you mean snapshots?"),
    ("smtp: {sender_address: a@b.co}", "smtp.sender_address", "did you mean sender?"),
    ("app: {zzz: 1}", "app.zzz", None),
    ("7: 1", "7", None),
])
def test_an_unknown_key_says_which_known_one_it_resembles(text, field, hint):
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert info.value.field == field
    assert info.value.reason.startswith(f"unknown key; {hint} (expected" if hint else "unknown key (expected")


def test_a_section_with_a_bad_field_skips_its_cross_checks_but_not_the_others():
    """smtp's own rules (sender with a server) wait for its fields; backups' apply beside them."""
    with pytest.raises(ConfigError) as info:
        load_config_text("smtp: {server: 'bad host', port: 25}\nbackups: {enabled: true}")
    assert [(e.field, e.reason.split(" (")[0]) for e in info.value.errors] == [
        ("smtp.server", "must be a host name or an IP address"),
        ("backups.bucket", "required when backups.enabled is true")]


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze on this machine")
def test_the_host_checks_skip_the_backups_schedules_while_backups_are_off():
    """...and go on to the schedules after them."""
    text = "backups: {schedule: '*-*-* 25:00:00'}\npatches: {schedule: '*-*-* 26:00:00'}\n"
    assert load_config_text(text).backups.schedule == "*-*-* 25:00:00"  # not asked without on_host
    with pytest.raises(ConfigError) as info:
        load_config_text(text, on_host=True)
    assert (info.value.field, info.value.reason) == (
        "patches.schedule", "systemd does not accept '*-*-* 26:00:00' as an OnCalendar= expression")
    with pytest.raises(ConfigError) as info:
        load_config_text(text.replace("backups: {", "backups: {enabled: true, bucket: b-1, "), on_host=True)
    assert [e.field for e in info.value.errors] == ["backups.schedule", "patches.schedule"]


def test_the_volume_and_the_app_tree_overlap():
    with pytest.raises(ConfigError) as info:
        load_config_text("app: {root: /srv/bingo}\nvolume: {mountpoint: /srv/bingo/db}")
    assert (info.value.field, info.value.reason) == (
        "volume.mountpoint", "/srv/bingo/db overlaps app.root /srv/bingo: the data volume and the app "
                             "need separate trees")


def test_reading_the_file(tmp_path):
    """Not found and unreadable name the path; 64 KiB is the most a config may be."""
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert (info.value.field, info.value.reason) == (str(tmp_path / "nope.yaml"), "config file not found")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert (info.value.field, info.value.reason) == (str(tmp_path), "cannot read: Is a directory")
    config = tmp_path / "config.yaml"
    config.write_text("platform: debian12\n" + "#" * (64 * 1024 - 20) + "\n")
    assert len(config.read_bytes()) == 64 * 1024 and load_config(config).platform == "debian12"
    config.write_text("platform: debian12\n" + "#" * (64 * 1024 - 19) + "\n")
    with pytest.raises(ConfigError, match="larger than 64 KiB: not a bingo-host config"):
        load_config(config)


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze on this machine")
def test_only_config_check_and_render_ask_the_hosts_tools_while_reading(tmp_path):
    """Every other command reads the file without running a program (bootstrap asks systemd
    before it writes the timers)."""
    config = tmp_path / "config.yaml"
    config.write_text("snapshots: {schedule: '*-*-* 25:00:00'}\n")
    assert load_config(config).snapshots.schedule == "*-*-* 25:00:00"
    with pytest.raises(ConfigError, match="snapshots.schedule: systemd does not accept"):
        load_config(config, on_host=True)
