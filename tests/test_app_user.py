"""Who the app may run as: never root, a user who can become root, or another service's user.

Pure tests over passwd entries for the rules (ec2-user on Amazon Linux 2023 is in wheel and named
by cloud-init's sudoers file); sudo's own answers (`sudo -n -l -U`, recorded from sudo 1.9.13p3 on
Debian 12 by tests/fixtures/sudo-l/capture.sh); then `config check` against this machine's real
passwd and group databases (it runs on Debian 12: root, www-data, mysql, daemon and nobody
exist). The test host (test_bootstrap.py) checks the real bootstrap refusing a sudo member, a
%group rule's member and a named user, and the user it creates.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bingo_host.cli import main
from bingo_host.config_file import load_config_text
from bingo_host.errors import BingoHostError
from bingo_host.facts import platforms, sudo
from bingo_host.facts.host import Account, account
from bingo_host.resolve import app_user, app_user_problem

AMZN = platforms.PLATFORMS["amzn2023"]
DEB = platforms.PLATFORMS["debian12"]
CFG = load_config_text("")
SUDO_L = Path(__file__).parent / "fixtures" / "sudo-l"
ALL = ("(ALL : ALL) ALL",)


def acct(name, uid, groups=(), home="/home/x", shell="/bin/bash"):
    return Account(name, uid, home, shell, frozenset({name, *groups}))


@pytest.mark.parametrize("platform", [AMZN, DEB], ids=lambda p: p.name)
def test_auto_is_the_dedicated_user_named_after_the_app_on_every_platform(platform):
    assert app_user(CFG) == "music-bingo"
    assert app_user(load_config_text("app: {name: quiz}")) == "quiz"
    assert app_user(load_config_text("app: {user: bingo}")) == "bingo"


@pytest.mark.parametrize("who, platform, rules, why", [
    (acct("root", 0), DEB, (), "is root (uid 0)"),
    (acct("toor", 0), DEB, (), "is root (uid 0)"),
    (acct("ec2-user", 1000, ["adm", "wheel", "systemd-journal"]), AMZN, (), "wheel group"),
    (acct("admin", 1000, ["sudo"]), DEB, (), "sudo and admin groups"),
    (acct("ops", 1001, ["docker"]), DEB, (), "docker group"),
    (acct("ec2-user", 1000), AMZN, ALL, "may run commands through sudo (`sudo -l -U ec2-user`: "
                                        "(ALL : ALL) ALL)"),
    (acct("svc", 1001), DEB, ("(www-data) /usr/bin/id", "(root) /bin/true"),
     "through sudo (`sudo -l -U svc`: (www-data) /usr/bin/id and 1 more)"),
    (acct("mysql", 27, home="/var/lib/mysql", shell="/sbin/nologin"), AMZN, (), "database's user"),
    (acct("mysql", 1005), DEB, (), "database's user"),
    (acct("nginx", 992, shell="/sbin/nologin"), AMZN, (), "nginx's user"),
    (acct("www-data", 33, home="/var/www", shell="/usr/sbin/nologin"), DEB, (), "nginx's user"),
    (acct("daemon", 1, home="/usr/sbin", shell="/usr/sbin/nologin"), DEB, (), "system account (uid 1)"),
    (acct("nobody", 65534, home="/nonexistent", shell="/usr/sbin/nologin"), DEB, (), "system account"),
    # a system account at the app's root but with a login shell: not what bingo-host creates
    (acct("music-bingo", 990, home="/var/www/music-bingo"), DEB, (), "login shell"),
])
def test_refused_app_users(who, platform, rules, why):
    problem = app_user_problem(who, CFG, platform, rules)
    assert problem and why in problem


@pytest.mark.parametrize("who", [
    acct("music-bingo", 995, home="/var/www/music-bingo", shell="/usr/sbin/nologin"),  # Debian's
    acct("music-bingo", 995, home="/var/www/music-bingo", shell="/sbin/nologin"),  # AL2023's
    acct("alice", 1001, ["users"]),  # an ordinary user: allowed when named explicitly
])
def test_allowed_app_users(who):
    assert app_user_problem(who, CFG, AMZN, ()) is None


# -- sudo's own answer --

@pytest.mark.parametrize("user, rules", [
    ("plainsvc", ()),  # no rule names it
    ("grouped", ("(ALL : ALL) ALL",)),  # %ops ALL=(ALL:ALL) ALL, a member of ops
    ("aliased", ("(ALL) NOPASSWD: ALL",)),  # User_Alias OPERATORS = aliased, carol
    ("byuid", ("(root) NOPASSWD: /usr/bin/systemctl restart nginx",)),  # #4242 ALL=(root) ...
    ("limited", ("(www-data) /usr/bin/id",)),  # not root, still refused: the app sudoes nothing
    ("everyone", ("(ALL) /usr/bin/id",)),  # ALL ALL=(ALL) /usr/bin/id
])
def test_sudos_recorded_answers(user, rules):
    stdout = (SUDO_L / f"{user}.stdout").read_text()
    assert sudo.parse_list(user, stdout) == rules
    assert "unable to resolve host" in (SUDO_L / f"{user}.stderr").read_text()  # the noise is there


@pytest.mark.parametrize("stdout", [
    "",
    "User other is not allowed to run sudo on vm.\n",  # another user's answer is no answer
    "Utilisateur plainsvc n'est pas autorisé\n",
    (SUDO_L / "grouped.stdout").read_text().replace("User grouped may", "User grouped might"),
])
def test_anything_else_is_no_answer(stdout):
    assert sudo.parse_list("plainsvc", stdout) is None


def test_a_may_run_header_without_commands_still_counts():
    assert sudo.parse_list("x", "User x may run the following commands on vm:\n") == \
        ("(sudo named no command)",)
    assert sudo.parse_list("x", "User x may run the following commands on vm:\n\tALL\nmore\n  no\n") == ("ALL",)


def fake_sudo(tmp_path, monkeypatch, case: str, rc: int = 0, recorded: Path = SUDO_L) -> Path:
    """A `sudo` on PATH that answers as the recorded one did and notes its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "sudo"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" > {tmp_path}/argv\ncat {recorded}/{case}.stdout\n"
                      f"cat {recorded}/{case}.stderr >&2\nexit {rc}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return tmp_path / "argv"


