"""Rendered host files: golden outputs per platform, a real `nginx -t`, `systemd-analyze verify`."""

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bingo_host.facts import platforms
from bingo_host.config_file import load_config_text
from bingo_host.facts.host import HostFacts
from bingo_host.render import render_all
from bingo_host.resolve import resolve

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
NANO = HostFacts(mem_bytes=512 * 1024 * 1024, cpus=2)
EXAMPLE = (REPO / "examples" / "config.yaml").read_text()


def rendered(platform_name, text=EXAMPLE, facts=NANO):
    platform = platforms.PLATFORMS[platform_name]
    return render_all(resolve(load_config_text(text), platform, facts), platform, facts,
                      db_password="golden-password-123")


@pytest.mark.parametrize("platform_name", sorted(platforms.PLATFORMS))
def test_golden_outputs(platform_name):
    """Set UPDATE_GOLDEN=1 to rewrite tests/golden after an intended template change."""
    # bingo_health*.py are copies of modules' source: test_health_wsgi checks them.
    files = [mf for mf in rendered(platform_name) if not mf.template.startswith("health_wsgi")]
    base = GOLDEN / platform_name
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(base, ignore_errors=True)
        for mf in files:
            target = base / mf.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(mf.content)
        pytest.skip("golden files rewritten: review `git diff tests/golden`, then run without UPDATE_GOLDEN")
    expected = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
    assert sorted(mf.path.lstrip("/") for mf in files) == expected
    for mf in files:
        assert mf.content == (base / mf.path.lstrip("/")).read_text(), mf.path


def test_platform_differences_come_from_the_table():
    deb = {f.template: f for f in rendered("debian12")}
    amzn = {f.template: f for f in rendered("amzn2023")}
    assert deb["nginx-site.conf"].path == "/etc/nginx/conf.d/music-bingo.conf"
    assert "uid = music-bingo" in deb["uwsgi-vassal.ini"].content
    assert "chown-socket = music-bingo:www-data" in deb["uwsgi-vassal.ini"].content
    # The same dedicated app user on both (never ec2-user, who can sudo); the socket's group is
    # the platform's nginx group.
    assert "uid = music-bingo\ngid = music-bingo\n" in amzn["uwsgi-vassal.ini"].content
    assert "chown-socket = music-bingo:nginx" in amzn["uwsgi-vassal.ini"].content
    assert deb["mariadb-server.cnf"].path == "/etc/mysql/mariadb.conf.d/zz-bingo-host.cnf"
    assert amzn["mariadb-server.cnf"].path == "/etc/my.cnf.d/zz-bingo-host.cnf"


def test_auto_sizing_for_a_nano_and_a_large_host():
    nano = {f.template: f.content for f in rendered("debian12")}
    assert "processes = 2\n" in nano["uwsgi-vassal.ini"]
    assert "innodb_buffer_pool_size = 128M" in nano["mariadb-server.cnf"]
    assert "performance_schema = OFF" in nano["mariadb-server.cnf"]
    big = {f.template: f.content for f in rendered("debian12", facts=HostFacts(16 * 1024**3, 4))}
    assert "processes = 8\n" in big["uwsgi-vassal.ini"]
    assert "performance_schema" not in big["mariadb-server.cnf"]


def test_external_database_and_disabled_snapshots_render_no_local_files():
    text = "database: {host: db.example.com}\nsnapshots: {enabled: false}\n"
    templates = {f.template for f in rendered("debian12", text)}
    assert not templates & {"mariadb-server.cnf", "mariadb-mount.conf", "snapshot.service", "snapshot.timer"}
    ini = next(f for f in rendered("debian12", text) if f.template == "bingo.ini")
    assert "host = db.example.com" in ini.content


SMTP = """
smtp:
  server: email-smtp.eu-west-1.amazonaws.com
  port: 587
  sender: bingo@example.com
  username: AKIAEXAMPLE123
  password: secretsmanager:bingo/smtp
  starttls: true
"""
SAMPLE_OPTIONS = REPO / "tests" / "fixtures" / "sample_app" / "musicbingo" / "options"


