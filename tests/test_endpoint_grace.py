"""Heartbeat grace after the endpoint was down: heartbeats are counted from
no earlier than when the endpoint last came up (`endpoint_up_since`), in
the pure feedback/planner code; the time is recorded in STATE/endpoint.json."""

import pytest

from vacagent import planner
from vacagent.feedback import Verdict, assess
from vacagent.model import MachineState as S
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
    v = view(heartbeat_at=heartbeat_at)
    a = assess(v, HB, LIM, now, endpoint_up_since=up_since)
    assert a.verdict is verdict
    if verdict is Verdict.EXPIRED:
        assert a.outcome.message == "700 Heartbeat not updated"


def test_zero_heartbeat_seconds_is_unchanged_by_grace():
    """heartbeat_seconds 0 (Vcycle): the file must only exist; the endpoint's uptime is no excuse."""
    assert assess(view(), HB0, LIM, T0 + 61, endpoint_up_since=T0 + 60).verdict is Verdict.EXPIRED
    assert assess(view(heartbeat_at=T0 + 5), HB0, LIM, T0 + 9999, endpoint_up_since=T0 + 60).verdict is Verdict.RUNNING


def test_planner_passes_grace_to_every_machine():
    views = [view(name="p-a-1", heartbeat_at=T0 + 100), view(name="p-a-2", heartbeat_at=T0 + 100,
                                                             state=S.RUNNING)]
    without = planner.plan(LIM, {"p-a": HB}, views, {}, T0 + 201)
    assert sorted(d.name for d in without.plan.deletes) == ["p-a-1", "p-a-2"]
    graced = planner.plan(LIM, {"p-a": HB}, views, {}, T0 + 201, endpoint_up_since=T0 + 150)
    assert graced.plan.deletes == ()


def test_uptime_roundtrip(tmp_path):
    assert uptime.up_since(tmp_path) is None
    uptime.record_up(tmp_path, T0, "http://127.0.0.1:8450", "127.0.0.1:8450")
    assert uptime.up_since(tmp_path) == T0
    uptime.record_up(tmp_path, T0 + 5, "http://127.0.0.1:8450", "127.0.0.1:8450")
    assert uptime.up_since(tmp_path) == T0 + 5
    (tmp_path / uptime.FILE).write_text("{not json")
    assert uptime.up_since(tmp_path) is None
