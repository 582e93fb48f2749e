"""Read jobs from a Standard Workload Format trace (the Parallel Workloads Archive's format).

One job a line, 18 whitespace-separated numbers, `-1` for unknown; lines
starting with `;` are the header.  We use field 2 (submit time), 4 (run
time), 5 (allocated processors, or field 8, requested, when field 5 is not
positive) and 13 (group, which for grid traces is the virtual organisation:
a vacuum *project*).  Jobs with no run time (cancelled, unknown) are skipped.
Times are taken from the trace's first job, not from its `UnixStartTime`
(cleaned traces start long after it).

Used by `workload` for `{"kind": "swf"}` items.  Reference and citation
rules: docs/scenarios.md, vacagent/sim/scenarios/traces/NOTICE.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator


class TraceError(ValueError):
    """A trace line that is not SWF: carries file and line."""


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        yield from f


def jobs(
    path: Path, groups: set[int] | None, start: float, end: float
) -> Iterator[tuple[float, int, float]]:
    """(seconds after `start`, processors, run seconds) of the jobs of `groups`
    submitted in [start, end) seconds after the trace's first job."""
    first: float | None = None
    for number, line in enumerate(_lines(path), 1):
        if line.startswith(";") or not line.strip():
            continue
        fields = line.split()
        try:
            if len(fields) < 13:
                raise ValueError(f"{len(fields)} fields, SWF has 18")
            submit, run = float(fields[1]), float(fields[3])
            processors = int(fields[4]) if int(fields[4]) > 0 else int(fields[7])
            group = int(fields[12])
        except ValueError as e:
            raise TraceError(f"{path}:{number}: not an SWF job line: {e}") from None
        if first is None:
            first = submit
        at = submit - first
        if at >= end:
            return  # SWF files are sorted by submit time
        if at < start or run <= 0 or processors <= 0:
            continue
        if groups is None or group in groups:
            yield at - start, processors, run
