"""The only place vacagent reads the time.

The daemon owns a `SystemClock`; tests and the simulator use `FakeClock`.
Everything else receives `now` as an argument (see docs/architecture.md).
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back: for timing calls, never for decisions."""

    def sleep(self, seconds: float, until: threading.Event | None = None) -> bool:
        """Wait; return True early if `until` is set."""


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

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def sleep(self, seconds: float, until: threading.Event | None = None) -> bool:
        if until is not None and until.is_set():
            return True
        self._now += max(0.0, seconds)
        return False