def read_as_the_app(ini: str, tmp_path: Path) -> dict:
    """The [smtp] settings the fixture app (which reads bingo.ini as the real one does) gets
    from this bingo.ini: its options package in a throwaway release, in a fresh interpreter."""
    import json
    import sys

    package = tmp_path / "release" / "musicbingo"
    shutil.copytree(SAMPLE_OPTIONS, package / "options")
    (package / "__init__.py").write_text("")
    (package / "bingo.ini").write_text(ini)
    code = ("import json\nfrom musicbingo.options import Options\no = Options()\n"
            "assert o.load_ini_file()\nprint(json.dumps(o.smtp.to_dict()))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=package.parent, capture_output=True,
                         text=True, check=True, env={"PATH": os.environ["PATH"]})
    return json.loads(out.stdout)


def test_smtp_section_golden_and_read_by_the_app(tmp_path):
    """smtp: renders [smtp] with the keys the app reads; a fetched password holding '%' comes
    back to the app unchanged, port as a number, starttls as a boolean. Set UPDATE_GOLDEN=1 to
    rewrite tests/golden/smtp/bingo.ini."""
    amzn = platforms.PLATFORMS["amzn2023"]
    ini = next(f for f in render_all(resolve(load_config_text(SMTP), amzn, NANO), amzn, NANO,
                                     db_password="golden-password-123",
                                     smtp_password="golden+smtp/pw%42")
               if f.template == "bingo.ini").content
    golden = GOLDEN / "smtp" / "bingo.ini"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(ini)
    assert ini == golden.read_text()
    assert read_as_the_app(ini, tmp_path) == {
        "server": "email-smtp.eu-west-1.amazonaws.com", "port": 587,
        "sender": "bingo@example.com", "reply_to": None, "username": "AKIAEXAMPLE123",
        "password": "golden+smtp/pw%42", "starttls": True}


def test_no_smtp_section_without_a_server_and_none_without_a_login(tmp_path):
    assert "[smtp]" not in next(f for f in rendered("debian12") if f.template == "bingo.ini").content
    text = "smtp: {server: 10.0.0.25, port: 25, sender: bingo@example.com, starttls: false}"
    ini = next(f for f in rendered("debian12", text) if f.template == "bingo.ini").content
    assert "username" not in ini and "password" not in ini.split("[smtp]")[1]
    assert read_as_the_app(ini, tmp_path) == {
        "server": "10.0.0.25", "port": 25, "sender": "bingo@example.com", "reply_to": None,
        "username": None, "password": None, "starttls": False}


def test_bingo_ini_is_a_private_secret_file():
    ini = next(f for f in rendered("debian12") if f.template == "bingo.ini")
    assert ini.secret and ini.mode == 0o640 and ini.path == "/var/www/music-bingo/shared/bingo.ini"
    # root's: the app reads it through its group and cannot rewrite it
    assert (ini.owner, ini.group) == ("root", "music-bingo")
    assert "passwd = golden-password-123" in ini.content
    assert "[musicbingo]" in ini.content and "provider = mysql" in ini.content


def write_tree(files, root: Path):
    for mf in files:
        target = root / mf.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(mf.content)


@pytest.mark.parametrize("platform_name", sorted(platforms.PLATFORMS))
@pytest.mark.parametrize("server_name", ["_", "bingo.example.com www.example.com"])
def test_nginx_site_passes_real_nginx_t(tmp_path, platform_name, server_name):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    files = rendered(platform_name, EXAMPLE.replace("server_name: _", f"server_name: {server_name}"))
    write_tree(files, tmp_path / "root")
    site = next(f for f in files if f.template == "nginx-site.conf")
    conf = tmp_path / "conf"
    conf.mkdir()
    (tmp_path / "logs").mkdir()
    for name in ("mime.types", "uwsgi_params"):
        shutil.copy(f"/etc/nginx/{name}", conf / name)
    (conf / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
        f"http {{\n  include mime.types;\n  access_log off;\n"
        f"  include {tmp_path}/root{site.path};\n}}\n")
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf / "nginx.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "warn" not in result.stderr


