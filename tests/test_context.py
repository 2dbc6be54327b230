"""Context.prefetch: one read of a per-key fact answers the steps' reads until the host changes."""

from tests.contexts import context


def counting_fact(calls):
    def states(*units):
        calls.append(units)
        return {u: f"state of {u} #{len(calls)}" for u in units}
    return states


def test_prefetched_reads_are_answered_until_a_change_is_carried_out():
    calls, ctx = [], context()
    states = counting_fact(calls)
    ctx.prefetch(states, "a.service", "b.service", "c.timer")
    assert ctx.fact(states, "b.service") == {"b.service": "state of b.service #1"}
    assert ctx.fact(states, "a.service", "c.timer") == {"a.service": "state of a.service #1",
                                                         "c.timer": "state of c.timer #1"}
    assert len(calls) == 1
    # a unit nobody prefetched is read from the host
    assert ctx.fact(states, "d.service") == {"d.service": "state of d.service #2"}
    ctx.change("start a.service", lambda: None)
    assert ctx.fact(states, "a.service") == {"a.service": "state of a.service #3"}


def test_a_dry_run_change_keeps_what_was_read():
    calls, ctx = [], context(dry_run=True)
    states = counting_fact(calls)
    ctx.prefetch(states, "a.service")
    ctx.change("would start a.service", lambda: None)
    assert ctx.fact(states, "a.service") == {"a.service": "state of a.service #1"}
    assert len(calls) == 1


def test_another_fact_is_never_answered_from_a_prefetch():
    calls, ctx = [], context()
    states, other = counting_fact(calls), counting_fact(calls)
    ctx.prefetch(states, "a.service")
    assert ctx.fact(other, "a.service") == {"a.service": "state of a.service #2"}
