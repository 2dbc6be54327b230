"""archive.extract against hostile revisions: every entry is created in order and checked against
what is already on disk, so no chain of links, no link to a directory, no device, no setuid bit,
no link out of the tree and no bomb gets past it. Each case is a real zip or tar.gz."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from bingo_host.deploy import BundleError
from bingo_host.deploy import archive
from bingo_host.deploy.archive import extract

APPSPEC = b"version: 0.0\nos: linux\n"


def tar_entry(name, kind=tarfile.REGTYPE, data=b"", linkname="", mode=0o644):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    if kind == tarfile.DIRTYPE:
        info.mode = mode if mode != 0o644 else 0o755
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def make_tgz(path: Path, entries) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info, data in [tar_entry("appspec.yml", data=APPSPEC), *entries]:
            tf.addfile(info, io.BytesIO(data) if info.size else None)
    return path


def make_zip(path: Path, entries) -> Path:
    """entries: (name, st_mode, data)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("appspec.yml", APPSPEC)
        for name, mode, data in entries:
            zi = zipfile.ZipInfo(name)
            zi.create_system = 3
            zi.external_attr = mode << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    return path


@pytest.fixture
def where(tmp_path):
    """dest two levels below tmp_path: an escape 'two levels up' lands in tmp_path itself."""
    dest = tmp_path / "a" / "b" / "dest"
    dest.parent.mkdir(parents=True)
    return tmp_path, dest


LINK_CHAIN = [("sub", tarfile.DIRTYPE, b"", ""),
              ("sub/l1", tarfile.SYMTYPE, b"", ".."),
              ("sub/l1/l2", tarfile.SYMTYPE, b"", ".."),
              ("l2/l3", tarfile.SYMTYPE, b"", ".."),
              ("l2/l3/ESCAPED", tarfile.REGTYPE, b"pwned\n", "")]


def test_a_chain_of_symlinks_does_not_escape_a_tgz(where):
    top, dest = where
    bundle = make_tgz(top / "chain.tgz", [tar_entry(n, k, d, ln) for n, k, d, ln in LINK_CHAIN])
    with pytest.raises(BundleError, match=r"'sub/l1'.*directory|'sub/l1/l2'.*outside") as info:
        extract(str(bundle), str(dest))
    assert info.value.exit_code == 2
    escaped = [p for p in top.rglob("ESCAPED")]
    assert escaped == [] and not (top / "a" / "l3").exists()


def test_a_chain_of_symlinks_does_not_escape_a_zip(where):
    """The same chain as zip entries with S_IFLNK modes (what `zip -y` writes)."""
    top, dest = where
    entries = [("sub/", stat.S_IFDIR | 0o755, b""), ("sub/l1", stat.S_IFLNK | 0o777, b".."),
               ("sub/l1/l2", stat.S_IFLNK | 0o777, b".."), ("l2/l3", stat.S_IFLNK | 0o777, b".."),
               ("l2/l3/ESCAPED", stat.S_IFREG | 0o644, b"pwned\n")]
    bundle = make_zip(top / "chain.zip", entries)
    with pytest.raises(BundleError, match="'sub/l1'.*symbolic link"):
        extract(str(bundle), str(dest))
    assert list(top.rglob("ESCAPED")) == []


def test_a_link_made_to_point_elsewhere_by_later_entries_is_refused(where):
    """Each link is inside when created, but a later link and directory turn `d1/d2/a` into a path
    to a file outside the tree: the final pass finds it."""
    top, dest = where
    (top / "a" / "b" / "f").write_text("outside\n")  # what d1/d2/a would reach
    entries = [tar_entry("f", data=b"inside\n"), tar_entry("d1", tarfile.DIRTYPE),
               tar_entry("d1/d2", tarfile.DIRTYPE),
               tar_entry("d1/d2/a", tarfile.SYMTYPE, linkname="../b/../../f"),
               tar_entry("d1/b", tarfile.SYMTYPE, linkname="../q"),
               tar_entry("q", tarfile.DIRTYPE)]
    bundle = make_tgz(top / "later.tgz", entries)
    with pytest.raises(BundleError, match="'d1/d2/a' is a symbolic link that now resolves to .*/a/b/f"):
        extract(str(bundle), str(dest))