def test_amazon_linux_main_nginx_conf_passes_real_nginx_t(tmp_path):
    """On amzn2023 bingo-host owns nginx.conf (the distro's has a competing server block)."""
    files = {f.template: f for f in rendered("amzn2023")}
    assert "nginx-main.conf" not in {f.template for f in rendered("debian12")}
    main = files["nginx-main.conf"]
    assert main.path == "/etc/nginx/nginx.conf" and "server {" not in main.content
    write_tree(files.values(), tmp_path / "root")
    conf = (tmp_path / "root/etc/nginx/nginx.conf")
    (tmp_path / "logs").mkdir()
    # This machine is Debian: its nginx runs as www-data, and the site comes from the tree.
    conf.write_text(conf.read_text()
                    .replace("user nginx;", "user www-data;")
                    .replace("pid /run/nginx.pid;", f"pid {tmp_path}/nginx.pid;")
                    .replace("/var/log/nginx/", f"{tmp_path}/logs/")
                    .replace("include /etc/nginx/conf.d/*.conf;", f"include {tmp_path}/root/etc/nginx/conf.d/*.conf;")
                    .replace("include /usr/share/nginx/modules/*.conf;", "")
                    .replace("uwsgi_params", "/etc/nginx/uwsgi_params"))
    site = tmp_path / "root/etc/nginx/conf.d/music-bingo.conf"
    site.write_text(site.read_text().replace("include uwsgi_params;", "include /etc/nginx/uwsgi_params;"))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "warn" not in result.stderr


def test_nginx_t_catches_a_broken_site(tmp_path):
    """The nginx check above can fail: a site with a bad directive is refused."""
    conf = tmp_path / "nginx.conf"
    (tmp_path / "logs").mkdir()
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\nevents {{}}\n"
                    "http { server { listen 80; bogus_directive on; } }\n")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True)
    assert result.returncode != 0


def verify_units(tmp_path, files, extra_units=()):
    """systemd-analyze verify in a throwaway root holding the rendered units and stub binaries."""
    root = tmp_path / "root"
    write_tree(files, root)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "lib").symlink_to("usr/lib")
    for name, text in extra_units:
        (root / "usr/lib/systemd/system" / name).write_text(text)
    for f in files:
        if f.path.endswith(".service"):
            for line in f.content.splitlines():
                if line.startswith("ExecStart="):
                    binary = root / line.split("=", 1)[1].split()[0].lstrip("/")
                    binary.parent.mkdir(parents=True, exist_ok=True)
                    binary.write_text("#!/bin/sh\n")
                    binary.chmod(0o755)
    units = [Path(f.path).name for f in files
             if f.path.startswith("/etc/systemd/system/") and f.path.endswith((".service", ".timer"))
             and ".service.d/" not in f.path]
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", *units],
                          capture_output=True, text=True)


MARIADB_STUB = ("mariadb.service", "[Unit]\nDescription=stub\n[Service]\nExecStart=/bin/true\n")


@pytest.mark.parametrize("platform_name", sorted(platforms.PLATFORMS))
def test_units_pass_systemd_analyze_verify(tmp_path, platform_name):
    files = rendered(platform_name)
    result = verify_units(tmp_path, files, [MARIADB_STUB])
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert len([f for f in files if f.path.endswith((".service", ".timer"))]) == 9  # + patch timer, firewall, resize


def example_with(**sections) -> str:
    import yaml

    data = yaml.safe_load(EXAMPLE)
    data.update(sections)
    return yaml.safe_dump(data)


@pytest.mark.parametrize("platform_name", sorted(platforms.PLATFORMS))
def test_monitoring_units_pass_systemd_analyze_verify(tmp_path, platform_name):
    """With metrics on and 4 GiB ('auto' runs the CloudWatch agent where the platform has it):
    the metrics timer everywhere, the journal export only where the agent is installed."""
    files = rendered(platform_name, example_with(metrics={"enabled": True, "interval_minutes": 1}),
                     HostFacts(mem_bytes=4 << 30, cpus=2))
    result = verify_units(tmp_path, files, [MARIADB_STUB])
    assert result.returncode == 0 and result.stderr == "", result.stderr
    names = {f.template for f in files}
    assert {"metrics.service", "metrics.timer", "patch.service", "patch.timer"} <= names
    has_agent = platforms.PLATFORMS[platform_name].cloudwatch_agent_package is not None
    assert ({"journal-export.service", "journal-export.timer", "cloudwatch-agent.json",
             "logrotate.conf"} <= names) == has_agent
    timer = next(f for f in files if f.template == "metrics.timer").content
    assert "OnUnitActiveSec=1min" in timer


