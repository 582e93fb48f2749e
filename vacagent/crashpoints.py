"""Named crash points: a test-only switch that kills the daemon at one exact step.

With `VACAGENT_CRASH_AT=<point>` in its environment, the process exits at
once (`os._exit`, no cleanup, like kill -9) the first time it reaches that
point, so every crash window of intent-before-action is tested on purpose
rather than by luck (tests/test_crashpoints.py, benchmarks/chaos.py).
Unset (always, in production), `reached` is a function that does nothing.

The points, in the order a machine meets them (docs/architecture.md):
"""

from __future__ import annotations

import os

EXIT_STATUS = 86  # what a crashed process exits with: tests tell it from a real failure

POINTS = {
    "after_intent": "machine directory and record written, backend create not called",
    "after_create": "backend create returned, record not updated",
    "before_delete": "deletion recorded (deleting_since, outcome), backend delete not called",
    "after_delete": "backend delete asked, the machine not yet gone",
    "after_close_journal": "closing journaled (closing/<name>.json), record still open",
    "after_finished": "machine directory moved to finished/, accounting line not written",
    "mid_append": "half of an accounting line written",
    "after_accounting": "accounting line written, closing journal not yet removed",
    "after_apel_archive": "APEL record staged and archived, not yet published to outgoing",
    "after_apel_outgoing": "APEL record published to outgoing, closing journal not yet removed",
}
__doc__ += "".join(f"\n- `{name}`: {what}" for name, what in POINTS.items()) + "\n"

_AT = os.environ.get("VACAGENT_CRASH_AT") or None
if _AT is not None and _AT not in POINTS:
    raise SystemExit(f"VACAGENT_CRASH_AT={_AT}: not a crash point (one of: {', '.join(POINTS)})")


def _crash(point: str) -> None:
    """Exit at once if `point` is the configured crash point."""
    if point == _AT:
        os._exit(EXIT_STATUS)


def _nothing(point: str) -> None:
    """No crash point configured: nothing to do."""


reached = _crash if _AT is not None else _nothing


def armed(point: str) -> bool:
    """Is `point` the configured crash point?  For steps that crash half-way (mid_append)."""
    return point == _AT
