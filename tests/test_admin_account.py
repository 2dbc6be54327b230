"""`bingo-host create-admin` (admin_account.py) against a stand-in release on this machine.

The stand-in has the methods of the real app that create-admin calls (Options, DatabaseConnection
.bind/.create_superuser/.session_scope, User.get/.set_password/.check_password), its accounts in
a JSON file, and prints the password it set as the real create_superuser does. It runs as the
user `nobody`, through runuser, as the app user would. The real fixture app, against MariaDB
in the test host, is test_deploy.py's test_a_fresh_site_has_no_well_known_admin_login.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from bingo_host import admin_account
from bingo_host.cli import main
from bingo_host.config_file import load_config_text
from bingo_host.errors import BingoHostError, ConfigError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs the app side as nobody")

OPTIONS = "class Options:\n    database = None\n    def load_ini_file(self):\n        return True\n"
USER = '''import json, os
STORE = os.path.join(os.path.dirname(__file__), "..", "..", "store", "users.json")
class User:
    def __init__(self, username, password):
        self.username, self.password = username, password
    @classmethod
    def get(cls, session, username):
        found = session.get(username)
        return None if found is None else cls._bound(session, username, found)
    @classmethod
    def _bound(cls, session, username, password):
        user = cls(username, password)
        user._session = session
        return user
    def set_password(self, password):
        self._session[self.username] = "hash:" + password
    def check_password(self, password):
        return self._session.get(self.username) == "hash:" + password
'''
DB = '''import contextlib, json, os
from .user import STORE
class DatabaseConnection:
    _connection = None
    @classmethod
    def bind(cls, opts, create_superuser=False):
        assert create_superuser is False
        cls._connection = cls()
    @contextlib.contextmanager
    def session_scope(self):
        with open(STORE) as f:
            users = json.load(f)
        yield users
        with open(STORE, "w") as f:
            json.dump(users, f)
    def create_superuser(self, username=None, password=None):
        with self.session_scope() as users:
            if "admin" in users:
                return
            users[username] = "hash:" + password
            print(f'Created admin account "{username}" (admin@music.bingo) with password "{password}"')
'''


@pytest.fixture
def site(tmp_path):
    """<top>/app: a release `current` points at, its venv's python, a store nobody may write
    (<release>/store/users.json)."""
    top = Path(tempfile.mkdtemp(prefix="bingo-admin-"))
    top.chmod(0o755)
    root = top / "app"
    release = root / "releases" / "d-STANDIN01"
    for d in ("musicbingo/models", "venv/bin"):
        (release / d).mkdir(parents=True)
    (release / "musicbingo" / "__init__.py").write_text("")
    (release / "musicbingo" / "options.py").write_text(OPTIONS)
    (release / "musicbingo" / "models" / "__init__.py").write_text("")
    (release / "musicbingo" / "models" / "user.py").write_text(USER)
    (release / "musicbingo" / "models" / "db.py").write_text(DB)
    (release / "venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    (root / "current").symlink_to(release)
    store = release / "store"
    store.mkdir()
    store.chmod(0o777)
    (store / "users.json").write_text("{}")
    (store / "users.json").chmod(0o666)
    for p in [top, *top.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(p.stat().st_mode | 0o755)
    cfg = load_config_text(f"app: {{root: {root}}}")
    yield cfg, store / "users.json", tmp_path / "app-admin-password"
    subprocess.run(["rm", "-rf", str(top)], check=True)


def users(store: Path) -> dict:
    return json.loads(store.read_text())


def test_makes_the_account_keeps_the_password_0600_and_logs_none_of_it(site, caplog):
    cfg, store, kept = site
    caplog.set_level("DEBUG", logger="bingo_host")
    password = admin_account.create(cfg, "nobody", password_file=str(kept))
    assert len(password) == 24 and users(store) == {"admin": "hash:" + password}
    assert kept.read_text() == password + "\n"
    st = kept.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, 0)
    assert password not in caplog.text
    assert [r.getMessage() for r in caplog.records if r.name == "bingo_host.admin_account"] == [
        f"create-admin: made the app account 'admin'; its password is in {kept} (0600 root)"]


def test_an_existing_account_is_left_alone_unless_reset(site, caplog):
    cfg, store, kept = site
    caplog.set_level("INFO", logger="bingo_host")
    store.write_text(json.dumps({"admin": "hash:changeme"}))
    with pytest.raises(BingoHostError, match="^the app account 'admin' exists and still has the app's "
                                             "well-known default password: give it a new one with --reset$"):
        admin_account.create(cfg, "nobody", password_file=str(kept))
    store.write_text(json.dumps({"admin": "hash:something-else"}))
    with pytest.raises(BingoHostError, match=r"^the app account 'admin' exists \(--reset gives it a new "):
        admin_account.create(cfg, "nobody", password_file=str(kept))
    assert users(store) == {"admin": "hash:something-else"} and not kept.exists()
    password = admin_account.create(cfg, "nobody", reset=True, password_file=str(kept))
    assert users(store) == {"admin": "hash:" + password} and kept.read_text() == password + "\n"
    assert f"create-admin: reset the password of the app account 'admin'; its password is in {kept}" \
        in caplog.text and password not in caplog.text


def test_an_account_the_app_did_not_make_is_a_failure_not_a_password(site):
    """The real create_superuser does nothing once an `admin` exists, whatever the name asked:
    the login is checked, and nothing is kept."""
    cfg, store, kept = site
    store.write_text(json.dumps({"admin": "hash:x"}))
    with pytest.raises(BingoHostError, match=r"^create-admin: the app could not set the password of "
                                             r"'alice' \(exit 0\): NOT VERIFIED$"):
        admin_account.create(cfg, "nobody", username="alice", password_file=str(kept))
    assert not kept.exists()


def test_the_app_failing_says_its_last_line_masked(site):
    cfg, store, kept = site
    store.chmod(0o644)  # the app user cannot write its store
    store.write_text("not json")
    with pytest.raises(BingoHostError, match=r"^create-admin: the app could not set the password of "
                                             r"'admin' \(exit 1\): json.decoder.JSONDecodeError: "):
        admin_account.create(cfg, "nobody", password_file=str(kept))
    assert not kept.exists()


@pytest.mark.parametrize("make", ["nothing", "release-without-venv", "current-outside-releases"])
def test_no_release_yet(tmp_path, make):
    root = tmp_path / "app"
    if make == "release-without-venv":
        (root / "releases" / "d-NOVENV0001").mkdir(parents=True)
        (root / "current").symlink_to(root / "releases" / "d-NOVENV0001")
    elif make == "current-outside-releases":  # the placeholder, or a link bingo-host did not make
        (root / "placeholder" / "venv" / "bin").mkdir(parents=True)
        (root / "placeholder" / "venv" / "bin" / "python").symlink_to("/usr/bin/python3")
        (root / "current").symlink_to(root / "placeholder")
    cfg = load_config_text(f"app: {{root: {root}}}")
    with pytest.raises(BingoHostError) as info:
        admin_account.create(cfg, "nobody", password_file=str(tmp_path / "kept"))
    assert str(info.value) == f"no release of the app is deployed under {root} yet: deploy one, then run " \
                              "create-admin"


@pytest.mark.parametrize("name", ["", " admin", "x" * 33, "a\nb"])
def test_a_bad_username_is_refused(tmp_path, name):
    with pytest.raises(ConfigError) as info:
        admin_account.create(load_config_text(""), "nobody", username=name,
                             password_file=str(tmp_path / "kept"))
    assert (info.value.field, info.value.reason) == ("--username", "1 to 32 printable characters, no "
                                                                   "surrounding spaces")


def test_a_32_character_username_is_the_longest(site):
    cfg, store, kept = site
    store.write_text("{}")
    name = "a" * 32
    admin_account.create(cfg, "nobody", username=name, password_file=str(kept))
    assert list(users(store)) == [name]


def test_cli_exit_codes(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"app: {{root: {tmp_path}/app}}\n")
    run = CliRunner().invoke
    r = run(main, ["--config", str(config), "create-admin", "--dry-run"])  # refuses as the run would
    assert r.exit_code == 1 and "error: no release of the app is deployed under" in r.output
    r = run(main, ["--config", str(config), "create-admin", "--username", ""])
    assert r.exit_code == 2 and "error: --username: " in r.output
    r = run(main, ["--config", str(config), "create-admin"])
    assert r.exit_code == 1 and "error: no release of the app is deployed under" in r.output
    release = tmp_path / "app" / "releases" / "r1"
    (release / "venv" / "bin").mkdir(parents=True)
    (release / "venv" / "bin" / "python").write_text("")
    (tmp_path / "app" / "current").symlink_to(release)
    password_file = "/etc/bingo-host/app-admin-password"
    before = os.path.lexists(password_file)
    r = run(main, ["--config", str(config), "create-admin", "--reset", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert r.stdout == (f"create-admin: would give a new password to the app account 'admin' (release "
                        f"{release}) and keep its password in {password_file}\n")
    assert os.path.lexists(password_file) == before
