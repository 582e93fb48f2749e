"""The planner's evidence rules (issue 12), as tables on a fake timeline.

Success seen as soon as a machine reports a job started; backoff by what an
abort says, decaying with time; the ramp; machines still looking hold
creation back; demand hints bound it.
"""

from dataclasses import replace

import pytest

from vacagent import backoff, planner
from vacagent.backoff import FeedbackState, Gate, Kind
from vacagent.model import Cause, MachineState as S

from conftest import T0, limits, mt, view

NOW = T0 + 1000
A = mt("a", backoff_seconds=100, fizzle_seconds=600)


def mts(*types):
    return {m.name: m for m in types}


def created(decision):
    return {c.machinetype: c.count for c in decision.plan.creates}


def probing(aborts=1, last_abort=NOW - 200, until=NOW - 100, kind=None):
    return {"a": FeedbackState(aborts, last_abort, until, last_abort, "a-0: 300 No more work available", kind)}


def machine(name="a-p", created_at=NOW - 90, started=NOW - 60, **kw):
    return view(name=name, machinetype="a", created=created_at, started=started, **kw)


# ---- 1. success seen as soon as it is visible --------------------------------

@pytest.mark.parametrize(
    "jobs_started, started, reported, reset",
    [
        (1, NOW - 60, None, True),     # the probe started a job: backoff over, no fizzle_seconds wait
        (3, NOW - 60, NOW - 50, True),
        (0, NOW - 60, NOW - 50, False),    # up, still looking
        (None, NOW - 60, None, False),  # reports nothing: today's rule (fizzle_seconds)
        (1, NOW - 250, None, False),   # it booted before the last abort: its work says nothing of the queue now
        (4, NOW - 250, NOW - 210, False),  # ... nor a job it started before the abort
        (5, NOW - 250, NOW - 20, True),   # a job it started after the abort does
    ],
)
def test_a_reported_job_start_ends_the_backoff(jobs_started, started, reported, reset):
    probe = machine(created_at=started - 10, started=started, jobs_started=jobs_started, jobs_started_at=reported)
    d = planner.plan(limits(100), mts(A), [probe], probing(), NOW)
    assert (d.feedback.get("a", probing()["a"]).consecutive_aborts == 0) is reset
    if reset:
        assert created(d) == {"a": 2}  # the ramp's first step
        assert d.feedback["a"].ramp == 4
    else:
        assert created(d).get("a", 0) <= 1  # at most the one probe


def test_found_work_ends_even_a_running_backoff():
    """Machines created before the abort that booted after it and found work: the queue has work now."""
    fb = probing(last_abort=NOW - 50, until=NOW + 500)
    late = machine(name="a-late", created_at=NOW - 300, started=NOW - 40, jobs_started=1)
    d = planner.plan(limits(100), mts(A), [late], fb, NOW)
    assert d.feedback["a"].consecutive_aborts == 0
    assert backoff.gate(d.feedback["a"], NOW) is Gate.OPEN
    assert created(d) == {"a": 2}


@pytest.mark.parametrize("code, after, aborts", [("200 done", 700, 0), ("300 No more work available", 700, 1)])
def test_a_probe_past_fizzle_that_ended_between_cycles_counts_as_success(code, after, aborts):
    """Issue 15: a probe that ran fizzle_seconds counts as success whenever it ends; a 300 then aborts anew."""
    probe = machine(state=S.STOPPED, created_at=NOW - 800, started=NOW - 790, stopped=NOW - 790 + after,
                    shutdown_message=code)
    fb = probing(last_abort=NOW - 900, until=NOW - 800)
    d = planner.plan(limits(100), mts(A), [probe], fb, NOW)
    assert d.feedback["a"].consecutive_aborts == aborts
    if aborts:
        assert d.feedback["a"].kind == Kind.EMPTY_QUEUE.value


def test_a_probe_that_found_work_and_ended_between_cycles_counts_as_success():
    probe = machine(state=S.STOPPED, created_at=NOW - 200, started=NOW - 190, stopped=NOW - 30,
                    shutdown_message="200 done", jobs_started=1)
    d = planner.plan(limits(100), mts(A), [probe], probing(), NOW)
    assert d.feedback["a"].consecutive_aborts == 0 and d.feedback["a"].ramp > 0
    assert not d.plan.deletes[0].outcome.aborted  # a short run that did work is not a fizzle


