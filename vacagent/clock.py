"""The only place vacagent reads the time.

The daemon owns a `SteadyClock` (wall-clock time that never steps); tests and
the simulator use `FakeClock`; `SystemClock` is the plain wall clock.
Everything else receives `now` as an argument (see docs/architecture.md).
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back: for timing calls, never for decisions."""

    def sleep(self, seconds: float, until: threading.Event | None = None) -> bool:
        """Wait (on the monotonic clock); return True early if `until` is set."""

    def from_wall(self, t: float) -> float:
        """This clock's time for a time stamped by the wall clock (a file's mtime)."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float, until: threading.Event | None = None) -> bool:
        if until is None:
            time.sleep(max(0.0, seconds))
            return False
        return until.wait(max(0.0, seconds))

    def from_wall(self, t: float) -> float:
        return t


STEP_TOLERANCE = 5.0  # seconds: a wall clock this far from vacagent's time has stepped
SLEW = 0.01  # after a step, vacagent's time moves toward the wall clock by at most 1% of elapsed time


class SteadyClock(SystemClock):
    """The daemon's clock: wall-clock time that never steps.

    `now()` runs on the monotonic clock and follows the wall clock while the
    two agree within `STEP_TOLERANCE`.  When the wall clock steps (an
    operator's `date -s`, a late NTP correction) by more, `on_step(seconds)`
    is called once and vacagent's time slews toward the wall clock by at most
    `SLEW` of the time elapsed: heartbeat, wallclock and fizzle judgements are
    off by at most 1%, never by the step, and no recorded run time gains or
    loses it.  `from_wall` converts a time another program stamped by the wall
    clock (a file's mtime) into this clock's time.
    """

    def __init__(self, on_step: Callable[[float], None] | None = None,
                 wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic):
        self._wall, self._mono, self._on_step = wall, mono, on_step
        self._lock = threading.Lock()
        self._last = mono()
        self._offset = wall() - self._last  # now() = monotonic + offset
        self._reported = 0.0  # the wall clock's error last reported (0: none)

    def now(self) -> float:
        with self._lock:
            mono, wall = self._mono(), self._wall()
            error = wall - (mono + self._offset)
            if abs(error) <= STEP_TOLERANCE:
                self._offset += error
                self._reported = 0.0
            else:
                if abs(error - self._reported) > STEP_TOLERANCE:
                    self._reported = error
                    if self._on_step is not None:
                        self._on_step(error)
                allowed = SLEW * max(0.0, mono - self._last)
                self._offset += max(-allowed, min(allowed, error))
            self._last = mono
            return mono + self._offset

    def monotonic(self) -> float:
        return self._mono()

    def from_wall(self, t: float) -> float:
        return t - (self._wall() - self.now())


def cpu_seconds() -> float:
    """CPU time of this process, for reports of what a run cost (never for decisions)."""
    return time.process_time()


class FakeClock:
    """A clock that only moves when told to: `sleep` advances it at once."""

    def __init__(self, start: float = 1_700_000_000.0):
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now

    def from_wall(self, t: float) -> float:
        return t

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def sleep(self, seconds: float, until: threading.Event | None = None) -> bool:
        if until is not None and until.is_set():
            return True
        self._now += max(0.0, seconds)
        return False