def test_cloudwatch_agent_config_ships_the_logs_and_metrics():
    """The agent's JSON: nginx's two logs, the journal copies the export writes, memory, swap and
    both file systems; off on a nano unless asked for."""
    import json

    text = example_with(cloudwatch_agent={"enabled": True})
    conf = next(f for f in rendered("amzn2023", text) if f.template == "cloudwatch-agent.json")
    data = json.loads(conf.content)
    files = {e["file_path"]: e["log_group_name"] for e in data["logs"]["logs_collected"]["files"]["collect_list"]}
    assert files == {"/var/log/nginx/access.log": "/bingo-host/music-bingo/nginx-access",
                     "/var/log/nginx/error.log": "/bingo-host/music-bingo/nginx-error",
                     "/var/log/bingo-host/uwsgi.log": "/bingo-host/music-bingo/uwsgi",
                     "/var/log/bingo-host/bingo-host.log": "/bingo-host/music-bingo/bingo-host"}
    assert data["metrics"]["namespace"] == "BingoHost"  # the only one the instance role may put into
    collected = data["metrics"]["metrics_collected"]
    assert set(collected) == {"mem", "swap", "disk"}
    assert collected["disk"]["resources"] == ["/", "/var/lib/mysql"]
    export = next(f for f in rendered("amzn2023", text) if f.template == "journal-export.service")
    assert "--unit=bingo-uwsgi.service >> /var/log/bingo-host/uwsgi.log" in export.content
    assert "--identifier=bingo-host >> /var/log/bingo-host/bingo-host.log" in export.content
    nano = {f.template for f in rendered("amzn2023")}  # 'auto' on 512 MiB: no agent
    assert "cloudwatch-agent.json" not in nano
    assert not {f.template for f in rendered("debian12", text)} & {"cloudwatch-agent.json",
                                                                  "journal-export.timer"}


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path):
    files = rendered("debian12")
    broken = [f if f.template != "snapshot.timer" else
              type(f)(**{**f.__dict__, "content": f.content.replace("OnCalendar=daily", "OnCalendar=nonsense")})
              for f in files]
    result = verify_units(tmp_path, broken, [MARIADB_STUB])
    assert result.returncode != 0 and "calendar specification" in result.stderr


# -- `render --out` run as root never writes through a link planted under OUT --

def _render(out, *extra):
    from click.testing import CliRunner

    from bingo_host.cli import main

    return CliRunner().invoke(main, ["--config", str(REPO / "examples" / "config.yaml"),
                                     "render", "--out", str(out), "--platform", "debian12", *extra])


@pytest.fixture
def live(tmp_path):
    """A stand-in for the live /srv/musicbingo/shared and the earlier render beside it."""
    live = tmp_path / "live" / "shared"
    live.mkdir(parents=True)
    (live / "bingo.ini").write_text("[database]\npasswd = the-real-one\n")
    out = tmp_path / "out"
    assert _render(out).exit_code == 0
    return live, out, next(out.rglob("shared/bingo.ini"))


def test_render_replaces_a_planted_file_link_not_its_target(live):
    live_dir, out, ini = live
    ini.unlink()
    ini.symlink_to(live_dir / "bingo.ini")
    result = _render(out)
    assert result.exit_code == 0, result.output
    assert (live_dir / "bingo.ini").read_text() == "[database]\npasswd = the-real-one\n"
    assert not ini.is_symlink() and "passwd" in ini.read_text()


@pytest.mark.parametrize("dry_run", [False, True])
def test_render_refuses_a_planted_directory_link(live, dry_run):
    live_dir, out, ini = live
    shutil.rmtree(ini.parent)
    ini.parent.symlink_to(live_dir)
    result = _render(out, *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 2, result.output
    assert "--out:" in result.output and "not following it" in result.output
    assert "the-real-one" not in result.output
    assert (live_dir / "bingo.ini").read_text() == "[database]\npasswd = the-real-one\n"
    assert sorted(p.name for p in live_dir.iterdir()) == ["bingo.ini"]


def test_render_refuses_a_foreign_non_empty_directory_or_a_link(tmp_path):
    out = tmp_path / "etc"
    out.mkdir()
    (out / "fstab").write_text("keep me\n")
    result = _render(out)
    assert result.exit_code == 2 and "not an earlier render" in result.output, result.output
    assert sorted(p.name for p in out.iterdir()) == ["fstab"]
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "new")
    result = _render(link)
    assert result.exit_code == 2 and "symbolic link" in result.output, result.output
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _render(empty).exit_code == 0 and (empty / "manifest.json").is_file()


