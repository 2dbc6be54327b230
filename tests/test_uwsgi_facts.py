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


def test_workers_are_the_app_users_uwsgi_processes_inside_a_release(tmp_path):
    """Real processes: a uwsgi-named process whose cwd is a release counts (with that release);
    one outside the releases (the master) and one of another name do not."""
    import subprocess

    from bingo_host.facts.uwsgi import workers

    releases = tmp_path / "releases"
    (releases / "d-ONE").mkdir(parents=True)
    started = [subprocess.Popen(["bash", "-c", f"exec -a {name} sleep 30"], cwd=cwd)
               for name, cwd in (("uwsgi", releases / "d-ONE"), ("uwsgi", tmp_path),
                                 ("python3", releases / "d-ONE"))]
    try:
        import time

        for _ in range(50):  # until each has exec'd (its cmdline names it)
            found = workers(str(releases), os.getuid())
            if found:
                break
            time.sleep(0.05)
        assert found == [(started[0].pid, str(releases / "d-ONE"))]
        assert workers(str(releases), os.getuid() + 12345) == []
    finally:
        for p in started:
            p.kill()
            p.wait()
