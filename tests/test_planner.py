"""The planner's creation, deletion and feedback rules, as tables."""

import pytest

from vacagent import planner
from vacagent.backoff import FeedbackState
from vacagent.model import MachineState as S

from conftest import T0, limits, mt, view

NOW = T0 + 1000


def mts(*types):
    return {m.name: m for m in types}


def created(decision):
    return {c.machinetype: c.count for c in decision.plan.creates}


def running(machinetype, n, processors=1, created=T0, started=T0, state=S.RUNNING):
    return [
        view(name=f"{machinetype}-{i}", machinetype=machinetype, processors=processors,
             created=created, started=started, state=state)
        for i in range(n)
    ]


# ---- creation budget and limits ------------------------------------------

@pytest.mark.parametrize(
    "limit, budget, expected",
    [
        (100, None, 10),   # default: 10% of processors_limit
        (101, None, 11),   # rounded up
        (5, None, 1),      # at least one machine
        (100, 3, 3),       # configured
        (100, 1000, 100),  # never past processors_limit
    ],
)
def test_budget(limit, budget, expected):
    d = planner.plan(limits(limit, creation_budget_processors=budget), mts(mt("a")), [], {}, NOW)
    assert created(d) == {"a": expected}
    assert "budget" in d.plan.held["a"] or "processors_limit" in d.plan.held["a"]


def test_budget_counts_processors_and_allows_one_big_machine():
    big = mt("big", processors=8)
    d = planner.plan(limits(20, creation_budget_processors=2), mts(big), [], {}, NOW)
    assert created(d) == {"big": 1}  # 8 > budget 2, but one machine per cycle always
    assert "creation budget" in d.plan.held["big"]


@pytest.mark.parametrize(
    "in_use, limit, processors, expected",
    [(0, 4, 1, 4), (3, 4, 1, 1), (4, 4, 1, 0), (3, 4, 2, 0), (2, 4, 2, 1)],
)
def test_processors_limit_is_never_exceeded(in_use, limit, processors, expected):
    m = mt("a", processors=processors)
    views = running("x", in_use)  # another machinetype's machines use the space too
    d = planner.plan(limits(limit, creation_budget_processors=100), mts(m, mt("x", target_share=0)), views, {}, NOW)
    assert created(d).get("a", 0) == expected
    if expected == 0:
        assert "processors_limit reached" in d.plan.held["a"]


def test_max_machines():
    d = planner.plan(limits(100, max_machines=5, creation_budget_processors=100), mts(mt("a")),
                     running("a", 3), {}, NOW)
    assert created(d) == {"a": 2}
    assert "max_machines reached" in d.plan.held["a"]


def test_machinetype_processors_limit():
    d = planner.plan(limits(100, creation_budget_processors=100), mts(mt("a", processors_limit=4)),
                     running("a", 1), {}, NOW)
    assert created(d) == {"a": 3}
    assert "machinetype processors_limit" in d.plan.held["a"]


def test_max_starting_processors():
    starting = running("a", 2, started=None, state=S.STARTING)
    d = planner.plan(limits(100, creation_budget_processors=100), mts(mt("a", max_starting_processors=3)),
                     starting, {}, NOW)
    assert created(d) == {"a": 1}
    assert "max_starting_processors" in d.plan.held["a"]


def test_deleting_machines_still_count_against_limits():
    views = [view(name=f"a-{i}", machinetype="a", deleting_since=NOW - 1) for i in range(4)]
    d = planner.plan(limits(4, creation_budget_processors=100), mts(mt("a")), views, {}, NOW)
    assert created(d) == {}


# ---- shares ------------------------------------------------------------------

def test_lowest_usage_over_share_goes_first():
    types = mts(mt("a", target_share=2), mt("b", target_share=1))
    d = planner.plan(limits(30, creation_budget_processors=30), types, [], {}, NOW)
    assert created(d) == {"a": 20, "b": 10}


def test_share_counts_existing_machines():
    types = mts(mt("a", target_share=1), mt("b", target_share=1))
    d = planner.plan(limits(10, creation_budget_processors=4), types, running("a", 6), {}, NOW)
    assert created(d) == {"b": 4}


def test_target_share_zero_never_creates():
    d = planner.plan(limits(10), mts(mt("a", target_share=0)), [], {}, NOW)
    assert created(d) == {} and d.plan.held["a"] == "target_share is 0"


def test_ties_are_broken_by_name():
    types = mts(mt("b"), mt("a"))
    d = planner.plan(limits(10, creation_budget_processors=1), types, [], {}, NOW)
    assert created(d) == {"a": 1}


def test_held_machinetypes_do_not_create():
    d = planner.plan(limits(10), mts(mt("a")), [], {}, NOW, held={"a": "definition invalid"})
    assert created(d) == {} and d.plan.held["a"] == "definition invalid"


# ---- backoff and probes --------------------------------------------------------

A = mt("a", backoff_seconds=100, fizzle_seconds=60)


def test_no_creation_during_backoff():
    fb = {"a": FeedbackState(1, NOW - 10, NOW + 90, NOW - 10, "a-1: 300 No more work")}
    d = planner.plan(limits(10), mts(A), [], fb, NOW)
    assert created(d) == {}
    assert d.plan.held["a"].startswith("backoff until")
    assert "300 No more work" in d.plan.held["a"]


def test_exactly_one_probe_after_backoff():
    fb = {"a": FeedbackState(1, NOW - 200, NOW - 100, NOW - 200, "x")}
    d = planner.plan(limits(10, creation_budget_processors=10), mts(A), [], fb, NOW)
    assert created(d) == {"a": 1}
    assert d.plan.creates[0].probe
    assert "one probe" in d.plan.held["a"]


