"""The `vcycle` baseline keeps Vcycle's rules: fixed backoff, one probe, a 10% budget, random ties."""

import random

import pytest

from vacagent.model import MachineState as S
from vacagent.sim.policies import vcycle
from vacagent.sim.policies.vcycle import VcyclePlanner

from conftest import T0, limits, mt
from conftest import view as _view

BACKOFF, FIZZLE = 100, 60  # conftest's machinetype: backoff_seconds 100, fizzle_seconds 60


def view(**kw):
    return _view(**{"machinetype": "a", **kw})


def created(decision):
    return {c.machinetype: c.count for c in decision.plan.creates}


def stopped(name, code, created_at, started, stopped_at, machinetype="a"):
    return view(name=name, machinetype=machinetype, state=S.STOPPED, created=created_at, started=started,
                stopped=stopped_at, shutdown_message=f"{code} message" if code else None)


@pytest.mark.parametrize("limit, budget", [(1, 1), (9, 1), (10, 1), (11, 2), (100, 10), (101, 11), (500, 50)])
def test_budget_is_ceil_of_ten_percent(limit, budget):
    assert vcycle.budget(limit) == budget
    planner = VcyclePlanner(random.Random(1))
    d = planner(limits(limit), {"a": mt("a")}, [], {}, T0)
    assert created(d) == {"a": budget}


def test_budget_counts_processors_of_attempts():
    planner = VcyclePlanner(random.Random(1))
    d = planner(limits(100), {"big": mt("big", processors=4)}, [], {}, T0)
    assert created(d) == {"big": 3}  # 4 + 4 + 4 >= 10: the third attempt starts under budget, as in Vcycle


@pytest.mark.parametrize("code, started, ran, aborted", [
    (300, T0, 5000, True),     # no more work, after a long run
    (500, T0, 5000, True),
    (699, T0, 5000, True),
    (200, T0, 5000, False),    # work done
    (700, T0, 5000, False),
    (200, T0, 30, True),       # ran less than fizzle_seconds
    (None, None, 0, False),    # never started (boot failure): not an abort for Vcycle
    (700, None, 0, False),     # "700 Failed to start"
])
def test_what_is_an_abort(code, started, ran, aborted):
    assert vcycle.aborted(code, started, ran, FIZZLE) is aborted


def test_fixed_backoff_then_exactly_one_probe_within_backoff_plus_fizzle():
    planner = VcyclePlanner(random.Random(1))
    mts = {"a": mt("a")}
    abort_at = T0 + 1000
    views = [stopped("a-1", 300, T0, T0 + 10, abort_at)]
    assert created(planner(limits(100), mts, views, {}, abort_at + 5)) == {}
    assert planner.last_abort == {"a": abort_at}
    assert created(planner(limits(100), mts, [], {}, abort_at + BACKOFF - 1)) == {}  # still in backoff
    probe_time = abort_at + BACKOFF
    assert created(planner(limits(100), mts, [], {}, probe_time)) == {"a": 1}  # exactly one probe
    probe = view(name="a-2", state=S.STARTING, created=probe_time, started=None)
    assert created(planner(limits(100), mts, [probe], {}, probe_time + 30)) == {}
    running = view(name="a-2", state=S.RUNNING, created=probe_time, started=probe_time + 20)
    assert created(planner(limits(100), mts, [running], {}, probe_time + FIZZLE - 1)) == {}
    # Vcycle's window is backoff + fizzle after the abort, not fizzle after the probe started: at its end the
    # gate opens even though this probe (booted in 20 s) has run 40 s of its 60.
    assert created(planner(limits(100), mts, [running], {}, abort_at + BACKOFF + FIZZLE)) == {"a": 10}


def test_backoff_does_not_grow_with_repeated_aborts():
    planner = VcyclePlanner(random.Random(1))
    mts = {"a": mt("a")}
    for i in range(5):
        at = T0 + i * 1000
        planner(limits(100), mts, [stopped(f"a-{i}", 300, at - 50, at - 40, at)], {}, at)
        assert created(planner(limits(100), mts, [], {}, at + BACKOFF - 1)) == {}
        assert created(planner(limits(100), mts, [], {}, at + BACKOFF)) == {"a": 1}


def test_a_machine_that_never_started_does_not_back_off():
    planner = VcyclePlanner(random.Random(1))
    failed = view(name="a-1", state=S.FAILED, created=T0, started=None)
    assert created(planner(limits(100), {"a": mt("a")}, [failed], {}, T0 + 100)) == {"a": 10}
    assert planner.last_abort == {}


def test_every_creation_of_a_cycle_goes_to_the_lowest_machines_per_share():
    planner = VcyclePlanner(random.Random(1))
    mts = {"a": mt("a", target_share=2), "b": mt("b", target_share=1)}
    views = [view(name=f"a-{i}", machinetype="a") for i in range(5)] + [view(name="b-1", machinetype="b")]
    # a: 5/2 = 2.5, b: 1/1 = 1 -> b, all ten: counts are those of the cycle's start
    assert created(planner(limits(100), mts, views, {}, T0 + 1000)) == {"b": 10}


def test_ties_are_broken_at_random_reproducibly():
    mts = {"a": mt("a"), "b": mt("b")}
    picks = {seed: created(VcyclePlanner(random.Random(seed))(limits(10), mts, [], {}, T0)) for seed in range(20)}
    assert {tuple(p) for p in picks.values()} == {("a",), ("b",)}
    again = {seed: created(VcyclePlanner(random.Random(seed))(limits(10), mts, [], {}, T0)) for seed in range(20)}
    assert picks == again


def test_the_space_limit_is_checked_against_the_cycles_start():
    planner = VcyclePlanner(random.Random(1))
    views = [view(name=f"a-{i}") for i in range(95)]
    assert created(planner(limits(100), {"a": mt("a")}, views, {}, T0 + 1000)) == {"a": 10}  # the cloud refuses 5
    assert created(planner(limits(100), {"a": mt("a")}, views + views[:5], {}, T0 + 1000)) == {}


def test_starting_machines_are_deleted_after_3600_seconds():
    planner = VcyclePlanner(random.Random(1))
    stuck = view(name="a-1", state=S.STARTING, created=T0, started=None)
    d = planner(limits(100, max_starting_seconds=99999), {"a": mt("a")}, [stuck], {}, T0 + 3601)
    assert [(x.name, x.message) for x in d.plan.deletes] == [("a-1", "700 Failed to start")]
    assert planner(limits(100), {"a": mt("a")}, [stuck], {}, T0 + 3599).plan.deletes == ()