def test_writing_through_a_link_chain_is_refused_at_the_entry(where):
    """A link to an in-tree file cannot become a directory to write through."""
    top, dest = where
    entries = [tar_entry("x", tarfile.SYMTYPE, linkname="y"),  # dangling: allowed
               tar_entry("y", tarfile.SYMTYPE, linkname="../../..")]
    bundle = make_tgz(top / "through.tgz", entries)
    with pytest.raises(BundleError, match="'y' is a symbolic link that points outside the bundle"):
        extract(str(bundle), str(dest))


@pytest.mark.parametrize("entries, message", [
    ([tar_entry("/etc/evil")], "'/etc/evil' points outside the bundle"),
    ([tar_entry("a/../../evil")], "points outside the bundle"),
    ([tar_entry("etc", tarfile.SYMTYPE, linkname="/etc")], "'etc' is a symbolic link that points outside"),
    ([tar_entry("d", tarfile.DIRTYPE), tar_entry("l", tarfile.SYMTYPE, linkname="d")],
     "'l' is a symbolic link to a directory"),
    ([tar_entry("l", tarfile.SYMTYPE, linkname=".")], "'l' is a symbolic link to a directory"),
    ([tar_entry("null", tarfile.CHRTYPE)], "'null' is not a file, directory or link"),
    ([tar_entry("disk", tarfile.BLKTYPE)], "'disk' is not a file, directory or link"),
    ([tar_entry("fifo", tarfile.FIFOTYPE)], "'fifo' is not a file, directory or link"),
    ([tar_entry("su", data=b"x", mode=0o4755)], "'su' has the setuid, setgid or sticky bit .*4755"),
    ([tar_entry("sg", data=b"x", mode=0o2755)], "'sg' has the setuid"),
    ([tar_entry("tmp", tarfile.DIRTYPE, mode=0o1777)], "'tmp' has the setuid, setgid or sticky bit"),
    ([tar_entry("h", tarfile.LNKTYPE, linkname="/etc/passwd")], "'h' points outside the bundle"),
    ([tar_entry("h", tarfile.LNKTYPE, linkname="../../f")], "'h' points outside the bundle"),
    ([tar_entry("h", tarfile.LNKTYPE, linkname="nothing")], "'h' is a hard link to 'nothing', which is not"),
    ([tar_entry("f", data=b"x"), tar_entry("s", tarfile.SYMTYPE, linkname="f"),
      tar_entry("h", tarfile.LNKTYPE, linkname="s")], "'h' is a hard link to 's', which is not"),
    ([tar_entry("f", data=b"x"), tar_entry("f/x")], "'f/x' cannot be created"),
    ([tar_entry("d", tarfile.DIRTYPE), tar_entry("d/x", data=b"x"), tar_entry("d", data=b"y")],
     "'d' is not a directory, but an earlier entry made it one"),
])
def test_hostile_tar_entries_are_refused_naming_the_entry(where, entries, message):
    top, dest = where
    bundle = make_tgz(top / "bad.tgz", entries)
    with pytest.raises(BundleError, match=message) as info:
        extract(str(bundle), str(dest))
    assert info.value.exit_code == 2
    assert str(bundle) in str(info.value)
    assert sorted(p.name for p in top.iterdir()) == ["a", "bad.tgz"]  # nothing beside dest


@pytest.mark.parametrize("entries, message", [
    ([("link", stat.S_IFLNK | 0o777, b"target")], "'link' is a symbolic link"),
    ([("../evil", stat.S_IFREG | 0o644, b"x")], "'../evil' points outside the bundle"),
    ([("/tmp/evil-abs", stat.S_IFREG | 0o644, b"x")], "points outside the bundle"),
    ([("fifo", stat.S_IFIFO | 0o644, b"")], "'fifo' is not a file or directory"),
    ([("dev", stat.S_IFCHR | 0o644, b"")], "'dev' is not a file or directory"),
    ([("x.sh", stat.S_IFREG | 0o4755, b"#!/bin/sh\n")], "'x.sh' has the setuid"),
    ([("d/", stat.S_IFDIR | 0o2755, b"")], "'d/' has the setuid"),
])
def test_hostile_zip_entries_are_refused_naming_the_entry(where, entries, message):
    top, dest = where
    bundle = make_zip(top / "bad.zip", entries)
    with pytest.raises(BundleError, match=message):
        extract(str(bundle), str(dest))
    assert not os.path.exists("/tmp/evil-abs")