# ---- 2. backoff that fits the evidence -----------------------------------------

@pytest.mark.parametrize(
    "kind, aborts, seconds",
    [
        (Kind.EMPTY_QUEUE, 1, 100), (Kind.EMPTY_QUEUE, 2, 100), (Kind.EMPTY_QUEUE, 9, 100),
        (Kind.FAILURE, 1, 100), (Kind.FAILURE, 3, 400), (Kind.FAILURE, 9, 800),
        (Kind.NO_START, 1, 200), (Kind.NO_START, 2, 400), (Kind.NO_START, 9, 800),
    ],
)
def test_delay_by_kind(kind, aborts, seconds):
    assert backoff.delay(A, aborts, kind) == seconds


@pytest.mark.parametrize(
    "message, started, kind",
    [
        ("300 No more work available", NOW - 400, Kind.EMPTY_QUEUE),
        ("500 Cannot mount /cvmfs", NOW - 400, Kind.FAILURE),
        ("700 Failed to start", None, Kind.NO_START),
    ],
)
def test_the_planner_backs_off_by_what_the_abort_says(message, started, kind):
    state = S.STOPPED if started else S.FAILED
    ended = machine(state=state, created_at=NOW - 500, started=started, stopped=NOW - 10, shutdown_message=message)
    d = planner.plan(limits(100), mts(A), [ended], {}, NOW)
    assert d.feedback["a"].kind == kind.value
    assert d.feedback["a"].backoff_until == NOW - 10 + backoff.delay(A, 1, kind)
    assert kind.value.replace("_", " ") in d.plan.held["a"]


@pytest.mark.parametrize(
    "quiet, aborts_after",
    [(0, 4), (99, 4), (100, 3), (250, 2), (1000, 1)],  # seconds between the backoff's end and the next abort
)
def test_escalation_decays_over_a_quiet_spell(quiet, aborts_after):
    state = FeedbackState(3, T0, T0 + 400, T0, "x", Kind.FAILURE.value)
    after = backoff.record_abort(state, A, T0 + 400 + quiet, T0 + 400 + quiet, "500 x")
    assert after.consecutive_aborts == aborts_after


def test_one_probe_at_a_time_in_backoff_even_with_found_work_of_old_machines():
    """A machine that booted before the last abort and works does not end the backoff nor make a second probe."""
    old = machine(name="a-old", created_at=NOW - 900, started=NOW - 890, jobs_started=5)
    probe = machine(name="a-p", created_at=NOW - 90, started=None, state=S.STARTING)
    d = planner.plan(limits(100), mts(A), [old, probe], probing(), NOW)
    assert created(d) == {} and d.plan.held["a"].startswith("probe a-p")


# ---- 3. ramp by evidence --------------------------------------------------------

def ramping(ramp):
    return {"a": FeedbackState(ramp=ramp)}


@pytest.mark.parametrize(
    "ramp, budget, made, next_ramp",
    [
        (2, None, 2, 4),
        (4, None, 4, 8),
        (64, None, 64, 100),   # beyond the default 10% (a ramp is its own budget), capped by processors_limit
        (8, 5, 5, 8),          # a configured creation_budget_processors still caps every cycle
    ],
)
def test_the_ramp_doubles_each_cycle(ramp, budget, made, next_ramp):
    d = planner.plan(limits(100, creation_budget_processors=budget), mts(A), [], ramping(ramp), NOW)
    assert created(d) == {"a": made}
    assert d.feedback.get("a", ramping(ramp)["a"]).ramp == next_ramp


def test_a_reporting_machinetype_with_no_ramp_spends_the_budget_then_ramps_from_it():
    busy = machine(name="a-busy", created_at=NOW - 200, started=NOW - 100, jobs_started=1)
    d = planner.plan(limits(100), mts(A), [busy], {}, NOW)
    assert created(d) == {"a": 10} and d.feedback["a"].ramp == 20


