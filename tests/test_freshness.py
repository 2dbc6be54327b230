"""No replay of an older signed revision (freshness.py): refused by BeforeInstall and by
`bingo-host deploy` before any script, unless allowed once by `bingo-host allow-older` or
`deploy --allow-older`. Revisions are signed with moto's KMS (tests/kms.py, tests/revisions.py)."""

from __future__ import annotations

import json
import logging
import os
import stat
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from bingo_host.cli import main
from bingo_host.deploy import BundleError, agent, freshness, record, releases
from bingo_host.deploy.events import after_install
from tests.kms import new_key  # kms: that plugin's fixture
from tests.revisions import revision_tree, sign_tree  # agent_root: that plugin's fixture


def logged(caplog) -> list[str]:
    """What bingo-host logged in this test."""
    return [r.getMessage() for r in caplog.records]


SERVING = "2026-06-01T12:00:00Z"
OLDER, NEWER = "2026-05-01T12:00:00Z", "2026-07-01T12:00:00Z"


@pytest.fixture
def app_root(tmp_path, monkeypatch):
    """An app.root serving release d-SERVING01, built from a revision signed SERVING."""
    monkeypatch.setattr(freshness, "ALLOW_FILE", str(tmp_path / "state" / "allow-older"))
    paths = releases.Paths(str(tmp_path / "app"))
    os.makedirs(paths.release("d-SERVING01"))
    releases.write_record(paths.release("d-SERVING01"), {
        "id": "d-SERVING01", "revision": {"signed": True, "created": SERVING,
                                          "manifest_sha256": "a" * 64}})
    os.symlink("releases/d-SERVING01", paths.current)
    return paths


def revision(created: str, signed: bool = True, sha: str = "b" * 64) -> dict:
    return {"signed": signed, "created": created, "manifest_sha256": sha,
            "application": "music-bingo", "deployment_group": "LocalFleet"}


@pytest.mark.parametrize("created", [SERVING, NEWER])
def test_a_revision_as_new_as_the_serving_one_passes(app_root, created):
    freshness.check(revision(created), app_root, consume=True)


def test_an_older_signed_revision_is_refused_naming_how_to_allow_it(app_root):
    with pytest.raises(BundleError, match=f"created {OLDER}, before the serving release's revision "
                                          f"\\({SERVING}\\): refusing to go back .*`bingo-host "
                                          f"allow-older {'b' * 64}`") as info:
        freshness.check(revision(OLDER), app_root, consume=True)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("serving_record", [
    None,  # no release serving yet (placeholder)
    {"revision": None},  # deployed before records kept the revision
    {"revision": {"signed": False, "created": SERVING}},  # an unsigned revision's time proves nothing
    {"revision": {"signed": "yes", "created": SERVING}},
    {"revision": {"signed": True, "created": "June"}},
    {"revision": {"signed": True, "created": 20260601}},
])
def test_nothing_to_compare_with_lets_a_signed_revision_through(app_root, serving_record):
    if serving_record is None:
        os.unlink(app_root.current)
    else:
        releases.write_record(app_root.release("d-SERVING01"), serving_record)
    assert freshness.serving_created(app_root) is None
    freshness.check(revision(OLDER), app_root, consume=True)


def test_an_unsigned_revision_is_not_compared(app_root):
    freshness.check(revision(OLDER, signed=False), app_root, consume=True)


@pytest.mark.parametrize("name", ["created", "sha"])
def test_allow_older_lets_the_named_revision_through_once(app_root, name, caplog):
    older = revision(OLDER)
    r = CliRunner().invoke(main, ["allow-older", older["created" if name == "created" else "manifest_sha256"]])
    assert r.exit_code == 0, r.output
    st = os.stat(freshness.ALLOW_FILE)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    caplog.set_level(logging.INFO, logger="bingo_host")
    caplog.clear()
    freshness.check(older, app_root, consume=True)
    assert "allowed it once" in logged(caplog)[0]
    assert not os.path.exists(freshness.ALLOW_FILE)
    with pytest.raises(BundleError, match="refusing to go back"):
        freshness.check(older, app_root, consume=True)


def test_an_allowance_is_consumed_by_the_next_check_whatever_it_deploys(app_root):
    freshness.allow(OLDER)
    freshness.check(revision(NEWER), app_root, consume=True)  # not the one allowed: used up
    assert not os.path.exists(freshness.ALLOW_FILE)
    with pytest.raises(BundleError, match="refusing to go back"):
        freshness.check(revision(OLDER), app_root, consume=True)


def test_an_allowance_for_another_revision_allows_nothing(app_root):
    freshness.allow("c" * 64)
    with pytest.raises(BundleError, match="refusing to go back"):
        freshness.check(revision(OLDER), app_root, consume=True)


@pytest.mark.parametrize("spoil", [
    lambda f: os.chmod(f, 0o644),  # not root-only: someone else could have written it
    lambda f: os.chown(f, 1234, 0),
    lambda f: Path(f).write_text("not json"),
    lambda f: Path(f).write_text('["a list"]'),
    lambda f: Path(f).write_text('{"revision": 5}'),
    lambda f: (os.unlink(f), os.symlink("/etc/hostname", f)),
    lambda f: (os.unlink(f), os.mkfifo(f)),
])
def test_an_allowance_that_is_not_root_only_and_well_formed_allows_nothing(app_root, spoil):
    freshness.allow(OLDER)
    spoil(freshness.ALLOW_FILE)
    with pytest.raises(BundleError, match="refusing to go back"):
        freshness.check(revision(OLDER), app_root, consume=True)
    assert not os.path.lexists(freshness.ALLOW_FILE)