def test_links_inside_the_tree_to_files_are_unpacked_like_tar(where):
    top, dest = where
    entries = [tar_entry("hooks", tarfile.DIRTYPE), tar_entry("hooks/a.sh", data=b"#!/bin/sh\n", mode=0o755),
               tar_entry("hooks/b.sh", tarfile.SYMTYPE, linkname="a.sh"),
               tar_entry("c.sh", tarfile.LNKTYPE, linkname="hooks/a.sh"),
               tar_entry("./d/e.txt", data=b"e")]
    assert extract(str(make_tgz(top / "ok.tgz", entries)), str(dest)) == "tgz"
    assert os.readlink(dest / "hooks/b.sh") == "a.sh"
    assert os.stat(dest / "c.sh").st_ino == os.stat(dest / "hooks/a.sh").st_ino
    assert stat.S_IMODE(os.stat(dest / "hooks/a.sh").st_mode) == 0o755
    assert (dest / "d/e.txt").read_bytes() == b"e"


def test_entry_count_is_capped(where, monkeypatch):
    top, dest = where
    monkeypatch.setattr(archive, "MAX_ENTRIES", 5)
    tgz = make_tgz(top / "many.tgz", [tar_entry(f"f{i}", data=b"x") for i in range(5)])
    with pytest.raises(BundleError, match="'f4' is one too many: a revision may hold at most 5"):
        extract(str(tgz), str(dest))
    zipped = make_zip(top / "many.zip", [(f"f{i}", stat.S_IFREG | 0o644, b"x") for i in range(5)])
    with pytest.raises(BundleError, match="'f4' is one too many"):
        extract(str(zipped), str(dest.parent / "z"))


def test_unpacked_size_is_capped_as_bytes_are_written(where, monkeypatch):
    """A tar.gz of zeros: a few KiB that would unpack to 8 MiB; refused at the cap (1 MiB here)."""
    top, dest = where
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 1 << 20)
    zeros = b"\0" * (8 << 20)
    bomb = make_tgz(top / "bomb.tgz", [tar_entry("zeros", data=zeros)])
    assert bomb.stat().st_size < 64 << 10
    with pytest.raises(BundleError, match="header at byte 1024 takes the revision past 1 MiB unpacked"):
        extract(str(bomb), str(dest))
    assert not (dest / "zeros").exists()  # refused at its header, before a byte was written
    revision = top / "grows"  # a directory's files are counted as they are copied
    revision.mkdir()
    with open(revision / "zeros", "wb") as f:
        f.truncate(8 << 20)
    with pytest.raises(BundleError, match="'zeros' takes the revision past 1 MiB unpacked"):
        extract(str(revision), str(dest.parent / "d"))
    assert (dest.parent / "d" / "zeros").stat().st_size <= 1 << 20
    zipped = make_zip(top / "bomb.zip", [("zeros", stat.S_IFREG | 0o644, zeros)])
    with pytest.raises(BundleError, match="unpacks to 8388631 bytes, more than a revision may"):
        extract(str(zipped), str(dest.parent / "z"))



def test_an_archives_owners_are_never_applied(where):
    """tar -xp as root would make these the app user's (uid 1234 here): every entry is root's."""
    top, dest = where
    entries = []
    for info, data in [tar_entry("hooks", tarfile.DIRTYPE), tar_entry("hooks/a.sh", data=b"#!/bin/sh\n"),
                       tar_entry("hooks/b.sh", tarfile.SYMTYPE, linkname="a.sh"),
                       tar_entry("c.sh", tarfile.LNKTYPE, linkname="hooks/a.sh")]:
        info.uid = info.gid = 1234
        info.uname = info.gname = "app"
        entries.append((info, data))
    extract(str(make_tgz(top / "owned.tgz", entries)), str(dest))
    owners = {(os.lstat(p).st_uid, os.lstat(p).st_gid) for p in [dest, *dest.rglob("*")]}
    assert owners == {(0, 0)}


def test_a_plain_tar_is_recognised_by_its_header_not_by_reading_it(where):
    top, dest = where
    plain = top / "plain.tar"
    with tarfile.open(plain, "w") as tf:
        info, data = tar_entry("appspec.yml", data=APPSPEC)
        tf.addfile(info, io.BytesIO(data))
    assert archive.bundle_type(str(plain)) == "tar"
    broken = top / "broken.tar"
    broken.write_bytes(plain.read_bytes()[:148] + b"0000000\0" + plain.read_bytes()[156:])
    bz2 = top / "x.tar.bz2"
    with tarfile.open(bz2, "w:bz2") as tf:
        tf.addfile(*tar_entry("appspec.yml", data=APPSPEC)[:1], io.BytesIO(APPSPEC))
    for path in (broken, bz2, top / "short"):
        path.write_bytes(path.read_bytes()) if path.exists() else path.write_bytes(b"x" * 100)
        with pytest.raises(BundleError, match="not a zip, tar.gz or tar archive"):
            archive.bundle_type(str(path))


