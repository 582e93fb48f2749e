"""Every classification rule of feedback.assess, with its boundaries."""

import pytest

from vacagent.feedback import Verdict, assess, is_abort
from vacagent.model import Cause, MachineState as S

from conftest import T0, limits, mt, view

MT = mt(fizzle_seconds=60, max_wallclock_seconds=1000)
HB = mt(fizzle_seconds=60, max_wallclock_seconds=1000, heartbeat_file="heartbeat", heartbeat_seconds=100)
HB0 = mt(fizzle_seconds=60, max_wallclock_seconds=1000, heartbeat_file="heartbeat", heartbeat_seconds=0)
LIM = limits(max_starting_seconds=3600, shutdown_grace_seconds=30)


@pytest.mark.parametrize(
    "code, ran, aborted",
    [
        (None, 59.9, True), (None, 60, False), (100, 10, True), (100, 600, False),
        (200, 600, False), (299, 600, False), (300, 600, True), (450, 600, True),
        (699, 600, True), (700, 600, False), (700, 10, True),
    ],
)
def test_abort_definition(code, ran, aborted):
    assert is_abort(code, ran, 60) is aborted


@pytest.mark.parametrize(
    "desc, v, machinetype, now, verdict, message, aborted",
    [
        ("starting, young", view(state=S.STARTING, started=None), MT, T0 + 3600, Verdict.STARTING, None, None),
        ("starting past max_starting_seconds", view(state=S.STARTING, started=None), MT, T0 + 3600.1,
         Verdict.EXPIRED, "700 Failed to start", True),
        ("unknown state counts as starting", view(state=S.UNKNOWN, started=None), MT, T0 + 3601,
         Verdict.EXPIRED, "700 Failed to start", True),
        ("running, young", view(), MT, T0 + 10, Verdict.RUNNING, None, None),
        ("running at max_wallclock", view(), MT, T0 + 1000, Verdict.RUNNING, None, None),
        ("running past max_wallclock", view(), MT, T0 + 1000.5, Verdict.EXPIRED,
         "700 Exceeded max_wallclock_seconds", False),
        ("stopped with 300 after long run", view(state=S.STOPPED, stopped=T0 + 500,
         shutdown_message="300 No more work available", shutdown_message_at=T0 + 499), MT, T0 + 510,
         Verdict.FINISHED, "300 No more work available", True),
        ("stopped with 200 after long run", view(state=S.STOPPED, stopped=T0 + 500,
         shutdown_message="200 Intended work completed ok"), MT, T0 + 510,
         Verdict.FINISHED, "200 Intended work completed ok", False),
        ("stopped with 200 before fizzle", view(state=S.STOPPED, stopped=T0 + 30,
         shutdown_message="200 ok"), MT, T0 + 40, Verdict.FINISHED, "200 ok", True),
        ("stopped silently after fizzle", view(state=S.STOPPED, stopped=T0 + 61), MT, T0 + 70,
         Verdict.FINISHED, "200 Stopped by itself without a shutdown message", False),
        ("stopped silently before fizzle", view(state=S.STOPPED, stopped=T0 + 59), MT, T0 + 70,
         Verdict.FINISHED, "700 Stopped by itself before fizzle_seconds without a shutdown message", True),
        ("failed before starting", view(state=S.FAILED, started=None), MT, T0 + 5,
         Verdict.FINISHED, "700 Failed to start", True),
        ("gone without starting", view(state=S.GONE, started=None), MT, T0 + 5,
         Verdict.FINISHED, "700 Failed to start", True),
        ("gone after running", view(state=S.GONE), MT, T0 + 500, Verdict.FINISHED, "", False),
        ("shutdown message, within grace", view(shutdown_message="300 No more work",
         shutdown_message_at=T0 + 100), MT, T0 + 129, Verdict.RUNNING, None, None),
        ("shutdown message, grace over", view(shutdown_message="300 No more work",
         shutdown_message_at=T0 + 100), MT, T0 + 130, Verdict.FINISHED, "300 No more work", True),
        ("unparsable shutdown message is ignored", view(shutdown_message="bye",
         shutdown_message_at=T0 + 100), MT, T0 + 500, Verdict.RUNNING, None, None),
        ("heartbeat before fizzle is not checked", view(), HB, T0 + 59, Verdict.RUNNING, None, None),
        ("no heartbeat yet, within heartbeat_seconds", view(), HB, T0 + 100, Verdict.RUNNING, None, None),
        ("no heartbeat after heartbeat_seconds", view(), HB, T0 + 100.1, Verdict.EXPIRED,
         "700 Heartbeat not updated", False),
        ("fresh heartbeat", view(heartbeat_at=T0 + 400), HB, T0 + 500, Verdict.RUNNING, None, None),
        ("heartbeat exactly heartbeat_seconds old", view(heartbeat_at=T0 + 400), HB, T0 + 500,
         Verdict.RUNNING, None, None),
        ("stale heartbeat", view(heartbeat_at=T0 + 400), HB, T0 + 500.1, Verdict.EXPIRED,
         "700 Heartbeat not updated", False),
        ("heartbeat_seconds 0: file must exist", view(), HB0, T0 + 61, Verdict.EXPIRED,
         "700 Heartbeat not updated", False),
        ("heartbeat_seconds 0: old file is fine", view(heartbeat_at=T0 + 1), HB0, T0 + 900,
         Verdict.RUNNING, None, None),
        ("unknown machinetype", view(machinetype="gone"), None, T0 + 10, Verdict.EXPIRED,
         "700 Machinetype no longer configured", None),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_assess(desc, v, machinetype, now, verdict, message, aborted):
    a = assess(v, machinetype, LIM, now)
    assert a.verdict is verdict
    if message is None:
        assert a.outcome is None
    else:
        assert a.outcome.message == message
        if aborted is not None:
            assert a.outcome.aborted is aborted


def test_machine_message_is_never_overwritten():
    v = view(shutdown_message="600 Grid-wide problem", shutdown_message_at=T0 + 1500)
    a = assess(v, MT, LIM, T0 + 1001)  # past wallclock, message within grace
    assert a.verdict is Verdict.EXPIRED
    assert a.outcome.message == "600 Grid-wide problem"
    assert a.ours is None  # nothing of ours to write
    assert a.outcome.reason == "700 Exceeded max_wallclock_seconds"


def test_our_message_when_machine_left_none():
    a = assess(view(), MT, LIM, T0 + 1001)
    assert str(a.ours) == "700 Exceeded max_wallclock_seconds"


def test_passed_fizzle_boundary():
    assert not assess(view(), MT, LIM, T0 + 59.9).passed_fizzle
    assert assess(view(), MT, LIM, T0 + 60).passed_fizzle


def test_pod_termination_message_counts_as_shutdown_message():
    v = view(state=S.STOPPED, stopped=T0 + 300, shutdown_message="500 No network")
    assert assess(v, MT, LIM, T0 + 301).outcome.code == 500


@pytest.mark.parametrize(
    "desc, v, message, aborted, cause",
    [
        ("reclaimed early, no message: 100, not an abort",
         view(state=S.STOPPED, stopped=T0 + 10, cause=Cause.RECLAIMED), "100 Shutdown as requested by the VM's host/hypervisor",
         False, "reclaimed"),
        ("reclaimed before it ran: 100, not failed to start",
         view(state=S.FAILED, started=None, cause=Cause.RECLAIMED), "100 Shutdown as requested by the VM's host/hypervisor",
         False, "reclaimed"),
        ("reclaimed, but its own 300 still says the queue was empty",
         view(state=S.STOPPED, stopped=T0 + 10, cause=Cause.RECLAIMED, shutdown_message="300 No more work"),
         "300 No more work", True, "reclaimed"),
        ("no room after acceptance: an abort, cause kept",
         view(state=S.FAILED, started=None, cause=Cause.CAPACITY), "700 Failed to start", True, "capacity"),
        ("no cause: a short silent run, an abort", view(state=S.STOPPED, stopped=T0 + 10),
         "700 Stopped by itself before fizzle_seconds without a shutdown message", True, None),
    ],
)
def test_platform_cause_decides_whom_an_end_is_charged_to(desc, v, message, aborted, cause):
    a = assess(v, MT, LIM, T0 + 20)
    assert a.verdict is Verdict.FINISHED
    assert (a.outcome.message, a.outcome.aborted, a.outcome.cause) == (message, aborted, cause), desc
