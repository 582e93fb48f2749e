"""Heartbeat grace after the endpoint was down: heartbeats are counted from
no earlier than when the endpoint last came up (the view's
`endpoint_up_since`, which the cycle reads from STATE/endpoint.json), in
the pure feedback/planner code."""

from dataclasses import replace

import pytest

from vacagent import config, cycle, planner
from vacagent.clock import FakeClock
from vacagent.feedback import Verdict, assess
from vacagent.report import Reporter
from vacagent.state import uptime

from conftest import T0, limits, mt, view

HB = mt(fizzle_seconds=60, max_wallclock_seconds=10_000, heartbeat_file="heartbeat", heartbeat_seconds=100)
HB0 = mt(fizzle_seconds=60, max_wallclock_seconds=10_000, heartbeat_file="heartbeat", heartbeat_seconds=0)
LIM = limits()


@pytest.mark.parametrize(
    "desc, heartbeat_at, up_since, now, verdict",
    [
        ("no grace: stale", T0 + 100, None, T0 + 200.5, Verdict.EXPIRED),
        ("endpoint up before the last heartbeat: no effect", T0 + 100, T0 + 50, T0 + 200.5, Verdict.EXPIRED),
        ("endpoint came up after the last heartbeat: grace", T0 + 100, T0 + 150, T0 + 200.5, Verdict.RUNNING),
        ("grace ends heartbeat_seconds after the endpoint came up", T0 + 100, T0 + 150, T0 + 250, Verdict.RUNNING),
        ("grace over", T0 + 100, T0 + 150, T0 + 250.5, Verdict.EXPIRED),
        ("never heartbeated, endpoint restarted", None, T0 + 500, T0 + 550, Verdict.RUNNING),
        ("never heartbeated, grace over", None, T0 + 500, T0 + 600.5, Verdict.EXPIRED),
        ("a fresh heartbeat after the restart counts as usual", T0 + 560, T0 + 500, T0 + 660, Verdict.RUNNING),
        ("up_since in the future (clock skew) only delays", T0 + 100, T0 + 900, T0 + 1000, Verdict.RUNNING),
    ],
)
def test_grace(desc, heartbeat_at, up_since, now, verdict):
    a = assess(view(heartbeat_at=heartbeat_at, endpoint_up_since=up_since), HB, LIM, now)
    assert a.verdict is verdict
    if verdict is Verdict.EXPIRED:
        assert a.outcome.message == "700 Heartbeat not updated"


def test_zero_heartbeat_seconds_is_unchanged_by_grace():
    """heartbeat_seconds 0 (Vcycle): the file must only exist; the endpoint's uptime is no excuse."""
    assert assess(view(endpoint_up_since=T0 + 60), HB0, LIM, T0 + 61).verdict is Verdict.EXPIRED
    assert assess(view(heartbeat_at=T0 + 5, endpoint_up_since=T0 + 60), HB0, LIM, T0 + 9999).verdict is Verdict.RUNNING


def test_planner_acts_on_the_grace():
    views = [view(name="p-a-1", heartbeat_at=T0 + 100), view(name="p-a-2", heartbeat_at=T0 + 100)]
    without = planner.plan(LIM, {"p-a": HB}, views, {}, T0 + 201)
    assert sorted(d.name for d in without.plan.deletes) == ["p-a-1", "p-a-2"]
    graced = [replace(v, endpoint_up_since=T0 + 150) for v in views]
    assert planner.plan(LIM, {"p-a": HB}, graced, {}, T0 + 201).plan.deletes == ()


def test_uptime_roundtrip(tmp_path):
    assert uptime.up_since(tmp_path) is None
    uptime.record_up(tmp_path, T0, "http://127.0.0.1:8450", "127.0.0.1:8450")
    assert uptime.up_since(tmp_path) == T0
    uptime.record_up(tmp_path, T0 + 5, "http://127.0.0.1:8450", "127.0.0.1:8450")
    assert uptime.up_since(tmp_path) == T0 + 5
    (tmp_path / uptime.FILE).write_text("{not json")
    assert uptime.up_since(tmp_path) is None


def test_cycle_reads_the_endpoint_start_and_spares_machines(tmp_path):
    """A machine that never heartbeated is spared for heartbeat_seconds after the endpoint
    (re)started, by the real cycle reading STATE/endpoint.json; then deleted."""
    (tmp_path / "x.sh").write_text("#!/bin/sh\n")
    (tmp_path / "vacagent.yaml").write_text("""
site: g.test
state_dir: state
spaces:
  lab:
    backend: fake
    processors_limit: 1
    machinetypes:
      lab-a: {user_data: x.sh, fizzle_seconds: 10, heartbeat_file: heartbeat, heartbeat_seconds: 100}
""")
    settings = config.load(tmp_path / "vacagent.yaml")
    clock = FakeClock(T0)
    space = cycle.build(settings, settings.spaces["lab"], Reporter(), clock)
    [name] = cycle.run_once(space, clock.now())["created"]["lab-a"]
    clock.advance(150)  # no heartbeat for 150 s: stale, but the endpoint came up 100 s ago
    uptime.record_up(settings.state_dir, T0 + 50, "http://127.0.0.1:8450", "127.0.0.1:8450")
    assert cycle.run_once(space, clock.now())["deleted"] == []
    clock.advance(1)  # 101 s since the endpoint came up
    assert cycle.run_once(space, clock.now())["deleted"] == [{"machine": name, "reason": "700 Heartbeat not updated"}]
