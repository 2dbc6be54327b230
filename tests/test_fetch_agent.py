"""scripts/fetch-codedeploy-agent (what scripts/install-test-deps runs when neither
$BINGO_CODEDEPLOY_SHARED nor ../shared holds the agent): archives fetched from
$BINGO_CODEDEPLOY_MIRROR, here a local http.server serving tarballs built from the agent's source
as GitHub lays them out; a matching sum installs the vendor/ tests/codedeploy_agent.py reads, a
wrong one installs nothing and says so in one line."""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import codedeploy_agent

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "fetch-codedeploy-agent"
PINS = REPO / "scripts" / "codedeploy-agent.pins"


def pinned() -> list[list[str]]:
    return [line.split() for line in PINS.read_text().splitlines() if line.strip() and not line.startswith("#")]


def source_vendor(tmp_path: Path) -> Path:
    """The agent's source as the tests use it, or a small stand-in with its layout."""
    try:
        return codedeploy_agent.shared_dir() / "vendor"
    except FileNotFoundError:
        vendor = tmp_path / "source"
        for url, _, top, folder, *keep in pinned():
            for entry in keep:
                path = vendor / folder / entry
                if "." in entry or entry.isupper():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(f"{folder} {entry}\n")
                else:
                    (path / "sub").mkdir(parents=True)
                    (path / "sub" / "file.rb").write_text(f"# {folder}\n")
        (vendor / "aws-codedeploy-agent" / "bin" / "codedeploy-local").write_text("#!/usr/bin/ruby\n")
        return vendor


def tar_of(folder: Path, top: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(folder, arcname=top)
    return out.getvalue()


@pytest.fixture
def mirror(tmp_path):
    """(base URL, the pins of what it serves): one archive per pinned line, by its file name."""
    served = tmp_path / "served"
    served.mkdir()
    vendor = source_vendor(tmp_path)
    lines = []
    for url, _, top, folder, *keep in pinned():
        tar = tar_of(vendor / folder, top)
        (served / url.rsplit("/", 1)[1]).write_bytes(gzip.compress(tar))
        lines.append(" ".join([url, hashlib.sha256(tar).hexdigest(), top, folder, *keep]))
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(SimpleHTTPRequestHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", lines, vendor
    finally:
        server.shutdown()
        server.server_close()


def fetch(tmp_path, base: str, lines: list[str], dest: Path):
    pins = tmp_path / "pins"
    pins.write_text("\n".join(lines) + "\n")
    return subprocess.run([sys.executable, SCRIPT, dest, "--pins", pins], capture_output=True, text=True,
                          env={"BINGO_CODEDEPLOY_MIRROR": base, "PATH": "/usr/bin:/bin"}, timeout=60)


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_matching_sum_installs_what_the_tests_read(tmp_path, mirror):
    base, lines, vendor = mirror
    dest = tmp_path / "dest"
    result = fetch(tmp_path, base, lines, dest)
    assert result.returncode == 0, result.stderr
    assert codedeploy_agent.has_agent(dest)
    for _, _, _, folder, *keep in (line.split() for line in lines):
        kept = {k: v for k, v in files(vendor / folder).items() if k.split("/")[0] in keep}
        assert files(dest / "vendor" / folder) == kept
    assert sorted(p.name for p in dest.iterdir()) == ["vendor"]  # no staging left


def test_a_wrong_sum_installs_nothing_and_says_so_in_one_line(tmp_path, mirror):
    base, lines, _ = mirror
    url, good, *rest = lines[1].split()
    lines[1] = " ".join([url, "0" * 64, *rest])
    dest = tmp_path / "dest"
    result = fetch(tmp_path, base, lines, dest)
    assert result.returncode == 1
    served = base + url.rsplit("/", 1)[1]
    assert result.stderr.splitlines() == [f"fetch-codedeploy-agent: {served}: sha256 {good}, pinned {'0' * 64}: "
                                          "not installed"]
    assert not codedeploy_agent.has_agent(dest) and sorted(dest.iterdir()) == []


def test_the_pins_name_the_agent_and_its_two_gems_at_fixed_releases():
    rows = pinned()
    assert [r[3] for r in rows] == ["aws-codedeploy-agent", "docopt-0.5.0", "gli-2.21.5"]
    for url, sha256, *_ in rows:
        assert url.startswith("https://github.com/") and "/archive/refs/tags/v" in url
        assert len(sha256) == 64 and int(sha256, 16) >= 0