def test_after_an_abort_a_reporting_machinetype_ramps_from_one():
    busy = machine(name="a-busy", created_at=NOW - 200, started=NOW - 100, jobs_started=1)
    d = planner.plan(limits(100), mts(A), [busy], {"a": FeedbackState(last_abort=NOW - 5000)}, NOW)
    assert created(d) == {"a": 1} and d.feedback["a"].ramp == 2
    assert d.plan.held["a"].startswith("ramp: 1 machine(s)")


def test_the_first_abort_of_the_wave_stops_the_ramp():
    ended = machine(state=S.STOPPED, created_at=NOW - 200, started=NOW - 190, stopped=NOW - 20,
                    shutdown_message="300 No more work available", jobs_started=0)
    d = planner.plan(limits(100), mts(A), [ended], ramping(16), NOW)
    assert created(d) == {}
    assert d.feedback["a"].ramp == 0 and d.feedback["a"].consecutive_aborts == 1


def test_ramps_honour_target_shares_and_limits():
    types = mts(mt("a", target_share=3), mt("b", target_share=1))
    fb = {"a": FeedbackState(ramp=64), "b": FeedbackState(ramp=64)}
    d = planner.plan(limits(40), types, [], fb, NOW)
    assert created(d) == {"a": 30, "b": 10}
    assert "processors_limit reached" in d.plan.held["a"]


# ---- 4. no overshoot into idleness --------------------------------------------

def test_machines_still_looking_hold_creation_and_end_the_ramp():
    looking = machine(name="a-idle", created_at=NOW - 200, started=NOW - 100, jobs_started=0)
    busy = machine(name="a-busy", created_at=NOW - 200, started=NOW - 100, jobs_started=1)
    d = planner.plan(limits(100), mts(A), [looking, busy], ramping(8), NOW)
    assert created(d) == {}
    assert d.plan.held["a"].startswith("looking: 1 machine(s)")
    assert d.feedback["a"].ramp == 1  # the ramp starts again from one machine


@pytest.mark.parametrize(
    "extra, creates",
    [
        (dict(jobs_started=0), False),
        (dict(jobs_started=0, shutdown_message="300 No more work available", shutdown_message_at=NOW - 5), True),
        (dict(jobs_started=None), True),  # it reports nothing: not known to be looking
        (dict(jobs_started=0, state=S.STARTING, started=None), True),  # not up yet
    ],
)
def test_what_counts_as_looking(extra, creates):
    m = machine(**{"name": "a-1", "created_at": NOW - 200, "started": NOW - 100, **extra})
    d = planner.plan(limits(100), mts(A), [m], {}, NOW)
    assert bool(created(d)) is creates


# ---- 5. demand hints ------------------------------------------------------------

def reporter(demand, at, **kw):
    return machine(name="a-r", created_at=NOW - 900, started=NOW - 890, jobs_started=2, demand=demand,
                   demand_at=at, **kw)


@pytest.mark.parametrize(
    "demand, at, starting, budget, made",
    [
        (5, NOW - 30, 0, None, 5),
        (5, NOW - 30, 2, None, 3),    # machines starting will take two of them
        (0, NOW - 30, 0, None, 0),
        (5, NOW - planner.DEMAND_FRESH_SECONDS - 1, 0, None, 10),  # stale: ignored, the budget decides
        (500, NOW - 30, 0, 10, 10),   # a bound, never a reason to pass a configured budget
        (500, NOW - 30, 0, None, 99),  # nor the limits
    ],
)
def test_a_fresh_demand_hint_bounds_creation(demand, at, starting, budget, made):
    views = [reporter(demand, at)] + [machine(name=f"a-s{i}", created_at=NOW - 30, started=None,
                                              state=S.STARTING) for i in range(starting)]
    d = planner.plan(limits(100, creation_budget_processors=budget), mts(A), views, {}, NOW)
    assert created(d).get("a", 0) == made
    if made < 6:
        assert d.plan.held["a"].startswith("demand:")


@pytest.mark.parametrize("kind, made", [(Kind.EMPTY_QUEUE, 4), (Kind.FAILURE, 0), (Kind.NO_START, 0)])
def test_a_demand_hint_lifts_only_an_empty_queue_backoff(kind, made):
    fb = probing(last_abort=NOW - 10, until=NOW + 500, kind=kind.value)
    d = planner.plan(limits(100), mts(A), [reporter(4, NOW - 5)], fb, NOW)
    assert created(d).get("a", 0) == made


