"""How bingo-host asks the app's uWSGI master for a chain reload (ops/service.py): `c` on the
master's FIFO when a master reads it (the chain starts at once), else the touch trigger the vassal
also watches (seen within a second); and the wake-up byte, which is no FIFO command. Real FIFOs
in a temporary runtime directory."""

from __future__ import annotations

import os

import pytest

from bingo_host import layout
from bingo_host.ops import service

APP = "music-bingo"


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "UWSGI_RUNTIME_DIR", str(tmp_path))
    return tmp_path


def master_reading(runtime) -> int:
    """The FIFO as the master makes it (0600, in the app's directory), open for reading."""
    os.mkdir(runtime / APP, 0o700)
    os.mkfifo(layout.app_master_fifo(APP), 0o600)
    return os.open(layout.app_master_fifo(APP), os.O_RDONLY | os.O_NONBLOCK)


def test_chain_reload_through_the_masters_fifo(runtime):
    fd = master_reading(runtime)
    try:
        service.chain_reload_app(APP)
        assert os.read(fd, 16) == b"c"
        assert not os.path.exists(layout.app_reload_trigger(APP))  # no touch: the FIFO did it
        service.wake_app_master(APP)
        assert os.read(fd, 16) == service.FIFO_WAKE
        assert service.FIFO_WAKE not in b"0123456789-+BcCEflLpPqQrRsSwW"  # uWSGI's FIFO commands
    finally:
        os.close(fd)


def test_chain_reload_without_a_fifo_touches_the_trigger(runtime):
    service.chain_reload_app(APP)  # no master FIFO (a vassal from before it had one)
    trigger = layout.app_reload_trigger(APP)
    assert os.path.isfile(trigger)
    os.utime(trigger, (1000, 1000))
    os.mkdir(runtime / APP, 0o700)
    os.mkfifo(layout.app_master_fifo(APP), 0o600)  # a FIFO nobody reads: the master is down
    service.chain_reload_app(APP)
    assert os.stat(trigger).st_mtime > 1000
    service.wake_app_master(APP)  # nobody to wake: nothing happens, nothing blocks
