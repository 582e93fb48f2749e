"""`vacagent usage`: how much of the lab's time was useful, per project and lab-wide, and where the rest went.

From the state directory alone: the ledger spans of every finished machine
(accounting lines) and of every machine still open (its record and its
`job_seconds`, up to now), clipped to the period [since, until).  The useful
fraction (working ÷ all phases, in processor-seconds) is set against the
lab's steps of 25%, 50% and 75%; the other phases say why it is what it is.

A *project* is a machinetype's name up to its first hyphen (`lhcb-prod` and
`lhcb-mc` are project `lhcb`), the Vcycle habit of naming machinetypes
after their experiment.  Neighbours: `ledger` (the definition),
`state.history` (the reading), `usage_plot` (the picture), `cli`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from vacagent import ledger
from vacagent.model import iso
from vacagent.state import history

BY = ("project", "machinetype", "space")
STEPS = (0.25, 0.50, 0.75)
LAB = "lab"


def project_of(machinetype: str) -> str:
    return machinetype.split("-", 1)[0]


@dataclass(frozen=True)
class Piece:
    """One machine's spans, with what it is grouped by."""

    space: str
    machinetype: str
    processors: int
    spans: tuple[ledger.Span, ...]

    def key(self, by: str) -> str:
        if by == "space":
            return self.space
        if by == "machinetype":
            return self.machinetype
        return project_of(self.machinetype)


def pieces(state_dir: Path, since: float, until: float, now: float, reading: history.Reading) -> list[Piece]:
    """Every machine with a part of its life in [since, until)."""
    out = []
    without_ledger = 0
    for line in history.accounting(state_dir, reading, since):
        spans = ledger.clip(ledger.spans_from_accounting(line), since, until)
        if "ledger_spans" not in line:
            without_ledger += 1
        if spans:
            out.append(Piece(str(line.get("space", "")), str(line.get("machinetype", "")),
                             int(line.get("processors") or 1), spans))
    if without_ledger:
        reading.skipped.append(f"{without_ledger} accounting lines written before the ledger (no ledger_spans)")
    for machine in history.open_machines(state_dir, now, reading):
        spans = ledger.clip(machine.spans, since, until)
        if spans:
            out.append(Piece(machine.space, machine.machinetype, machine.processors, spans))
    return out


def step(fraction: float | None) -> str:
    if fraction is None:
        return "-"
    reached = [s for s in STEPS if fraction >= s]
    ahead = [s for s in STEPS if fraction < s]
    text = f">={reached[-1]:.0%}" if reached else f"<{STEPS[0]:.0%}"
    return text + (f" (next {ahead[0]:.0%})" if ahead else "")


def _entry(processor_seconds: dict[str, float], machines: int) -> dict[str, Any]:
    fraction = ledger.fraction(processor_seconds)
    total = sum(processor_seconds.values())
    return {
        "useful_fraction": fraction,
        "step": step(fraction),
        "machines": machines,
        "processor_seconds": {k: round(v, 3) for k, v in processor_seconds.items()},
        "shares": {k: (v / total if total > 0 else None) for k, v in processor_seconds.items()},
    }


def summarize(found: Iterable[Piece], by: str, since: float, until: float) -> dict[str, Any]:
    groups: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    lab = dict.fromkeys(ledger.PHASES, 0.0)
    n = 0
    for piece in found:
        cut = ledger.seconds(piece.spans)
        key = piece.key(by)
        ledger.add(groups.setdefault(key, dict.fromkeys(ledger.PHASES, 0.0)), cut, piece.processors)
        ledger.add(lab, cut, piece.processors)
        counts[key] = counts.get(key, 0) + 1
        n += 1
    return {
        "since": since, "until": until, "since_iso": iso(since), "until_iso": iso(until), "by": by,
        "steps": list(STEPS),
        "groups": {key: _entry(groups[key], counts[key]) for key in sorted(groups)},
        LAB: _entry(lab, n),
    }


def series(found: Iterable[Piece], by: str, since: float, until: float, buckets: int = 48
           ) -> tuple[list[float], dict[str, dict[str, list[float]]]]:
    """Bucket starts, and per group and phase the processor-seconds in each bucket."""
    width = (until - since) / buckets
    starts = [since + k * width for k in range(buckets)]
    out: dict[str, dict[str, list[float]]] = {}
    for piece in found:
        per_phase = out.setdefault(piece.key(by), {p: [0.0] * buckets for p in ledger.PHASES})
        for span in piece.spans:
            first = max(0, int((span.start - since) // width))
            last = min(buckets - 1, int((span.end - since) // width))
            for k in range(first, last + 1):
                a, b = max(span.start, starts[k]), min(span.end, starts[k] + width)
                if b > a:
                    per_phase[span.phase][k] += (b - a) * piece.processors
    return starts, dict(sorted(out.items()))


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:,.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def format_report(report: dict[str, Any], skipped: list[str]) -> list[str]:
    lines = [f"useful time {report['since_iso']} .. {report['until_iso']}, by {report['by']} "
             f"(processor-hours; steps {', '.join(f'{s:.0%}' for s in report['steps'])})"]
    header = [report["by"], "useful", "step", "machines", *ledger.PHASES, "total"]
    rows = []
    for name, entry in [*report["groups"].items(), (LAB, report[LAB])]:
        ps = entry["processor_seconds"]
        rows.append([name, _pct(entry["useful_fraction"]), entry["step"], str(entry["machines"]),
                     *(_hours(ps[p]) for p in ledger.PHASES), _hours(sum(ps.values()))])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    lab = report[LAB]
    if lab["useful_fraction"] is not None:
        rest = sorted(((v, k) for k, v in lab["shares"].items() if k != "working" and v), reverse=True)
        lines.append("the rest of the lab's time: " + (", ".join(f"{k} {_pct(v)}" for v, k in rest) or "none"))
    else:
        lines.append("no machine time in this period")
    for problem in skipped:
        lines.append(f"note: {problem}")
    return lines


def parse_time(text: str) -> float:
    """A date (2026-11-23, midnight UTC) or an ISO 8601 time (2026-11-23T06:00:00Z; UTC if no zone)."""
    from datetime import datetime, timezone

    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def usage(state_dir: Path, since: float, until: float, now: float, by: str = "project"
          ) -> tuple[dict[str, Any], list[Piece], list[str]]:
    """(the report, the pieces it was made of, what could not be read)."""
    reading = history.Reading()
    found = pieces(state_dir, since, until, now, reading)
    return summarize(found, by, since, until), found, reading.skipped