def test_an_archive_file_over_the_limit_is_refused_unread(where, monkeypatch):
    top, dest = where
    monkeypatch.setattr(archive, "MAX_ARCHIVE_BYTES", 1000)
    bundle = make_tgz(top / "big.tgz", [tar_entry("r", data=os.urandom(2000))])
    with pytest.raises(BundleError, match=r"big.tgz: \d+ bytes, more than a revision may be"):
        extract(str(bundle), str(dest))
    assert not dest.exists()


def test_a_directory_revision_cannot_be_copied_into_itself(where):
    top, dest = where
    with pytest.raises(BundleError, match=f"^{top}: holds the directory it would be copied to \\({dest}\\)$"):
        extract(str(top), str(dest))
    with pytest.raises(BundleError, match="holds the directory it would be copied to"):
        extract(str(dest.parent), str(dest.parent))


def test_a_sibling_sharing_the_destinations_name_is_outside(where):
    """`dest-evil` starts with `dest`: only `dest/...` is inside (the '/' matters)."""
    top, dest = where
    sibling = dest.parent / (dest.name + "-evil")
    sibling.mkdir()
    (sibling / "f").write_text("outside\n")
    for entries, message in (
            ([tar_entry("s", tarfile.SYMTYPE, linkname=f"../{sibling.name}/f")],
             "'s' is a symbolic link that points outside the bundle"),
            ([tar_entry("h", tarfile.LNKTYPE, linkname=f"../{sibling.name}/f")], "'h' points outside")):
        with pytest.raises(BundleError, match=message):
            extract(str(make_tgz(top / "sib.tgz", entries)), str(dest))
    assert (sibling / "f").read_text() == "outside\n" and list(sibling.iterdir()) == [sibling / "f"]


def _dir_revision(top: Path) -> Path:
    rev = top / "rev"
    (rev / "build" / "static").mkdir(parents=True)
    (rev / "appspec.yml").write_bytes(APPSPEC)
    (rev / "build" / "index.html").write_text("<html>\n")
    return rev


@pytest.mark.parametrize("make, message", [
    (lambda rev, top: os.symlink(top / "secret", rev / "build" / "conf"),
     "'build/conf' is a symbolic link that points outside the bundle \\(to the absolute path"),
    (lambda rev, top: os.symlink("../../secret", rev / "build" / "conf"),
     "'build/conf' is a symbolic link that points outside the bundle \\('../../secret' resolves"),
    (lambda rev, top: os.symlink(".", rev / "build" / "here"), "'build/here' is a symbolic link to a directory"),
    (lambda rev, top: os.mkfifo(rev / "build" / "pipe"),
     "'build/pipe' is not a file, directory or link \\(devices, FIFOs and sockets are not allowed\\)$"),
    (lambda rev, top: (rev / "build" / "index.html").chmod(0o4755), "'build/index.html' has the setuid"),
    (lambda rev, top: (rev / "build").chmod(0o1777), "'build' has the setuid, setgid or sticky bit"),
])
def test_a_directory_revision_is_copied_through_the_same_checks(where, make, message):
    top, dest = where
    (top / "secret").write_text("s3cret\n")
    rev = _dir_revision(top)
    make(rev, top)
    with pytest.raises(BundleError, match=message) as info:
        extract(str(rev), str(dest))
    assert info.value.exit_code == 2 and str(rev) in str(info.value)


