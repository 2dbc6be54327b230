"""facts/uwsgi.py: who the installed vassal runs the app as, and the pyuwsgi version in a
virtualenv, read from real files (the rendered golden vassal, a dist-info directory)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from bingo_host.facts.uwsgi import installed_pyuwsgi, vassal_user

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("platform", ["debian12", "amzn2023"])
def test_vassal_user_of_the_rendered_vassal(platform):
    """The reader and the template agree on the `uid =` line."""
    assert vassal_user(str(GOLDEN / platform / "etc/bingo-host/vassals/music-bingo-blue.ini")) == "music-bingo"


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


def test_workers_are_the_app_users_uwsgi_processes_inside_a_release_forked_by_a_master(tmp_path):
    """Real processes: a uwsgi-named child of a uwsgi-named master, in a release, counts (with
    that release); the master itself (in the release too, its parent no uWSGI process), a child
    outside the releases and one of another name do not. vassal_pids finds the master and its
    children by the vassal file named on their command line."""
    import subprocess
    import time

    import psutil

    from bingo_host.facts.uwsgi import vassal_pids, workers

    releases = tmp_path / "releases"
    (releases / "d-ONE").mkdir(parents=True)
    sleeper = "import time; time.sleep(30)"
    master_code = (  # forks its "workers" as a uWSGI master does, each named like it
        "import json, subprocess, time\n"
        "def start(argv0, cwd):\n"
        f"    return subprocess.Popen([argv0, '-c', {sleeper!r}, '--ini', 'app-blue.ini'], executable={sys.executable!r}, cwd=cwd).pid\n"
        f"pids = [start('uwsgi', {str(releases / 'd-ONE')!r}), start('uwsgi', {str(tmp_path)!r}), start('python3', {str(releases / 'd-ONE')!r})]\n"
        f"open({str(tmp_path / 'pids')!r}, 'w').write(json.dumps(pids))\n"
        "time.sleep(30)\n")
    master = subprocess.Popen(["uwsgi", "-c", master_code, "--ini", "app-blue.ini"], executable=sys.executable,
                              cwd=releases / "d-ONE")
    try:
        for _ in range(100):  # until each child runs
            if (tmp_path / "pids").exists() and len(psutil.Process(master.pid).children()) == 3:
                break
            time.sleep(0.05)
        inside, outside, other_name = json.loads((tmp_path / "pids").read_text())
        assert workers(str(releases), os.getuid()) == [(inside, str(releases / "d-ONE"))]
        assert workers(str(releases), os.getuid() + 12345) == []
        if os.getuid() != 0:  # vassal_pids looks at processes of any user but root
            assert vassal_pids("/etc/x/app-blue.ini") == {master.pid, inside, outside}
            assert vassal_pids("/etc/x/app-green.ini") == set()
    finally:
        for k in psutil.Process(master.pid).children():
            k.kill()
        master.kill()
        master.wait()
