"""Hostile tar headers (tar_headers.HeaderGuard): refused as the stream passes, before tarfile reads
them, with one line and exit 2 through `bingo-host deploy`, and in bounded memory. Headers are
built byte by byte here (tarfile would not write most of them)."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from bingo_host.cli import main
from bingo_host.deploy import BundleError, agent, tar_headers
from bingo_host.deploy.archive import extract

REPO = Path(__file__).resolve().parent.parent
APPSPEC = b"version: 0.0\nos: linux\n"


def octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def base256(value: int, width: int) -> bytes:
    """GNU tar's binary number: 0x80 (or 0xff when negative) and big-endian two's complement."""
    raw = (value % (256 ** (width - 1))).to_bytes(width - 1, "big")
    return (b"\xff" if value < 0 else b"\x80") + raw


def header(name: bytes = b"f", kind: bytes = b"0", size: int = 0, mode: int = 0o644, mtime: int = 0,
           raw: dict | None = None, checksum: int | None = None) -> bytes:
    """A ustar header; raw {offset: bytes} overrides fields as written."""
    buf = bytearray(512)
    buf[0:len(name)] = name
    buf[100:108] = octal(mode, 8)
    buf[108:116] = octal(0, 8)
    buf[116:124] = octal(0, 8)
    buf[124:136] = octal(size, 12) if size >= 0 else base256(size, 12)
    buf[136:148] = octal(mtime, 12)
    buf[156:157] = kind
    buf[257:265] = b"ustar\x0000"
    for offset, value in (raw or {}).items():
        buf[offset:offset + len(value)] = value
    buf[148:156] = b" " * 8
    total = sum(buf) if checksum is None else checksum
    buf[148:156] = b"%06o\0 " % total
    return bytes(buf)


def member(data: bytes, **kw) -> bytes:
    kw.setdefault("size", len(data))
    return header(**kw) + data + b"\0" * (-len(data) % 512)


def pax(records: dict, kind: bytes = b"x") -> bytes:
    body = b""
    for key, value in records.items():
        line = b" %s=%s\n" % (key.encode(), value.encode())
        n = len(line) + 1
        while len(str(n)) + len(line) != n:
            n = len(str(n)) + len(line)
        body += str(n).encode() + line
    return member(body, name=b"././@PaxHeader", kind=kind)


END = b"\0" * 1024
GOOD = member(APPSPEC, name=b"appspec.yml")


def tgz(path: Path, *parts: bytes) -> Path:
    path.write_bytes(gzip.compress(b"".join(parts), mtime=0))
    return path


def deploy_cli(tmp_path, bundle: Path):
    return CliRunner().invoke(main, ["--config", str(tmp_path / "no-config.yaml"), "deploy", str(bundle),
                                     "--deployment-id", "d-HOSTILE01"])


HOSTILE = [
    ("pax-mtime-1e30", [pax({"mtime": "1e30"}), member(b"x")], "PAX mtime '1e30', not a time"),
    ("pax-mtime-huge", [pax({"mtime": "9" * 19}), member(b"x")], "PAX mtime '9999"),
    ("pax-uid-2**40", [pax({"uid": str(2 ** 40)}), member(b"x")], "PAX uid '1099511627776'"),
    ("pax-gid-text", [pax({"gid": "root"}), member(b"x")], "PAX gid 'root', not a number"),
    ("pax-size-negative", [pax({"size": "-1"}), member(b"x")], "PAX size '-1'"),
    ("pax-size-huge", [pax({"size": str(2 ** 40)}), member(b"x")], "PAX size '1099511627776'"),
    ("pax-global-size", [pax({"size": "1"}, kind=b"g"), member(b"x")],
     "sets a size in a global PAX header"),
    ("pax-sparse", [pax({"GNU.sparse.map": "0,1"}), member(b"x")], "GNU.sparse.map: GNU sparse"),
    ("pax-garbage", [member(b"12 mtime=1\nnot a record\n", name=b"p", kind=b"x"), member(b"x")],
     "PAX record that does not parse"),
    ("pax-short-length", [member(b"5 mtime=1\n", name=b"p", kind=b"x"), member(b"x")],
     "PAX record that does not parse"),
    ("two-pax-headers", [pax({"mtime": "1"}), pax({"mtime": "2"}), member(b"x")],
     "second 'x' metadata header"),
    ("two-long-names", [member(b"a\0", name=b"././@LongLink", kind=b"L"),
                        member(b"b\0", name=b"././@LongLink", kind=b"L"), member(b"x")],
     "second 'L' metadata header"),
    ("negative-size", [header(name=b"neg", size=-512)], "has size -512, outside"),
    ("uid-2**40", [header(name=b"u", raw={108: base256(2 ** 40, 8)})], "has uid 1099511627776"),
    ("mtime-2**80", [header(name=b"t", raw={136: base256(2 ** 80, 12)})], "has mtime 1208925819"),
    ("mtime-negative", [header(name=b"t", raw={136: base256(-5, 12)})], "has mtime -5"),
    ("mode-junk", [header(name=b"m", raw={100: b"rwxr-x\0\0"})], "unreadable mode field"),
    ("devmajor-junk", [header(name=b"d", raw={329: b"zz\0"})], "unreadable devmajor field"),
    ("bad-checksum", [member(b"x", name=b"later", checksum=1)], "bad checksum"),
    ("sparse", [header(name=b"s", kind=b"S")], "has type b'S'"),
    ("volume-label", [header(name=b"v", kind=b"V")], "has type b'V'"),
    ("dir-with-data", [member(b"x" * 600, name=b"d/", kind=b"5")], "type '5'\\) with 600 bytes"),
    ("v7-dir-with-data", [member(b"x" * 10, name=b"d/", kind=b"\0")], "type '5'\\) with 10 bytes"),
    ("meta-then-end", [member(b"a\0", name=b"././@LongLink", kind=b"L")],
     "ends the archive right after a metadata header"),
]


@pytest.mark.parametrize("parts, message", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_metadata_is_one_line_and_exit_2(tmp_path, agent_root, parts, message):
    bundle = tgz(tmp_path / "hostile.tgz", GOOD, *parts, END)
    r = deploy_cli(tmp_path, bundle)
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit)  # a BingoHostError, not an escaped exception
    lines = r.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bingo-host: error: {bundle}: tar header at byte ")
    assert re.search(message, lines[0]), lines[0]
    assert not agent_root.exists() or not any(agent_root.rglob("*"))  # nothing left behind


@pytest.mark.parametrize("cut, message", [
    (600, "byte 1024 is missing: the archive ends inside a member"),
    (1024 + 300, "byte 1024 is missing: the archive ends inside a member"),  # inside a header
    (1024 + 512 + 300, "byte 2560 is missing: the archive ends inside a member"),
    (1024 + 1536, "byte 2560 is missing: the archive ends inside a member or without its "
                  "end-of-archive block"),
])
def test_a_truncated_tar_is_refused_not_taken_as_shorter(tmp_path, cut, message):
    """tarfile takes an unreadable header after the first as the end: a cut archive would unpack
    short without a word."""
    data = (GOOD + member(b"y" * 600, name=b"second") + END)[:cut]
    plain = tmp_path / "cut.tar"
    plain.write_bytes(data)
    with pytest.raises(BundleError, match=message):
        extract(str(plain), str(tmp_path / "out"))


@pytest.mark.parametrize("kind", [b"L", b"K", b"x", b"X", b"g"])
def test_an_oversized_metadata_header_is_refused_before_it_is_read(tmp_path, kind):
    """Only the header is there: the 1 GiB it announces is never asked for."""
    announced = header(name=b"././@LongLink", kind=kind, size=1 << 30)
    bundle = tgz(tmp_path / "big.tgz", GOOD, announced, b"a" * 4096)
    shown = "x" if kind == b"X" else kind.decode()
    with pytest.raises(BundleError, match=f"byte 1024 is a '{shown}' metadata header of "
                                          "1073741824 bytes, more than 65536"):
        extract(str(bundle), str(tmp_path / "out"))


def test_metadata_headers_are_capped_in_all(tmp_path, monkeypatch):
    monkeypatch.setattr(tar_headers, "MAX_META_TOTAL", 3000)
    names = [member(b"n" * 1000 + b"\0", name=b"././@LongLink", kind=b"L") + member(b"x", name=b"s")
             for _ in range(3)]
    with pytest.raises(BundleError, match="takes the metadata headers past 3000 bytes in all"):
        extract(str(tgz(tmp_path / "many.tgz", GOOD, *names, END)), str(tmp_path / "out"))


def test_long_names_and_pax_headers_of_real_tools_unpack(tmp_path):
    """GNU and PAX long names, a zero-length metadata header, PAX times and ids in range,
    a V7 directory, a global header: what tar and tarfile write passes."""
    deep = "d" * 120 + "/" + "f" * 130
    tree = tmp_path / "tree"
    (tree / ("d" * 120)).mkdir(parents=True)
    (tree / deep).write_text("long\n")
    (tree / "appspec.yml").write_bytes(APPSPEC)
    for fmt in ("gnu", "pax"):
        out = tmp_path / f"{fmt}.tar.gz"
        subprocess.run(["tar", f"--format={fmt}", "-czf", str(out), "-C", str(tree), "."], check=True)
        extract(str(out), str(tmp_path / f"out-{fmt}"))
        assert (tmp_path / f"out-{fmt}" / deep).read_text() == "long\n"
    parts = [pax({"comment": "hello"}, kind=b"g"), GOOD, member(b"", name=b"z", kind=b"x"),
             member(b"e", name=b"empty-pax"), pax({"mtime": "1700000000.5", "uid": "4294967295", "path": "p" * 200}),
             member(b"pax\n", name=b"short"), header(name=b"v7dir/", kind=b"\0"),
             member(b"in v7dir\n", name=b"v7dir/f")]
    extract(str(tgz(tmp_path / "made.tgz", *parts, END)), str(tmp_path / "made"))
    assert (tmp_path / "made" / ("p" * 200)).read_text() == "pax\n"
    assert os.stat(tmp_path / "made" / ("p" * 200)).st_mtime == 1700000000.5
    assert (tmp_path / "made" / "v7dir" / "f").read_text() == "in v7dir\n"


def _gigabyte_long_name(path: Path) -> Path:
    """A tar.gz of about 1 MiB: a GNU long-name header announcing 1 GiB, and the 1 GiB."""
    size = 1 << 30
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
    with open(path, "wb") as f:
        f.write(comp.compress(GOOD + header(name=b"././@LongLink", kind=b"L", size=size)))
        chunk = b"a" * (1 << 20)
        for _ in range(size // len(chunk)):
            f.write(comp.compress(chunk))
        f.write(comp.compress(b"\0" + header(name=b"x") + END))
        f.write(comp.flush())
    return path


RSS_PROBE = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)
print(r.stderr, end="")
"""
RUN_CLI = """
import sys
from bingo_host.deploy import agent
agent.CONFIG = sys.argv[1]
from bingo_host.cli import main
sys.argv = ["bingo-host", "--config", sys.argv[2], "deploy", sys.argv[3], "--deployment-id", "d-BIGNAME01"]
main()
"""