def test_no_second_probe_while_the_first_runs():
    fb = {"a": FeedbackState(1, NOW - 200, NOW - 100, NOW - 200, "x")}
    probe = view(name="a-p", machinetype="a", created=NOW - 50, started=NOW - 40)
    d = planner.plan(limits(10), mts(A), [probe], fb, NOW)
    assert created(d) == {}
    assert d.plan.held["a"].startswith("probe a-p")


def test_old_wave_machines_are_not_probes():
    fb = {"a": FeedbackState(1, NOW - 200, NOW - 100, NOW - 200, "x")}
    old = view(name="a-old", machinetype="a", created=NOW - 900, started=NOW - 890)
    d = planner.plan(limits(10), mts(A), [old], fb, NOW)
    assert created(d) == {"a": 1}


def test_probe_passing_fizzle_resets_and_opens():
    fb = {"a": FeedbackState(2, NOW - 200, NOW - 100, NOW - 200, "x")}
    probe = view(name="a-p", machinetype="a", created=NOW - 90, started=NOW - 60)
    d = planner.plan(limits(10, creation_budget_processors=5), mts(A), [probe], fb, NOW)
    assert d.feedback["a"].consecutive_aborts == 0
    assert created(d) == {"a": 5}


def test_finished_abort_starts_backoff_and_blocks_creation():
    stopped = view(name="a-1", machinetype="a", state=S.STOPPED, created=NOW - 500, started=NOW - 490,
                   stopped=NOW - 5, shutdown_message="300 No more work available")
    d = planner.plan(limits(10), mts(A), [stopped], {}, NOW)
    assert d.feedback["a"].consecutive_aborts == 1
    assert d.feedback["a"].backoff_until == NOW - 5 + 100
    assert created(d) == {}
    assert [x.name for x in d.plan.deletes] == ["a-1"]
    assert d.plan.deletes[0].outcome.aborted


def test_recorded_outcome_is_not_counted_twice():
    stopped = view(name="a-1", machinetype="a", state=S.STOPPED, created=NOW - 500, started=NOW - 490,
                   stopped=NOW - 5, shutdown_message="300 x", outcome_recorded=True, deleting_since=NOW - 3)
    fb = {"a": FeedbackState(1, NOW - 5, NOW + 95, NOW - 5, "x")}
    d = planner.plan(limits(10), mts(A), [stopped], fb, NOW)
    assert "a" not in d.feedback
    assert d.plan.deletes == ()  # deletion asked 3 s ago: not re-issued yet


def test_deletion_is_reissued_after_delete_retry_seconds():
    stuck = view(name="a-1", machinetype="a", state=S.STOPPED, stopped=NOW - 100, outcome_recorded=True,
                 deleting_since=NOW - 60)
    d = planner.plan(limits(10, delete_retry_seconds=60), mts(A), [stuck], {}, NOW)
    assert [x.name for x in d.plan.deletes] == ["a-1"]
    assert d.plan.deletes[0].outcome is None and d.plan.deletes[0].message is None


def test_gone_machine_is_closed_with_outcome():
    gone = view(name="a-1", machinetype="a", state=S.GONE, started=None, created=NOW - 400)
    d = planner.plan(limits(10), mts(A), [gone], {}, NOW)
    assert [c.name for c in d.plan.closes] == ["a-1"]
    assert d.plan.closes[0].outcome.message == "700 Failed to start"
    assert d.feedback["a"].consecutive_aborts == 1


# ---- deletions -----------------------------------------------------------------

@pytest.mark.parametrize(
    "v, message",
    [
        (view(name="a-1", machinetype="a", state=S.STARTING, started=None, created=NOW - 3601), "700 Failed to start"),
        (view(name="a-1", machinetype="a", created=NOW - 20000, started=NOW - 20000), "700 Exceeded max_wallclock_seconds"),
        (view(name="a-1", machinetype="gone"), "700 Machinetype no longer configured"),
    ],
)
def test_deletions_carry_our_message(v, message):
    d = planner.plan(limits(10), mts(A), [v], {}, NOW)
    assert [(x.name, x.message) for x in d.plan.deletes] == [("a-1", message)]


def test_heartbeat_deletion():
    hb = mt("a", fizzle_seconds=60, heartbeat_file="heartbeat", heartbeat_seconds=100)
    v = view(name="a-1", machinetype="a", created=NOW - 500, started=NOW - 500, heartbeat_at=NOW - 101)
    d = planner.plan(limits(10), mts(hb), [v], {}, NOW)
    assert [(x.name, x.message) for x in d.plan.deletes] == [("a-1", "700 Heartbeat not updated")]
    assert not d.plan.deletes[0].outcome.aborted


def test_failed_to_start_is_an_abort():
    v = view(name="a-1", machinetype="a", state=S.STARTING, started=None, created=NOW - 3601)
    d = planner.plan(limits(10), mts(A), [v], {}, NOW)
    assert d.feedback["a"].consecutive_aborts == 1


def test_every_machinetype_gets_a_reason():
    types = mts(mt("a"), mt("b", target_share=0), mt("c"))
    fb = {"c": FeedbackState(1, NOW, NOW + 50, NOW, "x")}
    d = planner.plan(limits(10), types, [], fb, NOW)
    assert set(d.plan.held) == {"a", "b", "c"}


def test_plan_is_pure_and_repeatable():
    types = mts(mt("a", target_share=3), mt("b"))
    views = running("a", 2) + running("b", 1)
    first = planner.plan(limits(20), types, views, {}, NOW)
    second = planner.plan(limits(20), types, views, {}, NOW)
    assert first == second