EXTERNAL_TLS = ("database: {host: aurora.example.com, user: bingoapp, tls_ca: /etc/bingo-host/rds-ca.pem,\n"
                "           password: 'secretsmanager:bingo/app-db',\n"
                "           admin_secret: 'secretsmanager:rds!cluster-0123'}\n"
                "snapshots: {enabled: false}\n")


def test_external_tls_renders_ssl_the_way_the_app_reads_it():
    """[database] ssl is JSON the app turns into its SQLAlchemy URL: `ssl_ca` becomes the
    driver's ssl={"ca": ...} (test_health_wsgi: the health check reads it the same way)."""
    import configparser
    import json

    ini = next(f for f in rendered("debian12", EXTERNAL_TLS) if f.template == "bingo.ini")
    parsed = configparser.ConfigParser()
    parsed.read_string(ini.content)
    assert json.loads(parsed["database"]["ssl"]) == {"ssl_ca": "/etc/bingo-host/rds-ca.pem"}
    # No TLS without a CA, and never for the local server (its socket).
    plain = next(f for f in rendered("debian12") if f.template == "bingo.ini")
    assert "ssl" not in plain.content


def test_refresh_timer_only_when_a_secret_lives_in_aws():
    templates = {f.template for f in rendered("debian12", EXTERNAL_TLS)}
    assert {"secrets-refresh.service", "secrets-refresh.timer"} <= templates
    templates = {f.template for f in rendered("debian12", "database: {password: generate}\n")}
    assert not templates & {"secrets-refresh.service", "secrets-refresh.timer"}
    # An SMTP password kept in Secrets Manager may rotate there too.
    smtp = ("smtp: {server: smtp.example.com, sender: bingo@example.com, username: AKIAEXAMPLE,"
            " password: 'secretsmanager:bingo/smtp'}\n")
    templates = {f.template for f in rendered("debian12", smtp)}
    assert {"secrets-refresh.service", "secrets-refresh.timer"} <= templates


def test_refresh_units_pass_systemd_analyze_verify(tmp_path):
    files = rendered("debian12", EXTERNAL_TLS)
    result = verify_units(tmp_path, files, [MARIADB_STUB])
    assert result.returncode == 0 and result.stderr == "", result.stderr
    timer = next(f for f in files if f.template == "secrets-refresh.timer")
    assert timer.path == "/etc/systemd/system/bingo-host-secrets-refresh.timer"


def test_backups_render_their_timers_and_pass_systemd_analyze_verify(tmp_path):
    text = EXAMPLE.replace("  enabled: false                # timers run",
                           "  enabled: true                 # timers run").replace(
        "  bucket: null                  # required", "  bucket: bingo-backups         # required")
    files = rendered("debian12", text)
    units = {f.path: f.content for f in files if "backup" in f.path or "drill" in f.path}
    assert sorted(units) == ["/etc/systemd/system/bingo-host-backup.service",
                             "/etc/systemd/system/bingo-host-backup.timer",
                             "/etc/systemd/system/bingo-host-restore-drill.service",
                             "/etc/systemd/system/bingo-host-restore-drill.timer"]
    assert "OnCalendar=daily" in units["/etc/systemd/system/bingo-host-backup.timer"]
    assert "OnCalendar=monthly" in units["/etc/systemd/system/bingo-host-restore-drill.timer"]
    assert "ExecStart=/usr/local/bin/bingo-host restore-drill" in units[
        "/etc/systemd/system/bingo-host-restore-drill.service"]
    result = verify_units(tmp_path, files, [MARIADB_STUB])
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_compiled_templates_are_cached_only_in_a_root_only_directory(tmp_path):
    """A converged bootstrap reuses the templates it compiled before (Jinja's bytecode cache);
    Jinja executes that bytecode, so the directory must be root's alone: it is created 0700, a
    group-writable one is tightened, a link is not used."""
    import os
    import stat

    from bingo_host import render

    if os.geteuid() != 0:
        pytest.skip("the cache is root's")
    cache = tmp_path / "jinja"
    try:
        assert render.use_bytecode_cache(str(cache))
        assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
        first = rendered("debian12")
        compiled = sorted(os.listdir(cache))
        assert compiled and all(name.endswith(".cache") for name in compiled)
        render._environment.cache_clear()  # a new run: templates come from the cache
        assert [f.content for f in rendered("debian12")] == [f.content for f in first]
        assert sorted(os.listdir(cache)) == compiled
        os.chmod(cache, 0o777)
        assert render.use_bytecode_cache(str(cache)) and stat.S_IMODE(os.stat(cache).st_mode) == 0o700
        link = tmp_path / "link"
        link.symlink_to(cache)
        assert not render.use_bytecode_cache(str(link))
    finally:
        render._bytecode_dir = None
        render._environment.cache_clear()


