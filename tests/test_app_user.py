"""Who the app may run as: never root, a user who can become root, or another service's user.

Pure tests over passwd entries for the rules (ec2-user on Amazon Linux 2023 is in wheel and named
by cloud-init's sudoers file), then `config check` against this machine's real passwd and group
databases (it runs on Debian 12: root, www-data, mysql, daemon and nobody exist). The test host
(test_bootstrap.py) checks the real bootstrap refusing a sudo member and the user it creates.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from bingo_host.cli import main
from bingo_host.config import load_config_text
from bingo_host.facts import platforms
from bingo_host.facts.host import Account, account, app_user, app_user_problem, sudoers_users

AMZN = platforms.PLATFORMS["amzn2023"]
DEB = platforms.PLATFORMS["debian12"]
CFG = load_config_text("")


def acct(name, uid, groups=(), home="/home/x", shell="/bin/bash"):
    return Account(name, uid, home, shell, frozenset({name, *groups}))


@pytest.mark.parametrize("platform", [AMZN, DEB], ids=lambda p: p.name)
def test_auto_is_the_dedicated_user_named_after_the_app_on_every_platform(platform):
    assert app_user(CFG) == "music-bingo"
    assert app_user(load_config_text("app: {name: quiz}")) == "quiz"
    assert app_user(load_config_text("app: {user: bingo}")) == "bingo"


@pytest.mark.parametrize("who, platform, sudoers, why", [
    (acct("root", 0), DEB, set(), "is root (uid 0)"),
    (acct("toor", 0), DEB, set(), "is root (uid 0)"),
    (acct("ec2-user", 1000, ["adm", "wheel", "systemd-journal"]), AMZN, set(), "wheel group"),
    (acct("admin", 1000, ["sudo"]), DEB, set(), "sudo and admin groups"),
    (acct("ops", 1001, ["docker"]), DEB, set(), "docker group"),
    (acct("ec2-user", 1000), AMZN, {"ec2-user", "root"}, "sudoers rule"),
    (acct("mysql", 27, home="/var/lib/mysql", shell="/sbin/nologin"), AMZN, set(), "database's user"),
    (acct("mysql", 1005), DEB, set(), "database's user"),
    (acct("nginx", 992, shell="/sbin/nologin"), AMZN, set(), "nginx's user"),
    (acct("www-data", 33, home="/var/www", shell="/usr/sbin/nologin"), DEB, set(), "nginx's user"),
    (acct("daemon", 1, home="/usr/sbin", shell="/usr/sbin/nologin"), DEB, set(), "system account (uid 1)"),
    (acct("nobody", 65534, home="/nonexistent", shell="/usr/sbin/nologin"), DEB, set(), "system account"),
    # a system account at the app's root but with a login shell: not what bingo-host creates
    (acct("music-bingo", 990, home="/var/www/music-bingo"), DEB, set(), "login shell"),
])
def test_refused_app_users(who, platform, sudoers, why):
    problem = app_user_problem(who, CFG, platform, sudoers)
    assert problem and why in problem


@pytest.mark.parametrize("who", [
    acct("music-bingo", 995, home="/var/www/music-bingo", shell="/usr/sbin/nologin"),  # Debian's
    acct("music-bingo", 995, home="/var/www/music-bingo", shell="/sbin/nologin"),  # AL2023's
    acct("alice", 1001, ["users"]),  # an ordinary user: allowed when named explicitly
])
def test_allowed_app_users(who):
    assert app_user_problem(who, CFG, AMZN, {"root", "ec2-user"}) is None


def test_sudoers_rules_name_their_users(tmp_path):
    (tmp_path / "sudoers").write_text(
        "Defaults env_reset\nDefaults:bob !requiretty\nUser_Alias OPS = carol\n"
        "root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n"
        "# dave ALL=(ALL) ALL\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "90-cloud-init-users").write_text(
        "# Created by cloud-init\n\n# User rules for ec2-user\nec2-user ALL=(ALL) NOPASSWD:ALL\n"
        "erin,frank \\\n  ALL=(ALL) ALL\n")
    names = sudoers_users((str(tmp_path / "sudoers"), str(tmp_path / "d"), str(tmp_path / "none")))
    assert {"root", "ec2-user", "erin", "frank"} <= names
    assert not names & {"bob", "carol", "dave", "OPS", "env_reset", "Defaults"}


def test_account_reads_the_real_passwd_and_group_databases():
    root = account("root")
    assert root.uid == 0 and "root" in root.groups
    assert account("no-such-user-here") is None


def config_check(tmp_path, text):
    config = tmp_path / "config.yaml"
    config.write_text(text)
    return CliRunner().invoke(main, ["--config", str(config), "config", "check"])


@pytest.mark.parametrize("text, field", [
    ("app: {user: root}", "app.user"),
    ("app: {user: www-data}", "app.user"),
    ("app: {user: mysql}", "app.user"),
    ("app: {user: daemon}", "app.user"),
    ("app: {user: nobody}", "app.user"),
    ("app: {name: root}", "app.name"),
])
def test_config_check_on_this_host_refuses_with_exit_2(tmp_path, text, field):
    """The name alone is refused already (fields.py); test_refused_app_users has the reasons the
    accounts themselves give."""
    result = config_check(tmp_path, text)
    assert result.exit_code == 2, result.output
    assert f"error: {field}: " in result.output and "Traceback" not in result.output


def test_config_check_accepts_a_user_bootstrap_will_create(tmp_path):
    result = config_check(tmp_path, "app: {user: bingo-app-to-be}")
    assert result.exit_code == 0, result.output
    assert "user: bingo-app-to-be" in result.output
