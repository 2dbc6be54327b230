"""facts/uwsgi.py: who the installed vassal runs the app as, and the pyuwsgi version in a
virtualenv, read from real files (the rendered golden vassal, a dist-info directory)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bingo_host.facts.uwsgi import installed_pyuwsgi, vassal_user

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("platform", ["debian12", "amzn2023"])
def test_vassal_user_of_the_rendered_vassal(platform):
    """The reader and the template agree on the `uid =` line."""
    assert vassal_user(str(GOLDEN / platform / "etc/bingo-host/vassals/music-bingo.ini")) == "music-bingo"


def test_vassal_user_absent_or_unreadable(tmp_path):
    assert vassal_user(str(tmp_path / "missing.ini")) is None
    no_uid = tmp_path / "no-uid.ini"
    no_uid.write_text("[uwsgi]\nmaster = true\n# uid = someone\n")
    assert vassal_user(str(no_uid)) is None
    real = tmp_path / "real.ini"
    real.write_text("[uwsgi]\nuid = bingo\n")
    link = tmp_path / "link.ini"
    link.symlink_to(real)
    assert vassal_user(str(link)) is None  # never read through a link
    fifo = tmp_path / "fifo.ini"
    os.mkfifo(fifo)
    assert vassal_user(str(fifo)) is None  # and never blocks on a FIFO
    assert vassal_user(str(real)) == "bingo"


def test_installed_pyuwsgi(tmp_path):
    site = tmp_path / "lib/python3.11/site-packages"
    site.mkdir(parents=True)
    assert installed_pyuwsgi(str(tmp_path)) is None
    (site / "pyuwsgi-2.0.30.dist-info").mkdir()
    assert installed_pyuwsgi(str(tmp_path)) == "2.0.30"