def test_rules_asks_sudo_for_the_user(tmp_path, monkeypatch):
    argv = fake_sudo(tmp_path, monkeypatch, "grouped")
    assert sudo.rules("grouped") == ("(ALL : ALL) ALL",)
    assert argv.read_text() == "-n -l -U grouped\n"


def test_no_sudo_on_the_host_is_no_sudo(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert sudo.rules("anyone") == ()


def test_an_answer_that_cannot_be_read_is_an_error_not_a_no(tmp_path, monkeypatch):
    fake_sudo(tmp_path, monkeypatch, "nosuchuser", rc=1)
    with pytest.raises(BingoHostError, match=r"^cannot tell whether nosuchuser may use sudo: `sudo -l -U "
                                             r"nosuchuser` said 'sudo: unknown user nosuchuser' \(exit 1\)$"):
        sudo.rules("nosuchuser")


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


@pytest.mark.parametrize("stderr, said", [
    ("", "'nothing'"),  # an answer of nothing at all
    ("sudo: unable to resolve host vm: x\n" + "e" * 300 + "\n", repr("e" * 200)),  # noise skipped, clipped
])
def test_an_unreadable_answer_is_quoted_short(tmp_path, monkeypatch, stderr, said):
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "odd.stdout").write_text("")
    (tmp_path / "rec" / "odd.stderr").write_text(stderr)
    fake_sudo(tmp_path, monkeypatch, "odd", rc=1, recorded=tmp_path / "rec")
    with pytest.raises(BingoHostError) as info:
        sudo.rules("x")
    assert str(info.value) == f"cannot tell whether x may use sudo: `sudo -l -U x` said {said} (exit 1)"