def test_a_1_gib_long_name_is_refused_in_bounded_memory(tmp_path, agent_root):
    """The reported archive through `bingo-host deploy` in a child process: refused, one line,
    exit 2, and the child's peak RSS stays under 100 MiB (tarfile alone passed 2 GiB)."""
    bundle = _gigabyte_long_name(tmp_path / "longname.tgz")
    assert bundle.stat().st_size < 2 << 20
    probe = subprocess.run([sys.executable, "-c", RSS_PROBE, sys.executable, "-c", RUN_CLI, agent.CONFIG,
                            str(tmp_path / "no-config.yaml"), str(bundle)],
                           cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    first, *stderr = probe.stdout.splitlines()
    peak_kib, returncode = map(int, first.split())
    assert returncode == 2 and len(stderr) == 1, probe.stdout
    assert "tar header at byte 1024 is a 'L' metadata header of 1073741824 bytes" in stderr[0]
    assert peak_kib < 100 * 1024, f"peak RSS {peak_kib} KiB"


def test_the_limits_are_the_documented_ones():
    assert (tar_headers.MAX_META_BYTES, tar_headers.MAX_META_TOTAL, tar_headers.MAX_MTIME,
            tar_headers.MAX_ID, tar_headers.MAX_MODE) == (64 << 10, 8 << 20, 2 ** 33, 2 ** 32, 0o10000000)


@pytest.mark.parametrize("parts, ok", [
    ([header(name=b"t", raw={136: base256(2 ** 33 - 1, 12)})], True),
    ([header(name=b"t", raw={136: base256(2 ** 33, 12)})], False),
    ([header(name=b"t", mtime=0)], True),
    ([header(name=b"u", raw={108: base256(2 ** 32 - 1, 8)})], True),
    ([header(name=b"u", raw={108: base256(2 ** 32, 8)})], False),
    ([header(name=b"g", raw={116: base256(2 ** 32, 8)})], False),
    ([header(name=b"d", raw={329: base256(2 ** 32, 8)})], False),
    ([header(name=b"d", raw={337: base256(-1, 8)})], False),
    ([header(name=b"m", mode=0o7777777 & ~0o7000)], True),
    ([header(name=b"m", raw={100: base256(0o10000000, 8)})], False),
    ([pax({"comment": "c" * 65521}), header(name=b"p")], True),  # a 65536-byte PAX header
    ([pax({"comment": "c" * 65522}), header(name=b"p")], False),
    ([pax({"mtime": str(2 ** 33 - 1)}), header(name=b"p")], True),
    ([pax({"mtime": str(2 ** 33)}), header(name=b"p")], False),
    ([pax({"mtime": "1.5"}), header(name=b"p")], True),
    ([pax({"uid": str(2 ** 32 - 1), "gid": "0"}), header(name=b"p")], True),
    ([pax({"gid": str(2 ** 32)}), header(name=b"p")], False),
    ([pax({"size": "5"}), member(b"hello", name=b"p", size=0)], True),
    ([pax({"size": "0"}), header(name=b"p", size=7), b"\0" * 512], True),
    ([member(b"old regular file\n" * 40, name=b"v7", kind=b"\0")], True),  # data past one block
    ([member(b"contiguous file\n" * 40, name=b"c7", kind=b"7")], True),  # the header's 7 ignored
])
def test_bounds_are_exact(tmp_path, parts, ok):
    """Each limit: its last allowed value passes, the next one is refused."""
    bundle = tgz(tmp_path / "edge.tgz", GOOD, *parts, END)
    if ok:
        extract(str(bundle), str(tmp_path / "out"))
    else:
        with pytest.raises(BundleError, match="tar header at byte"):
            extract(str(bundle), str(tmp_path / "out"))


def test_metadata_headers_are_capped_in_all_exactly(tmp_path, monkeypatch):
    comment = pax({"comment": "c" * 987})
    assert int(comment[124:135], 8) == 1001
    names = [comment + member(b"x", name=b"s%d" % i) for i in range(3)]
    monkeypatch.setattr(tar_headers, "MAX_META_TOTAL", 3003)  # 3 PAX headers of 1001 bytes
    extract(str(tgz(tmp_path / "many.tgz", GOOD, *names, END)), str(tmp_path / "out"))


def test_the_members_data_is_capped_exactly(tmp_path, monkeypatch):
    from bingo_host.deploy import archive

    bundle = tgz(tmp_path / "sized.tgz", GOOD, member(b"x" * 1000, name=b"data"), END)
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", len(APPSPEC) + 1000)
    extract(str(bundle), str(tmp_path / "out"))
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", len(APPSPEC) + 999)
    with pytest.raises(BundleError, match="byte 1024 takes the revision past"):
        extract(str(bundle), str(tmp_path / "out2"))


@pytest.mark.parametrize("raw, is_tar", [
    ({0: b"\xff" * 100, 157: b"\xff" * 100, 265: b"\xff" * 64}, True),  # checksum over 0o100000
    ({}, True),
    (None, False),  # the checksum field itself unreadable
])
def test_a_tar_is_recognised_by_its_first_header(tmp_path, raw, is_tar):
    from bingo_host.deploy import archive

    block = header(name=b"a", raw=raw)
    if raw is None:
        block = block[:148] + b"x" * 8 + block[156:]
        raw = {}
    assert tar_headers.is_header(block) is is_tar
    if raw.get(0):
        assert int(block[148:154], 8) >= 0o100000
    path = tmp_path / "t.tar"
    path.write_bytes(block + END)
    if is_tar:
        assert archive.bundle_type(str(path)) == "tar"
    else:
        with pytest.raises(BundleError, match="not a zip, tar.gz or tar archive"):
            archive.bundle_type(str(path))


def test_a_checksum_field_ending_in_a_space_is_read_as_tar_reads_it(tmp_path):
    """Old tars end the field with a space instead of NUL: the field is 8 bytes, no more."""
    block = bytearray(header(name=b"a"))
    total = int(block[148:154], 8)
    block[148:156] = b"%07o " % total
    assert tar_headers.is_header(bytes(block))
    assert not tar_headers.is_header(bytes(block[:511]))