def test_a_check_that_does_not_consume_leaves_the_allowance(app_root):
    freshness.allow(OLDER)
    freshness.check(revision(OLDER), app_root, consume=False, allow_older=True)
    assert json.loads(Path(freshness.ALLOW_FILE).read_text())["revision"] == "b" * 64
    freshness.allow(OLDER)
    with pytest.raises(BundleError, match="refusing to go back"):  # without consume it is not read
        freshness.check(revision(OLDER), app_root, consume=False)
    assert os.path.exists(freshness.ALLOW_FILE)


@pytest.mark.parametrize("value", ["2026-06-01", "b" * 63, "B" * 64, "2026-06-01T12:00:00Z; rm -rf /"])
def test_allow_older_refuses_what_names_no_revision(app_root, value):
    r = CliRunner().invoke(main, ["allow-older", value])
    assert r.exit_code == 2 and "is neither a revision's created time" in r.output
    assert not os.path.exists(freshness.ALLOW_FILE)


# -- where it runs: BeforeInstall, and `bingo-host deploy` before any script --

def _config(tmp_path, key, paths) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"app:\n  root: {paths.root}\ndeploy:\n  require_signature: true\n"
                      f"  signing_key: {key}\n")
    return config


def test_before_install_refuses_an_older_signed_revision(tmp_path, kms, agent_root, app_root, monkeypatch):
    key = new_key(kms)
    where = Path(agent.Layout(str(agent_root), "grp", "d-OLDER0001").archive)
    tree = revision_tree(where, tmp_path / "marker")
    sign_tree(tree, key, created=OLDER, binding={"application": "app", "deployment_group": "prod"})
    for name, value in (("DEPLOYMENT_ID", "d-OLDER0001"), ("DEPLOYMENT_GROUP_ID", "grp"),
                        ("LIFECYCLE_EVENT", "BeforeInstall"), ("APPLICATION_NAME", "app"),
                        ("DEPLOYMENT_GROUP_NAME", "prod")):
        monkeypatch.setenv(name, value)
    r = CliRunner().invoke(main, ["--config", str(_config(tmp_path, key, app_root)), "hook", "BeforeInstall"])
    assert r.exit_code == 2, r.output
    assert f"the revision was created {OLDER}, before the serving release's revision" in r.output
    assert not os.path.exists(record.STATE_FILE)  # no deploy lock taken, nothing upgraded


def test_deploy_refuses_an_older_signed_revision_before_its_first_script(tmp_path, kms, agent_root,
                                                                         app_root, caplog):
    key = new_key(kms)
    marker = tmp_path / "script-ran"
    tree = revision_tree(tmp_path / "older", marker)
    sign_tree(tree, key, created=OLDER)
    config = _config(tmp_path, key, app_root)
    r = CliRunner().invoke(main, ["--config", str(config), "deploy", str(tree), "--deployment-id", "d-OLD0001"])
    assert r.exit_code == 2 and "refusing to go back" in r.output, r.output
    assert not marker.exists() and not os.path.exists(freshness.ALLOW_FILE)

    r = CliRunner().invoke(main, ["--config", str(config), "deploy", str(tree), "--deployment-id", "d-OLD0002",
                                  "--allow-older"])
    assert r.exit_code == 0, r.output
    assert marker.exists() and "deployed because of --allow-older" in caplog.text
    # The BeforeInstall hook of a bingo-host revision consumes it: it names this revision only.
    sha = json.loads(Path(freshness.ALLOW_FILE).read_text())["revision"]
    assert sha == __import__("hashlib").sha256((tree / "bingo-manifest.json").read_bytes()).hexdigest()


def test_deploy_checks_the_binding_against_its_options(tmp_path, kms, agent_root, app_root):
    key = new_key(kms)
    tree = revision_tree(tmp_path / "rev", tmp_path / "marker")
    sign_tree(tree, key, created=NEWER)
    config = _config(tmp_path, key, app_root)
    r = CliRunner().invoke(main, ["--config", str(config), "deploy", str(tree), "--deployment-group", "prod"])
    assert r.exit_code == 2
    assert "signed for deployment_group 'LocalFleet', but this deployment's is 'prod'" in r.output
    assert not (tmp_path / "marker").exists()


def test_the_release_record_keeps_the_revision_before_install_checked(tmp_path, monkeypatch):
    """AfterInstall copies what BeforeInstall recorded into the release record, where the next
    deployment's freshness check reads `created`."""
    monkeypatch.setattr(record, "STATE_FILE", str(tmp_path / "deploy.json"))
    checked = revision(NEWER)
    record.save({"deployment_id": "d-RECORD001", "revision": checked})
    built = {}
    monkeypatch.setattr(after_install, "build", lambda paths, name, made_from, *a, **kw: built.update(made_from))
    monkeypatch.setattr(after_install, "prestart", lambda ctx, name: None)  # no uWSGI here
    ctx = types.SimpleNamespace(cfg=types.SimpleNamespace(app=types.SimpleNamespace(
                                    root=str(tmp_path), user="app", requirement_overrides=())),
                                platform=types.SimpleNamespace(python="python3"),
                                facts=types.SimpleNamespace(mem_bytes=1 << 30))
    after_install.run(ctx, {"DEPLOYMENT_ID": "d-RECORD001"})
    assert built["revision"] == checked
