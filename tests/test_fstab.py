"""fstab: bingo-host's marked lines are added, replaced and removed; every other byte stays."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from bingo_host.ops import fstab
from bingo_host.errors import BingoHostError

EXISTING = (
    "# /etc/fstab: static file system information.\n"
    "UUID=1111-aaaa\t/\text4\tdefaults,discard\t0 1\n"
    "\n"
    "  # an indented comment   \n"
    "/dev/xvdb /mnt/scratch   xfs defaults 0 0\n"
    "tmpfs /tmp tmpfs mode=1777 0 0   \n"
)
DB = fstab.format_line("UUID=2222-bbbb", "/var/lib/mysql", "ext4", "defaults,nofail,noatime", 0, 2)
SWAP = fstab.format_line("/swapfile", "none", "swap", "sw,nofail", 0, 0)


def test_format_line():
    assert DB == "UUID=2222-bbbb /var/lib/mysql ext4 defaults,nofail,noatime 0 2 # bingo-host"


def test_parse_entries_and_marks():
    entries = fstab.parse(EXISTING + DB + "\n" + SWAP + "\n")
    assert [(e.spec, e.file, e.vfstype, e.marked) for e in entries] == [
        ("UUID=1111-aaaa", "/", "ext4", False),
        ("/dev/xvdb", "/mnt/scratch", "xfs", False),
        ("tmpfs", "/tmp", "tmpfs", False),
        ("UUID=2222-bbbb", "/var/lib/mysql", "ext4", True),
        ("/swapfile", "none", "swap", True),
    ]
    assert entries[-1].key == "/swapfile" and entries[-2].key == "/var/lib/mysql"


def test_parse_unescapes_and_defaults():
    (e,) = fstab.parse("/dev/sdc /srv/my\\040data\n")
    assert (e.file, e.vfstype, e.options) == ("/srv/my data", "auto", "defaults")


@pytest.mark.parametrize("base", [EXISTING, EXISTING.rstrip("\n"), ""])
def test_set_then_remove_round_trip(base):
    added = fstab.set_line(base, DB)
    assert added.endswith(DB + "\n")
    assert added.startswith(base)  # appended; the original bytes untouched (newline added)
    again = fstab.set_line(added, DB)
    assert again == added  # idempotent
    both = fstab.set_line(added, SWAP)
    removed = fstab.remove_line(fstab.remove_line(both, "/var/lib/mysql"), "/swapfile")
    assert removed == (base + "\n" if base and not base.endswith("\n") else base)


def test_set_replaces_our_line_in_place_and_dedupes():
    old = fstab.format_line("UUID=old", "/var/lib/mysql", "xfs", "defaults,nofail", 0, 2)
    text = "a / ext4 defaults 0 1\n" + old + "\n" + "b /x ext4 defaults 0 0\n" + old + "\n"
    out = fstab.set_line(text, DB)
    assert out == "a / ext4 defaults 0 1\n" + DB + "\n" + "b /x ext4 defaults 0 0\n"


def test_foreign_line_for_the_mountpoint_is_refused():
    text = EXISTING + "/dev/vg0/mysql /var/lib/mysql ext4 defaults 0 2\n"
    with pytest.raises(BingoHostError) as e:
        fstab.set_line(text, DB)
    assert "line 7" in str(e.value) and "/var/lib/mysql" in str(e.value)
    assert "not bingo-host's" in str(e.value)


def test_commented_out_line_is_not_a_claim():
    text = "#/dev/vg0/mysql /var/lib/mysql ext4 defaults 0 2\n"
    assert fstab.set_line(text, DB) == text + DB + "\n"


def test_remove_leaves_unmarked_lines():
    text = EXISTING + "/swapfile none swap sw 0 0\n"
    assert fstab.remove_line(text, "/swapfile") == text
    assert fstab.marked_line(fstab.set_line(EXISTING, SWAP), "/swapfile").spec == "/swapfile"


def test_apply_writes_only_on_change(tmp_path):
    path = tmp_path / "fstab"
    path.write_text(EXISTING)
    os.chmod(path, 0o644)
    changes = []
    ctx = SimpleNamespace(change=lambda d, fn: (changes.append(d), fn()), fact=lambda fn, *args: fn(*args))
    assert fstab.apply(ctx, lambda t: fstab.set_line(t, DB), "mount db", path=str(path))
    assert path.read_text() == EXISTING + DB + "\n"
    assert os.stat(path).st_mode & 0o777 == 0o644
    inode = os.stat(path).st_ino
    assert not fstab.apply(ctx, lambda t: fstab.set_line(t, DB), "mount db", path=str(path))
    assert os.stat(path).st_ino == inode and len(changes) == 1
