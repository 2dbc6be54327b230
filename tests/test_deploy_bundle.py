"""`bingo-host bundle` (deterministic zip or tar.gz revision) and the revision checks `deploy`
makes, on this machine."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from bingo_host import __version__
from bingo_host.cli import main
from bingo_host.deploy import BundleError, appspec
from bingo_host.deploy import archive as archive_mod
from bingo_host.deploy import bundle as bundle_mod
from bingo_host.deploy.bundle import build_bundle
from bingo_host.deploy.virtualenvs import requirement_files
from bingo_host.deploy.wheel import wheel_from_installed

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "fixtures" / "sample_app"
ZIP_EPOCH = (2000, 1, 1, 0, 0, 0)



@pytest.fixture
def fake_wheel(tmp_path):
    wheel = tmp_path / "bingo_host-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK not really a wheel")
    return wheel


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def other_copy(tmp_path: Path) -> Path:
    """The sample app at another time, with other mtimes and modes."""
    copy = tmp_path / "copy"
    shutil.copytree(SAMPLE, copy)
    for p in copy.rglob("*"):
        os.utime(p, (1_700_000_000, 1_700_000_000))
    os.chmod(copy / "application.py", 0o600)
    return copy


def test_tgz_bundle_is_deterministic(tmp_path, fake_wheel):
    a = build_bundle(SAMPLE, tmp_path / "a" / "musicbingo-prod.tar.gz", fake_wheel)
    b = build_bundle(other_copy(tmp_path), tmp_path / "b" / "musicbingo-prod.tar.gz", fake_wheel)
    assert sha256(a) == sha256(b)
    with tarfile.open(a) as tf:
        names = tf.getnames()
        members = tf.getmembers()
    assert names == sorted(names)
    assert {"appspec.yml", "application.py", "requirements.txt", "build/index.html",
            "musicbingo/__init__.py", "hooks/after_install.sh",
            "bingo-host/bingo_host-0.1.0-py3-none-any.whl"} <= set(names)
    assert not any(n.startswith("client/") for n in names)
    assert {(m.uid, m.gid, m.mtime, m.uname, m.gname) for m in members} == {(0, 0, 946684800, "", "")}
    assert all(m.mode == 0o755 for m in members if m.name.startswith("hooks/"))


def test_zip_bundle_is_deterministic_and_carries_unix_modes(tmp_path, fake_wheel):
    a = build_bundle(SAMPLE, tmp_path / "a" / "musicbingo-prod.zip", fake_wheel)
    b = build_bundle(other_copy(tmp_path), tmp_path / "b" / "musicbingo-prod.zip", fake_wheel)
    assert sha256(a) == sha256(b)
    with zipfile.ZipFile(a) as zf:
        infos = zf.infolist()
    names = [zi.filename for zi in infos]
    assert names == sorted(names)
    assert {"appspec.yml", "application.py", "requirements.txt", "build/", "build/index.html",
            "hooks/", "hooks/after_install.sh", "bingo-host/",
            "bingo-host/bingo_host-0.1.0-py3-none-any.whl"} <= set(names)
    assert not any(n.startswith("client/") for n in names)
    assert {zi.date_time for zi in infos} == {ZIP_EPOCH}
    assert {zi.create_system for zi in infos} == {3}
    by_name = {zi.filename: zi for zi in infos}
    assert by_name["hooks/after_install.sh"].external_attr == (stat.S_IFREG | 0o755) << 16
    assert by_name["application.py"].external_attr == (stat.S_IFREG | 0o644) << 16  # 0600 in the copy
    for zi in infos:
        if zi.filename.endswith("/"):
            assert zi.external_attr == (stat.S_IFDIR | 0o755) << 16, zi.filename
        else:
            assert zi.compress_type == zipfile.ZIP_DEFLATED, zi.filename


def test_real_unzip_restores_executable_hooks_and_0644_data(tmp_path, fake_wheel):
    if not shutil.which("unzip"):
        pytest.skip("unzip is not installed (apt-get install unzip)")
    out = build_bundle(SAMPLE, tmp_path / "musicbingo-prod.zip", fake_wheel)
    dst = tmp_path / "deployment-archive"
    # What the agent runs (linux_util.rb extract_zip); a strict umask shows the modes come from
    # the zip, not from unzip's defaults.
    subprocess.run(["unzip", "-qo", str(out), "-d", str(dst)], check=True,
                   preexec_fn=lambda: os.umask(0o077))

    def mode(rel):
        return stat.S_IMODE(os.stat(dst / rel).st_mode)

    hooks = sorted((dst / "hooks").iterdir())
    assert hooks and all(mode(h) == 0o755 for h in hooks)
    for rel in ("application.py", "appspec.yml", "requirements.txt", "build/index.html",
                "musicbingo/__init__.py"):
        assert mode(rel) == 0o644, rel
    for rel in ("hooks", "build", "musicbingo", "bingo-host"):
        assert mode(rel) == 0o755, rel
    appspec.load(dst)  # and the agent's unpacking of it is a valid revision


@pytest.mark.parametrize("name, fmt, magic", [
    ("musicbingo-prod.zip", None, b"PK\x03\x04"),
    ("musicbingo-prod.tar.gz", None, b"\x1f\x8b"),
    ("musicbingo-prod.tgz", None, b"\x1f\x8b"),
    ("musicbingo-prod.bin", None, b"PK\x03\x04"),
    ("musicbingo-prod", None, b"PK\x03\x04"),
    ("musicbingo-prod", "tgz", b"\x1f\x8b"),
    ("musicbingo-prod.TGZ", "tgz", b"\x1f\x8b"),
    ("musicbingo-prod.zip", "zip", b"PK\x03\x04"),
])
def test_format_from_the_out_suffix_or_format(tmp_path, fake_wheel, name, fmt, magic):
    out = build_bundle(SAMPLE, tmp_path / name, fake_wheel, fmt=fmt)
    assert out.read_bytes()[:len(magic)] == magic


@pytest.mark.parametrize("name, fmt", [("x.zip", "tgz"), ("x.tar.gz", "zip"), ("x.tgz", "zip")])
def test_a_format_contradicting_the_out_suffix_is_bad_input(tmp_path, fake_wheel, name, fmt):
    r = CliRunner().invoke(main, ["bundle", "--app", str(SAMPLE), "--out", str(tmp_path / name),
                                  "--format", fmt, "--wheel", str(fake_wheel)])
    assert r.exit_code == 2
    assert f"--format {fmt} contradicts --out" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [fake_wheel.name]  # nothing written


@pytest.mark.parametrize("name", ["1.zip", "1.tar.gz"])
def test_bundle_cli_twice_same_sha256(tmp_path, fake_wheel, name):
    outs = []
    for n in ("a", "b"):
        out = tmp_path / n / name
        out.parent.mkdir()
        subprocess.run([sys.executable, "-m", "bingo_host", "bundle", "--app", str(SAMPLE), "--out", str(out),
                        "--wheel", str(fake_wheel)], check=True, cwd=REPO, capture_output=True)
        outs.append(sha256(out))
    assert outs[0] == outs[1]


def test_bundle_carries_the_production_requirement_files(tmp_path, fake_wheel):
    app = tmp_path / "app"
    shutil.copytree(SAMPLE, app)
    for p in app.glob("*requirements*.txt"):
        p.unlink()
    (app / "requirements.txt").write_text("Flask==3.0.3\n")
    (app / "mysql-requirements.txt").write_text("mysqlclient==2.2.4\n")
    (app / "dev-requirements.txt").write_text("pytest\n")
    out = build_bundle(app, tmp_path / "b.zip", fake_wheel)
    with zipfile.ZipFile(out) as zf:
        reqs = sorted(n for n in zf.namelist() if n.endswith("requirements.txt"))
    assert reqs == ["mysql-requirements.txt", "requirements.txt"]
    assert reqs == sorted(os.path.basename(p) for p in requirement_files(str(app)))


@pytest.mark.parametrize("fmt", ["zip", "tgz"])
def test_the_written_bundle_is_checked_with_deploys_extraction(tmp_path, fake_wheel, monkeypatch, fmt):
    seen = []
    real = archive_mod.extract

    def spy(archive, dest):
        kind = real(archive, dest)
        seen.append(kind)
        return kind

    monkeypatch.setattr(bundle_mod, "extract", spy)
    build_bundle(SAMPLE, tmp_path / "ok.bin", fake_wheel, fmt=fmt)
    assert seen == [fmt]

    # A revision that fails deploy's checks is not written.
    rev = tmp_path / "rev"
    shutil.copytree(REPO / "hooks", rev / "hooks")
    shutil.copy(REPO / "appspec.yml", rev / "appspec.yml")
    hook = rev / "hooks" / "after_install.sh"
    hook.write_bytes(hook.read_bytes().replace(b"\n", b"\r\n"))
    monkeypatch.setattr(bundle_mod, "revision_files_dir", lambda: rev)
    with pytest.raises(BundleError, match="CRLF"):
        build_bundle(SAMPLE, tmp_path / "out" / "bad.bin", fake_wheel, fmt=fmt)
    assert seen == [fmt, fmt]
    assert list((tmp_path / "out").iterdir()) == []


def test_bundle_refuses_an_unbuilt_client(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(SAMPLE, app)
    shutil.rmtree(app / "client")
    with pytest.raises(BundleError, match="client/build/index.html"):
        build_bundle(app, tmp_path / "x.zip", None)


def test_repo_appspec_and_hooks_are_valid():
    spec = appspec.load(REPO)
    assert [m.destination for m in spec.files] == ["/var/www/music-bingo/staging"]
    assert "ApplicationStop" not in spec.hooks  # nothing to stop: the old release serves until the switch
    assert list(spec.hooks) == ["BeforeInstall", "AfterInstall", "ApplicationStart", "ValidateService"]
    for scripts in spec.hooks.values():
        (script,) = scripts
        assert script.timeout < appspec.DEFAULT_TIMEOUT
        text = (REPO / script.location).read_bytes()
        assert text == b'#!/bin/sh\nexec /usr/local/bin/bingo-host hook "$LIFECYCLE_EVENT"\n'


def test_no_installed_distribution_and_no_source_tree_is_bad_input(tmp_path, monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(BundleError, match="pass --wheel or --no-wheel") as info:
        wheel_from_installed(tmp_path)
    assert info.value.exit_code == 2


# -- an installed bingo-host (no source tree) bundles its own wheel: SLOW (~10 s) --

def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _fresh_venv(path: Path, wheel: Path) -> Path:
    """A venv with only `wheel` installed (no deps: this interpreter's are made visible)."""
    venv.create(path, with_pip=False)
    site = Path(subprocess.run([path / "bin/python", "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_test_deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(path / "bin/python"), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, env=_clean_env())
    return path


def _clean_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


@pytest.mark.slow
def test_installed_copy_bundles_its_own_wheel_without_wheel_option(tmp_path, wheel):
    original = wheel  # the session's, built by pip from the tree
    first = _fresh_venv(tmp_path / "first", original)

    work = tmp_path / "work"  # outside the repo
    work.mkdir()
    where = subprocess.run([first / "bin/python", "-c", "import bingo_host; print(bingo_host.__file__)"],
                           cwd=work, env=_clean_env(), capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(first))
    for out in ("X.zip", "Y.zip"):
        r = subprocess.run([first / "bin/bingo-host", "bundle", "--app", str(SAMPLE), "--out", out],
                           cwd=work, env=_clean_env(), capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert sha256(work / "X.zip") == sha256(work / "Y.zip")  # the rebuilt wheel is deterministic too

    name = f"bingo_host-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(work / "X.zip") as zf:
        assert f"bingo-host/{name}" in zf.namelist()
        rebuilt = tmp_path / name
        rebuilt.write_bytes(zf.read(f"bingo-host/{name}"))

    with zipfile.ZipFile(original) as a, zipfile.ZipFile(rebuilt) as b:
        record = f"bingo_host-{__version__}.dist-info/RECORD"
        assert set(b.namelist()) == set(a.namelist())  # no INSTALLER, REQUESTED, .pyc, bin/...
        for n in a.namelist():
            if n != record:
                assert b.read(n) == a.read(n), n
        data = f"bingo_host-{__version__}.data/data/share/bingo-host/"
        hooks = [zi for zi in b.infolist() if zi.filename.startswith(data + "hooks/")]
        assert hooks and all(zi.external_attr >> 16 & 0o111 for zi in hooks)
        rows = list(csv.reader(io.StringIO(b.read(record).decode())))
        assert {r[0] for r in rows} == set(b.namelist())
        for path, digest, size in rows:
            if path == record:
                assert (digest, size) == ("", "")
            else:
                assert (digest, int(size)) == (_record_hash(b.read(path)), len(b.read(path))), path

    second = _fresh_venv(tmp_path / "second", rebuilt)
    r = subprocess.run([second / "bin/bingo-host", "--version"], cwd=work, env=_clean_env(),
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == f"bingo-host, version {__version__}"
    share = second / "share" / "bingo-host"
    assert (share / "appspec.yml").read_bytes() == (REPO / "appspec.yml").read_bytes()
    installed_hooks = sorted(p.name for p in (share / "hooks").iterdir())
    assert installed_hooks == sorted(p.name for p in (REPO / "hooks").iterdir())
    assert all(os.access(share / "hooks" / h, os.X_OK) for h in installed_hooks)