def test_a_directory_revision_keeps_modes_times_and_inner_links_but_not_owners(where):
    top, dest = where
    rev = _dir_revision(top)
    (rev / "build" / "index.html").chmod(0o640)
    (rev / "build" / "static").chmod(0o750)
    os.utime(rev / "build" / "index.html", (1e9, 1e9))
    os.symlink("index.html", rev / "build" / "home.html")
    for path in [rev, *rev.rglob("*")]:
        os.lchown(path, 1234, 1234)
    assert extract(str(rev), str(dest.parent / "rev-copy")) == "directory"  # a name rev's starts
    copy = dest.parent / "rev-copy"
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in [copy, *copy.rglob("*")]} == {(0, 0)}
    assert stat.S_IMODE((copy / "build" / "index.html").stat().st_mode) == 0o640
    assert stat.S_IMODE((copy / "build" / "static").stat().st_mode) == 0o750
    assert (copy / "build" / "index.html").stat().st_mtime == 1e9
    assert os.readlink(copy / "build" / "home.html") == "index.html"
    assert (copy / "build" / "index.html").read_text() == "<html>\n"
    single = top / "single"  # the agent's top-directory rule is for archives only
    (single / "app").mkdir(parents=True)
    (single / "app" / "appspec.yml").write_bytes(APPSPEC)
    extract(str(single), str(dest.parent / "single-copy"))
    assert (dest.parent / "single-copy" / "app" / "appspec.yml").exists()


def test_the_limits_are_the_documented_ones():
    """README: 20000 entries, 512 MiB unpacked, 576 MiB of archive file."""
    assert (archive.MAX_ENTRIES, archive.MAX_TOTAL_BYTES, archive.MAX_ARCHIVE_BYTES, archive.CHUNK) == \
        (20000, 512 << 20, 576 << 20, 1 << 20)


@pytest.mark.parametrize("name, message", [
    ("", "'' points outside the bundle \\('': an absolute name or '..'\\)$"),
    ("a\0b", "'a\\\\x00b' points outside the bundle"),
    ("/etc/x", "'/etc/x' points outside the bundle \\('/etc/x': an absolute name or '..'\\)$"),
    ("sub/../x", "'sub/../x' points outside the bundle \\('sub/../x': an absolute name or '..'\\)$"),
    ("..\\evil", ".* points outside the bundle \\('..\\\\\\\\evil': an absolute name or '..'\\)$"),
    ("a\\..\\b", ".* an absolute name or '..'"),
])
def test_a_name_is_refused_before_it_is_resolved(where, name, message):
    """The name's own check, not the resolved path's: `sub/../x` would resolve inside."""
    top, dest = where
    dest.mkdir()
    out = archive._Unpacker("rev.tgz", str(dest))
    with pytest.raises(BundleError, match=f"^rev.tgz: member {message}"):
        out.path(name)


def test_names_are_joined_without_empty_or_dot_parts(where):
    top, dest = where
    dest.mkdir()
    out = archive._Unpacker("rev.tgz", str(dest))
    assert out.path(".") == out.path("./") == str(dest)
    assert out.path("./a//b/./c") == str(dest / "a" / "b" / "c")
    assert out.path("d/") == str(dest / "d")


def test_messages_are_exactly_these(where):
    top, dest = where
    missing = top / "missing.zip"
    with pytest.raises(BundleError) as info:
        archive.bundle_type(str(missing))
    assert str(info.value) == f"{missing}: cannot read it: [Errno 2] No such file or directory: '{missing}'"
    junk = top / "junk.bin"
    junk.write_bytes(b"junk" * 200)
    with pytest.raises(BundleError) as info:
        archive.bundle_type(str(junk))
    assert str(info.value) == f"{junk}: not a zip, tar.gz or tar archive (nor a directory)"
    bundle = make_tgz(top / "su.tgz", [tar_entry("su", data=b"x", mode=0o4755)])
    with pytest.raises(BundleError) as info:
        extract(str(bundle), str(dest))
    assert str(info.value) == (f"{bundle}: member 'su' has the setuid, setgid or sticky bit (mode 4755); "
                               "a revision never needs them")


def test_an_empty_zip_is_a_zip(where):
    top, dest = where
    with zipfile.ZipFile(top / "empty.zip", "w"):
        pass
    assert (top / "empty.zip").read_bytes()[:4] == b"PK\x05\x06"
    assert archive.bundle_type(str(top / "empty.zip")) == "zip"


def test_a_directory_revision_is_capped_exactly(where, monkeypatch):
    top, dest = where
    rev = _dir_revision(top)
    size = sum(p.stat().st_size for p in rev.rglob("*") if p.is_file())
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", size)
    extract(str(rev), str(dest))
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", size - 1)
    with pytest.raises(BundleError, match="takes the revision past"):
        extract(str(rev), str(dest.parent / "again"))


def _refusal(bundle, dest) -> str:
    with pytest.raises(BundleError) as info:
        extract(str(bundle), str(dest))
    return str(info.value)


