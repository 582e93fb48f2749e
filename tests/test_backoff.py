"""Backoff arithmetic: plain date arithmetic on a fake timeline."""

import pytest

from vacagent import backoff
from vacagent.backoff import FeedbackState, Gate

from conftest import T0, mt

MT = mt(backoff_seconds=100)  # cap 800


@pytest.mark.parametrize(
    "aborts, expected",
    [(1, 100), (2, 200), (3, 400), (4, 800), (5, 800), (40, 800), (10_000, 800)],
)
def test_delay_doubles_to_cap(aborts, expected):
    assert backoff.delay(MT, aborts) == expected


def test_explicit_cap():
    assert backoff.delay(mt(backoff_seconds=100, max_backoff_seconds=250), 3) == 250


def test_zero_backoff_never_blocks():
    m = mt(backoff_seconds=0)
    s = backoff.record_abort(FeedbackState(), m, T0, T0 - 5, "300 x")
    assert backoff.gate(s, T0) is Gate.PROBE


@pytest.mark.parametrize(
    "now, gate",
    [(T0, Gate.BACKOFF), (T0 + 99.9, Gate.BACKOFF), (T0 + 100, Gate.PROBE), (T0 + 5000, Gate.PROBE)],
)
def test_gate_after_first_abort(now, gate):
    s = backoff.record_abort(FeedbackState(), MT, T0, T0 - 500, "300 No more work available")
    assert s.consecutive_aborts == 1 and s.backoff_until == T0 + 100
    assert backoff.gate(s, now) is gate


def test_fresh_state_is_open():
    assert backoff.gate(FeedbackState(), T0) is Gate.OPEN


def test_a_wave_of_aborts_does_not_compound():
    s = backoff.record_abort(FeedbackState(), MT, T0, T0 - 500, "300")
    # 49 more machines of the same wave (created before the first abort) stop over 50 s
    for i in range(1, 50):
        s = backoff.record_abort(s, MT, T0 + i, T0 - 500 + i, "300")
    assert s.consecutive_aborts == 1
    assert s.backoff_until == T0 + 49 + 100  # kept running from the last abort
    assert s.wave_start == T0


def test_probe_abort_escalates_and_old_wave_does_not():
    s = backoff.record_abort(FeedbackState(), MT, T0, T0 - 500, "300")
    probe_created = T0 + 100
    # an old machine aborting while the probe runs extends but does not escalate
    s = backoff.record_abort(s, MT, T0 + 120, T0 - 400, "300")
    assert s.consecutive_aborts == 1
    s = backoff.record_abort(s, MT, T0 + 130, probe_created, "300")
    assert s.consecutive_aborts == 2
    assert s.backoff_until == T0 + 130 + 200
    assert s.wave_start == T0 + 130


def test_failed_creation_escalates():
    s = backoff.record_abort(FeedbackState(), MT, T0, T0, "create failed")
    s = backoff.record_abort(s, MT, T0 + 100, T0 + 100, "create failed")
    assert s.consecutive_aborts == 2


@pytest.mark.parametrize(
    "created, reset",
    [(T0 - 1, False), (T0, True), (T0 + 150, True)],
)
def test_success_resets_only_for_machines_after_the_wave(created, reset):
    s = backoff.record_abort(FeedbackState(), MT, T0, T0 - 500, "300")
    after = backoff.record_success(s, created)
    assert (after.consecutive_aborts == 0) is reset
    assert (backoff.gate(after, T0 + 1) is Gate.OPEN) is reset
    if reset:
        assert after.last_message == "300"  # kept for operators


def test_success_on_open_state_changes_nothing():
    s = FeedbackState()
    assert backoff.record_success(s, T0) is s