def test_uwsgi_listen_queue_stays_within_the_kernels_cap(tmp_path):
    """1024 where the kernel allows it (every kernel since 5.4: somaxconn 4096); below that the
    kernel's cap, since uWSGI refuses to start with a larger queue."""
    from bingo_host.facts.host import somaxconn

    (tmp_path / "somaxconn").write_text("128\n")
    assert somaxconn(str(tmp_path / "somaxconn")) == 128
    assert somaxconn(str(tmp_path / "missing")) == 128
    for cap, want in ((4096, 1024), (128, 128)):
        vassal = {f.template: f.content for f in rendered("debian12", facts=HostFacts(512 << 20, 2, somaxconn=cap))}
        assert f"\nlisten = {want}\n" in vassal["uwsgi-vassal.ini"]


def unit_values(text: str, key: str) -> list[str]:
    """Every space-separated value of `key=` lines in a unit file."""
    return [v for line in text.splitlines() if line.startswith(f"{key}=") for v in line.split("=", 1)[1].split()]


@pytest.mark.parametrize("platform_name", sorted(platforms.PLATFORMS))
@pytest.mark.parametrize("database", ["local", "external"])
def test_the_resize_unit_runs_after_what_bootstrap_starts_and_is_bounded(tmp_path, platform_name, database):
    """bingo-host-resize.service runs bootstrap at boot: ordered after nginx, uWSGI and the local
    MariaDB (ordered before one, bootstrap's own start of it would wait for the unit: a deadlock),
    with no unit bingo-host renders waiting for it, a start timeout, pulled in by multi-user.target;
    and systemd-analyze verify accepts it."""
    text = EXAMPLE if database == "local" else example_with(database={"host": "db.example.com"})
    files = rendered(platform_name, text)
    unit = next(f for f in files if f.template == "resize.service")
    assert unit.path == "/etc/systemd/system/bingo-host-resize.service" and unit.on_change == "daemon-reload"
    mariadb = f"{platforms.PLATFORMS[platform_name].mariadb_service}.service"
    after = set(unit_values(unit.content, "After"))
    assert {"network-online.target", "nginx.service", "bingo-uwsgi.service"} <= after
    assert (mariadb in after) == (database == "local")
    assert not unit_values(unit.content, "Before") and not unit_values(unit.content, "Requires")
    assert unit_values(unit.content, "ExecStart") == ["/usr/local/bin/bingo-host", "resize"]
    assert unit_values(unit.content, "Type") == ["oneshot"]
    assert unit_values(unit.content, "TimeoutStartSec") == ["15min"]
    assert unit_values(unit.content, "WantedBy") == ["multi-user.target"]
    waiting = [f.path for f in files if f is not unit and "bingo-host-resize" in f.content]
    assert not waiting, f"ordered after the resize unit, which bootstrap may start them from: {waiting}"
    result = verify_units(tmp_path, [unit], [MARIADB_STUB])
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_systemd_analyze_verify_refuses_a_broken_resize_unit(tmp_path):
    """The verify above can fail: a timeout systemd cannot parse is reported."""
    unit = next(f for f in rendered("debian12") if f.template == "resize.service")
    broken = dataclasses.replace(unit, content=unit.content.replace("TimeoutStartSec=15min",
                                                                    "TimeoutStartSec=fifteen"))
    result = verify_units(tmp_path, [broken], [MARIADB_STUB])
    assert "TimeoutStartSec" in result.stderr, result.stderr