def test_refusals_say_exactly_this(where, monkeypatch):
    top, dest = where
    (top / "a" / "b" / "outside").mkdir()
    cases = [
        ([tar_entry("d", tarfile.DIRTYPE), tar_entry("l", tarfile.SYMTYPE, linkname="d")],
         "member 'l' is a symbolic link to a directory ('d'); only links to files are allowed"),
        ([tar_entry("h", tarfile.LNKTYPE, linkname="nothing")],
         "member 'h' is a hard link to 'nothing', which is not a regular file this archive unpacked before it"),
        ([tar_entry("null", tarfile.CHRTYPE)],
         "member 'null' is not a file, directory or link (devices and FIFOs are not allowed)"),
        ([tar_entry("x", tarfile.SYMTYPE, linkname="y"), tar_entry("y", tarfile.DIRTYPE)],
         f"member 'x' is a symbolic link that now resolves to {dest}/y (outside the bundle or a directory) "
         "once every entry is unpacked"),
    ]
    for i, (entries, message) in enumerate(cases):
        bundle = make_tgz(top / f"c{i}.tgz", entries)
        assert _refusal(bundle, dest.parent / f"d{i}") == f"{bundle}: {message}".replace(
            str(dest), str(dest.parent / f"d{i}"))
    corrupt = top / "corrupt.tgz"
    corrupt.write_bytes(b"\x1f\x8b" + b"\0" * 30)
    assert _refusal(corrupt, dest).startswith(f"{corrupt}: cannot be unpacked: ")
    badzip = top / "bad.zip"
    badzip.write_bytes(b"PK\x03\x04" + b"\0" * 30)
    assert _refusal(badzip, dest) == f"{badzip}: not a readable zip archive: File is not a zip file"
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 1 << 20)
    zipped = make_zip(top / "big.zip", [("zeros", stat.S_IFREG | 0o644, b"\0" * (2 << 20))])
    claimed = (2 << 20) + len(APPSPEC)
    assert _refusal(zipped, dest) == f"{zipped}: unpacks to {claimed} bytes, more than a revision may (1 MiB)"
    monkeypatch.setattr(archive, "MAX_ENTRIES", 2)
    many = make_zip(top / "many.zip", [(f"f{i}", stat.S_IFREG | 0o644, b"x") for i in range(2)])
    assert _refusal(many, dest) == f"{many}: member 'f1' is one too many: a revision may hold at most 2 entries"


def test_a_replaced_link_does_not_end_the_final_check(where):
    """`a` is a link, then a file; `b` is checked all the same."""
    top, dest = where
    bundle = make_tgz(top / "replaced.tgz", [tar_entry("a", tarfile.SYMTYPE, linkname="f"),
                                             tar_entry("a", data=b"now a file"),
                                             tar_entry("b", tarfile.SYMTYPE, linkname="x"),
                                             tar_entry("x", tarfile.DIRTYPE)])
    assert "member 'b' is a symbolic link that now resolves to" in _refusal(bundle, dest)


def test_directory_modes_are_the_archives(where):
    top, dest = where
    bundle = make_tgz(top / "modes.tgz", [tar_entry("d", tarfile.DIRTYPE, mode=0o750),
                                          tar_entry("d/f", data=b"x", mode=0o640)])
    extract(str(bundle), str(dest))
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o750
    assert stat.S_IMODE((dest / "d" / "f").stat().st_mode) == 0o640


def test_a_refused_archive_leaves_its_directories_closed(where):
    """Directories are made 0700 and get their modes only once everything is in."""
    top, dest = where
    bundle = make_tgz(top / "half.tgz", [tar_entry("d", tarfile.DIRTYPE, mode=0o755),
                                         tar_entry("d/null", tarfile.CHRTYPE)])
    _refusal(bundle, dest)
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o700


def test_zip_limits_are_exact(where, monkeypatch):
    top, dest = where
    monkeypatch.setattr(archive, "MAX_ENTRIES", 3)
    extract(str(make_zip(top / "three.zip", [(f"f{i}", stat.S_IFREG | 0o644, b"x") for i in range(2)])),
            str(dest))
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", len(APPSPEC) + 10)
    extract(str(make_zip(top / "sized.zip", [("f", stat.S_IFREG | 0o644, b"x" * 10)])), str(dest.parent / "z"))