# ---- the cloud's refusal is not the project's abort ----------------------------

@pytest.mark.parametrize(
    "cause, message, started, kind",
    [
        (Cause.CAPACITY, "700 Failed to start", None, None),  # No valid host, unschedulable
        (Cause.QUOTA, "700 Failed to start", None, None),     # the quota's late re-check
        (None, "700 Failed to start", None, Kind.NO_START),   # it never started, for no reason the cloud gave
        (None, "500 Cannot mount /cvmfs", NOW - 400, Kind.FAILURE),
    ],
)
def test_a_machine_the_cloud_ended_for_want_of_room_is_no_abort(cause, message, started, kind):
    """Three empty-queue aborts, then the probe is taken back by the cloud: the count stays at three, a
    backoff of backoff_seconds (not doubled) holds it, then it probes again; a failure of the project's
    escalates."""
    fb = probing(aborts=3, last_abort=NOW - 700, until=NOW - 20, kind=Kind.EMPTY_QUEUE.value)
    state = S.STOPPED if started else S.FAILED
    ended = machine(state=state, created_at=NOW - 500, started=started, stopped=NOW - 10, shutdown_message=message,
                    cause=cause)
    d = planner.plan(limits(100), mts(A), [ended], fb, NOW)
    after = d.feedback.get("a", fb["a"])
    if kind is None:
        backoff_seconds = mts(A)["a"].backoff_seconds
        assert (after.consecutive_aborts, after.backoff_until, after.kind) == (3, NOW - 10 + backoff_seconds,
                                                                               Kind.CAPACITY.value)
        assert d.plan.held["a"].startswith("backoff until") and "the cloud's refusal" in d.plan.held["a"]
        assert f"a-p ended by the cloud ({cause.value})" in d.plan.held["a"]
        assert created(d) == {}
        held = planner.plan(limits(100), mts(A), [], {"a": after}, NOW + backoff_seconds - 20)
        assert created(held) == {}
        again = planner.plan(limits(100), mts(A), [], {"a": after}, NOW + backoff_seconds)  # then the one probe
        assert created(again) == {"a": 1}
    else:
        assert (after.consecutive_aborts, after.kind) == (4, kind.value)
        assert d.plan.held["a"].startswith("backoff")


@pytest.mark.parametrize(
    "ramp, made, after",
    [(0, 0, 0), (1, 0, 1), (64, 0, 1), (64, 20, 20), (64, 64, 64), (8, 30, 8)],
)
def test_a_refusal_backs_off_without_escalating_and_shrinks_the_ramp_to_what_fitted(ramp, made, after):
    a = mt("a", backoff_seconds=100)
    state = FeedbackState(2, T0, T0 + 200, T0, "a-x: 300 No more work available", Kind.EMPTY_QUEUE.value, ramp)
    refused = backoff.record_refusal(state, a, T0 + 300, "create refused: no room", made)
    assert refused == replace(state, backoff_until=T0 + 400, last_message="create refused: no room",
                              kind=Kind.CAPACITY.value, ramp=after)
    assert backoff.gate(refused, T0 + 399) is Gate.BACKOFF and backoff.gate(refused, T0 + 400) is Gate.PROBE
    again = backoff.record_refusal(refused, a, T0 + 400, "create refused: no room", made)
    assert again.backoff_until == T0 + 500 and again.consecutive_aborts == 2  # never doubled
    fresh = backoff.record_refusal(FeedbackState(), a, T0, "create refused: no room")
    assert backoff.gate(fresh, T0 + 100) is Gate.OPEN  # a refusal alone leaves no probe behind


def test_a_refusal_does_not_shorten_a_longer_backoff():
    a = mt("a", backoff_seconds=100)
    state = FeedbackState(4, T0, T0 + 800, T0, "a-x: 500 Cannot mount /cvmfs", Kind.FAILURE.value)
    assert backoff.record_refusal(state, a, T0 + 10, "a-y ended by the cloud (capacity)") == state
