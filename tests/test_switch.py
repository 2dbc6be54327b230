"""The switch's choice about the slot that does not serve (deploy/switch.py): AfterInstall's
prestart leaves the release loading there, and ApplicationStart's start_other_slot keeps it only
when it loaded what the switch would start (the same vassal file, the same health wrapper, beside
a slot that serves); anything else there is stopped and started again. uWSGI itself runs in
tests/test_deploy.py and tests/test_codedeploy_agent.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bingo_host import layout
from bingo_host.deploy import first_bind, slots, switch

APP = "music-bingo"
BLUE, GREEN = (layout.slot_vassal_file(APP, s) for s in ("blue", "green"))


class Ctx:
    """What start_other_slot asks of a Context: which files differ, what it writes, what it owes."""

    def __init__(self, host, vassal_differs=False, wrapper_differs=False):
        self.host = host
        self.cfg = SimpleNamespace(app=SimpleNamespace(name=APP, processes=2))
        self.vassal_differs, self.wrapper_differs = vassal_differs, wrapper_differs
        self.app_slot = self.app_release = None
        self.written, self.done_actions = [], []

    def managed(self, template):
        return SimpleNamespace(template=template)

    def differs(self, mf):
        if mf.template == "uwsgi-vassal.ini":  # slots.stop removes the file
            return self.vassal_differs or layout.slot_vassal_file(APP, self.app_slot) not in self.host.vassals
        return self.wrapper_differs

    def ensure_file(self, mf):
        if self.differs(mf):
            self.written.append(mf.template)
            return True
        return False

    def done(self, action):
        self.done_actions.append(action)


@pytest.fixture
def host(monkeypatch):
    """The slots' host side, recorded: which vassals exist, what was stopped, woken, restarted."""
    seen = SimpleNamespace(vassals=[BLUE, GREEN], stopped=[], forgot=[], woken=0, restarted=0, pointed=[])
    monkeypatch.setattr(slots, "vassals", lambda app: list(seen.vassals))
    monkeypatch.setattr(slots, "serving", lambda app: "blue")
    monkeypatch.setattr(slots, "stop", lambda ctx, path: (seen.stopped.append(path), seen.vassals.remove(path)))
    monkeypatch.setattr(slots, "drain", lambda app, slot: None)
    monkeypatch.setattr(slots, "wait_ready", lambda ctx, slot, timeout: 0.1)
    monkeypatch.setattr(slots, "point", lambda app, slot: seen.pointed.append(slot))
    monkeypatch.setattr(slots, "wake_emperor", lambda: setattr(seen, "woken", seen.woken + 1))
    monkeypatch.setattr(first_bind, "forget", lambda app, slot: seen.forgot.append(slot))
    monkeypatch.setattr(switch.service, "systemctl",
                        lambda *args: setattr(seen, "restarted", seen.restarted + 1))
    return seen


def test_a_slot_prestart_left_loading_the_same_release_is_kept(host):
    ctx = Ctx(host)
    switch.start_other_slot(ctx, "d-NEW")
    assert (ctx.app_slot, ctx.app_release) == ("green", "d-NEW")
    assert host.stopped == [BLUE]  # the old slot only, after the switch
    assert host.forgot == [] and ctx.written == [] and host.woken == 0 and host.restarted == 0
    assert host.pointed == ["green"]


@pytest.mark.parametrize("vassal_differs, wrapper_differs", [(True, False), (False, True)])
def test_a_slot_that_loaded_something_else_is_stopped_and_started_again(host, vassal_differs, wrapper_differs):
    """Another release or other settings (its vassal file differs), or an older health wrapper
    than this bingo-host writes now: what runs there is not what the switch would start."""
    ctx = Ctx(host, vassal_differs=vassal_differs, wrapper_differs=wrapper_differs)
    switch.start_other_slot(ctx, "d-NEW")
    assert host.stopped == [GREEN, BLUE]
    assert host.forgot == ["green"]
    assert ctx.written[-1] == "uwsgi-vassal.ini" and host.woken == 1  # written again, the emperor woken
    assert host.pointed == ["green"]


def test_a_slot_with_none_serving_beside_it_is_started_again_with_the_emperor(host):
    """No other vassal: the emperor is restarted (it may watch the directory wrongly), so what
    ran on the slot is stopped first rather than kept."""
    host.vassals = [GREEN]
    ctx = Ctx(host)
    switch.start_other_slot(ctx, "d-NEW")
    assert host.stopped == [GREEN] and host.restarted == 1 and host.forgot == ["green"]
    assert ctx.written == ["uwsgi-vassal.ini"] and host.woken == 0  # the restarted emperor spawns it