def test_a_zip_from_a_non_unix_tool_gets_default_modes(where):
    """No unix mode in the entries (create_system 0): directories by their '/', umask defaults."""
    top, dest = where
    path = top / "dos.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in (("appspec.yml", APPSPEC), ("d/", b""), ("d/f.txt", b"x")):
            zi = zipfile.ZipInfo(name)
            zi.create_system = 0
            zi.external_attr = 0x10 if name.endswith("/") else 0
            zf.writestr(zi, data)
    umask = os.umask(0o022)
    try:
        extract(str(path), str(dest))
    finally:
        os.umask(umask)
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "d" / "f.txt").stat().st_mode) == 0o644


def test_an_archive_file_is_capped_exactly(where, monkeypatch):
    top, dest = where
    bundle = make_tgz(top / "sized.tgz", [tar_entry("r", data=b"x")])
    size = bundle.stat().st_size
    monkeypatch.setattr(archive, "MAX_ARCHIVE_BYTES", size)
    extract(str(bundle), str(dest))
    monkeypatch.setattr(archive, "MAX_ARCHIVE_BYTES", size - 1)
    assert _refusal(bundle, dest.parent / "again") == f"{bundle}: {size} bytes, more than a revision may be (0 MiB)"
    monkeypatch.setattr(archive, "MAX_ARCHIVE_BYTES", (3 << 20) - 1)
    big = top / "big.tar"
    with tarfile.open(big, "w") as tf:
        info, data = tar_entry("r", data=os.urandom(3 << 20))
        tf.addfile(info, io.BytesIO(data))
    assert _refusal(big, dest.parent / "big") == (f"{big}: {big.stat().st_size} bytes, more than a revision "
                                                  "may be (2 MiB)")


def test_zip_modes_are_the_entries(where):
    top, dest = where
    bundle = make_zip(top / "modes.zip", [("run.sh", stat.S_IFREG | 0o750, b"#!/bin/sh\n"),
                                          ("data", stat.S_IFREG | 0o640, b"x"),
                                          ("d/", stat.S_IFDIR | 0o710, b"")])
    extract(str(bundle), str(dest))
    assert [stat.S_IMODE((dest / n).stat().st_mode) for n in ("run.sh", "data", "d")] == [0o750, 0o640, 0o710]


def test_a_corrupt_zip_entry_is_refused(where):
    """Its deflate stream broken: zlib's error is a refusal too, not a traceback."""
    top, dest = where
    bundle = make_zip(top / "crc.zip", [("data", stat.S_IFREG | 0o644, b"data" * 1000)])
    raw = bytearray(bundle.read_bytes())
    zi = zipfile.ZipFile(bundle).getinfo("data")
    start = zi.header_offset + 30 + len(zi.filename) + len(zi.extra) + 5
    raw[start] ^= 0xff
    bundle.write_bytes(bytes(raw))
    message = _refusal(bundle, dest)
    assert message.startswith(f"{bundle}: cannot be unpacked: "), message


def test_zip_times_are_the_entries_local_times(where):
    """As unzip restores them: the entry's date and time, in local time (DST as the zone says)."""
    top, dest = where
    path = top / "times.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("appspec.yml", date_time=(2001, 2, 3, 4, 5, 6)), APPSPEC)
    extract(str(path), str(dest))
    assert (dest / "appspec.yml").stat().st_mtime == time.mktime((2001, 2, 3, 4, 5, 6, 0, 0, -1))
    assert time.mktime((2001, 2, 3, 4, 5, 6, 0, 0, -1)) != time.mktime((2001, 2, 3, 4, 5, 6, 0, 0, 1))


def test_an_entry_under_a_link_that_now_leads_outside_is_refused_before_it_is_written(where):
    """`A -> B/../../z` is inside while B leads two levels down; B replaced by a link one level
    down takes A out of the tree, and the entry `A/x` written through it is refused by name."""
    top, dest = where
    entries = [tar_entry("B", tarfile.SYMTYPE, linkname="w/v"), tar_entry("w", tarfile.DIRTYPE),
               tar_entry("w/v", tarfile.DIRTYPE), tar_entry("A", tarfile.SYMTYPE, linkname="B/../../z"),
               tar_entry("B", tarfile.SYMTYPE, linkname="k"), tar_entry("A/x", data=b"pwned\n")]
    bundle = make_tgz(top / "relinked.tgz", entries)
    assert _refusal(bundle, dest) == (f"{bundle}: member 'A/x' points outside the bundle (through a "
                                      f"symbolic link, to {dest.parent}/z)")
    assert not (dest.parent / "z").exists()


def test_a_directory_entry_replaces_a_link_of_its_name(where):
    top, dest = where
    entries = [tar_entry("f", data=b"inside\n"), tar_entry("d", tarfile.SYMTYPE, linkname="f"),
               tar_entry("d", tarfile.DIRTYPE), tar_entry("d/x", data=b"x\n")]
    extract(str(make_tgz(top / "relink.tgz", entries)), str(dest))
    assert (dest / "d").is_dir() and not (dest / "d").is_symlink()
    assert (dest / "d" / "x").read_bytes() == b"x\n" and (dest / "f").read_bytes() == b"inside\n"


@pytest.mark.parametrize("last", [tar_entry("d", tarfile.SYMTYPE, linkname="f"),
                                  tar_entry("d", tarfile.LNKTYPE, linkname="f")], ids=["symlink", "hardlink"])
def test_a_link_cannot_replace_a_directory(where, last):
    top, dest = where
    bundle = make_tgz(top / "over.tgz", [tar_entry("f", data=b"x"), tar_entry("d", tarfile.DIRTYPE), last])
    assert _refusal(bundle, dest) == f"{bundle}: member 'd' is not a directory, but an earlier entry made it one"


def test_a_hard_link_to_a_hard_link_is_a_link_to_the_file(where):
    top, dest = where
    entries = [tar_entry("f", data=b"same\n"), tar_entry("h", tarfile.LNKTYPE, linkname="f"),
               tar_entry("h2", tarfile.LNKTYPE, linkname="h")]
    extract(str(make_tgz(top / "hard.tgz", entries)), str(dest))
    assert len({(dest / n).stat().st_ino for n in ("f", "h", "h2")}) == 1
    assert (dest / "h2").read_bytes() == b"same\n"


def test_a_zip_fifo_is_refused_in_these_words(where):
    top, dest = where
    bundle = make_zip(top / "fifo.zip", [("p", stat.S_IFIFO | 0o644, b"")])
    assert _refusal(bundle, dest) == \
        f"{bundle}: member 'p' is not a file or directory (devices and FIFOs are not allowed)"


def test_a_directory_revision_past_the_entry_cap_names_the_entry(where, monkeypatch):
    top, dest = where
    rev = _dir_revision(top)
    monkeypatch.setattr(archive, "MAX_ENTRIES", 2)
    assert _refusal(rev, dest) == \
        f"{rev}: member 'build/index.html' is one too many: a revision may hold at most 2 entries"


def _swapped_after_lstat(monkeypatch, swapped: Path, decoy: Path) -> None:
    """A file swapped between _copy_dir's lstat and its open: lstat answers for `swapped` as it
    was (the regular file `decoy`), while the disk holds what the test put there."""
    real = os.lstat
    monkeypatch.setattr(archive.os, "lstat",
                        lambda p, *a, **k: real(decoy) if str(p) == str(swapped) else real(p, *a, **k))


def test_a_file_that_becomes_a_fifo_while_it_is_copied_is_refused(where, monkeypatch):
    top, dest = where
    rev = _dir_revision(top)
    (top / "decoy").write_text("x\n")
    os.mkfifo(rev / "build" / "pipe")  # opened without O_NONBLOCK, this would wait for a writer
    _swapped_after_lstat(monkeypatch, rev / "build" / "pipe", top / "decoy")
    assert _refusal(rev, dest) == f"{rev}: member 'build/pipe' changed while it was copied"


def test_a_file_that_becomes_a_link_while_it_is_copied_is_not_followed(where, monkeypatch):
    top, dest = where
    rev = _dir_revision(top)
    (top / "secret").write_text("s3cret\n")
    os.symlink(top / "secret", rev / "build" / "conf")
    _swapped_after_lstat(monkeypatch, rev / "build" / "conf", top / "secret")
    assert _refusal(rev, dest).startswith(f"{rev}: cannot be unpacked: [Errno 40] ")
    assert not any(p.read_text() == "s3cret\n" for p in dest.rglob("*") if p.is_file())


def test_a_lone_top_level_directory_with_the_appspec_becomes_the_root(where):
    top, dest = where
    bundle = top / "wrapped.tgz"
    with tarfile.open(bundle, "w:gz") as tf:
        for info, data in [tar_entry("rev", tarfile.DIRTYPE), tar_entry("rev/appspec.yml", data=APPSPEC)]:
            tf.addfile(info, io.BytesIO(data) if info.size else None)
    assert extract(str(bundle), str(dest)) == "tgz"
    assert sorted(os.listdir(dest)) == ["appspec.yml"]
