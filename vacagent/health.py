"""`vacagent health`: the lab's health for one ISO week, compared with another, and whether the two compare.

From the state directory alone (so it works on a bare host, without
Prometheus): the accounting lines of machines created in the week, and the
decision records of its cycles.

    boot latency        started - created, median and p95 (nearest rank), machines that ran
    abort, fizzle rate  per machinetype: aborted (resp. fizzled) / machines created in the week
    useful fraction     the ledger over the week (docs/ledger.md)
    cloud API           per backend operation: calls, error rate, mean and max seconds
                        (the `api` summaries of the decision records)
    heartbeats          late machine-cycles / checked machine-cycles, largest age seen
    backoff             per machinetype, time in backoff: the gap to the next cycle of each
                        cycle that found it in backoff (a gap is counted up to 10 cycles)
    refusals            creates refused for capacity and for quota (API outcomes), and
                        machines the platform ended for capacity or quota (accounting causes)

The verdict: two weeks compare when no figure moved past its threshold
(`THRESHOLDS`, docs/operations.md); otherwise it names every figure that
moved, from what to what.  Neighbours: `state.history`, `usage`, `cli`.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

from vacagent import ledger
from vacagent.state import history

WEEK = 7 * 86400
GAP_CYCLES = 10  # a gap between two cycles longer than this many typical cycles: the daemon was down
MIN_MACHINES = 10  # rates on fewer machines (calls) than this are shown, not compared
MIN_CALLS = 20

# figure kind -> (absolute threshold, relative threshold): a figure moved when it changed by more than both.
THRESHOLDS = {
    "boot_median": (30.0, 0.5),
    "boot_p95": (60.0, 0.5),
    "rate": (0.10, 0.0),  # abort, fizzle, heartbeat-late and refusal rates: 10 points
    "api_error_rate": (0.05, 0.0),
    "api_latency": (1.0, 1.0),  # mean seconds: +1 s and doubled
    "backoff": (3600.0, 0.5),
    "useful": (0.05, 0.0),
}


def week_range(week: str) -> tuple[float, float]:
    """'2026-W48' -> [Monday 00:00 UTC, next Monday)."""
    try:
        year, number = week.upper().split("-W")
        monday = date.fromisocalendar(int(year), int(number), 1)
    except ValueError:
        raise ValueError(f"{week!r} is not an ISO week (YYYY-Www, e.g. 2026-W48)") from None
    start = datetime(monday.year, monday.month, monday.day, tzinfo=timezone.utc).timestamp()
    return start, start + WEEK


def week_of(t: float) -> str:
    year, number, _ = datetime.fromtimestamp(t, timezone.utc).isocalendar()
    return f"{year}-W{number:02d}"


def previous_week(week: str) -> str:
    return week_of(week_range(week)[0] - WEEK / 2)


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _machines(lines: Iterable[dict[str, Any]], start: float, end: float) -> dict[str, Any]:
    boots: list[float] = []
    per_mt: dict[str, dict[str, int]] = {}
    causes = {"capacity": 0, "quota": 0}
    for line in lines:
        created = line.get("created")
        if not isinstance(created, (int, float)) or not start <= created < end:
            continue
        if line.get("started") is not None:
            boots.append(float(line["started"]) - created)
        counts = per_mt.setdefault(str(line.get("machinetype")), {"machines": 0, "aborted": 0, "fizzled": 0})
        counts["machines"] += 1
        counts["aborted"] += bool(line.get("aborted"))
        counts["fizzled"] += bool(line.get("fizzled"))
        if line.get("cause") in causes:
            causes[line["cause"]] += 1
    return {
        "boot_seconds": {"machines": len(boots), "median": _p(boots, 0.5), "p95": _p(boots, 0.95)},
        "machinetypes": {mt: {**c, "abort_rate": c["aborted"] / c["machines"], "fizzle_rate": c["fizzled"] / c["machines"]}
                         for mt, c in sorted(per_mt.items())},
        "ended_by_platform": causes,
    }


def _cycles(records: Iterable[tuple[str, dict[str, Any]]], start: float, end: float) -> dict[str, Any]:
    by_space: dict[str, list[dict[str, Any]]] = {}
    for space, record in records:
        t = record.get("time")
        if isinstance(t, (int, float)) and start <= t < end:
            by_space.setdefault(space, []).append(record)
    api: dict[str, dict[str, Any]] = {}
    heartbeats = {"checked": 0, "late": 0, "max_age": None}
    backoff: dict[str, float] = {}
    cycles = 0
    for space, cut in by_space.items():
        cut.sort(key=lambda r: r["time"])
        cycles += len(cut)
        gaps = [b["time"] - a["time"] for a, b in zip(cut, cut[1:])]
        cap = GAP_CYCLES * (_p(gaps, 0.5) or 0.0)
        for k, record in enumerate(cut):
            for operation, entry in (record.get("api") or {}).items():
                into = api.setdefault(operation, {"calls": 0, "errors": 0, "outcomes": {}, "seconds": 0.0,
                                                  "max_seconds": 0.0})
                into["calls"] += entry.get("calls", 0)
                for outcome, n in entry.get("outcomes", {}).items():
                    into["outcomes"][outcome] = into["outcomes"].get(outcome, 0) + n
                    into["errors"] += n if outcome != "ok" else 0
                into["seconds"] += entry.get("seconds", 0.0)
                into["max_seconds"] = max(into["max_seconds"], entry.get("max_seconds", 0.0))
            for entry in (record.get("heartbeats") or {}).values():
                heartbeats["checked"] += entry.get("machines", 0)
                heartbeats["late"] += entry.get("late", 0)
                age = entry.get("max_age")
                if age is not None:
                    heartbeats["max_age"] = max(heartbeats["max_age"] or 0.0, age)
            gap = min(gaps[k], cap) if k < len(gaps) else 0.0
            for mt in record.get("backoff") or {}:
                backoff[mt] = backoff.get(mt, 0.0) + gap
    for entry in api.values():
        entry["error_rate"] = entry["errors"] / entry["calls"] if entry["calls"] else None
        entry["mean_seconds"] = entry["seconds"] / entry["calls"] if entry["calls"] else None
    create = api.get("create", {"calls": 0, "outcomes": {}})
    refusals = {kind: create["outcomes"].get(kind, 0) for kind in ("capacity", "quota")}
    return {
        "cycles": cycles,
        "api": dict(sorted(api.items())),
        "heartbeats": {**heartbeats, "late_rate": heartbeats["late"] / heartbeats["checked"]
                       if heartbeats["checked"] else None},
        "backoff_seconds": dict(sorted(backoff.items())),
        "refusals": {**refusals, "creates": create["calls"],
                     **{f"{k}_rate": (v / create["calls"] if create["calls"] else None) for k, v in refusals.items()}},
    }


def week_health(state_dir: Path, week: str, now: float) -> dict[str, Any]:
    start, end = week_range(week)
    reading = history.Reading()
    lines = list(history.accounting(state_dir, reading, start))
    report = {"week": week, "start": start, "end": end, **_machines(lines, start, end),
              **_cycles(history.decisions(state_dir, reading), start, end)}
    total = dict.fromkeys(ledger.PHASES, 0.0)
    for line in lines:
        ledger.add(total, ledger.seconds(ledger.clip(ledger.spans_from_accounting(line), start, end)),
                   float(line.get("processors") or 1))
    for machine in history.open_machines(state_dir, now, reading):
        ledger.add(total, ledger.seconds(ledger.clip(machine.spans, start, end)), machine.processors)
    report["useful_fraction"] = ledger.fraction(total)
    report["notes"] = reading.skipped
    return report


def figures(report: dict[str, Any]) -> dict[str, tuple[str, float | None, int]]:
    """name -> (threshold kind, value, sample size) of every figure the verdict compares."""
    out: dict[str, tuple[str, float | None, int]] = {}
    boot = report["boot_seconds"]
    out["boot latency median (s)"] = ("boot_median", boot["median"], boot["machines"])
    out["boot latency p95 (s)"] = ("boot_p95", boot["p95"], boot["machines"])
    for mt, c in report["machinetypes"].items():
        out[f"{mt} abort rate"] = ("rate", c["abort_rate"], c["machines"])
        out[f"{mt} fizzle rate"] = ("rate", c["fizzle_rate"], c["machines"])
    for operation, entry in report["api"].items():
        out[f"API {operation} error rate"] = ("api_error_rate", entry["error_rate"], entry["calls"])
        out[f"API {operation} mean latency (s)"] = ("api_latency", entry["mean_seconds"], entry["calls"])
    hb = report["heartbeats"]
    out["heartbeat late rate"] = ("rate", hb["late_rate"], hb["checked"])
    for mt, seconds in report["backoff_seconds"].items():
        out[f"{mt} time in backoff (s)"] = ("backoff", seconds, MIN_MACHINES)
    refusals = report["refusals"]
    for kind in ("capacity", "quota"):
        out[f"{kind} refusal rate"] = ("rate", refusals[f"{kind}_rate"], refusals["creates"])
    out["useful fraction"] = ("useful", report["useful_fraction"], MIN_MACHINES)
    return out


def moved(kind: str, before: float, after: float) -> bool:
    absolute, relative = THRESHOLDS[kind]
    change = abs(after - before)
    return change > absolute and (relative == 0 or change > relative * abs(before))


def compare(week: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """The verdict on `week` against `other`: which figures moved past their thresholds."""
    mine, theirs = figures(week), figures(other)
    changes, unsure = [], []
    for name in sorted(set(mine) | set(theirs)):
        kind = (mine.get(name) or theirs[name])[0]
        _, before, n_before = theirs.get(name, (kind, None, 0))
        _, after, n_after = mine.get(name, (kind, None, 0))
        if kind == "backoff":  # no backoff at all is a figure too: 0 s
            before, after = before or 0.0, after or 0.0
            n_before = n_after = MIN_MACHINES
        minimum = MIN_CALLS if kind.startswith("api") else MIN_MACHINES
        if before is None or after is None or min(n_before, n_after) < minimum:
            if before is not None or after is not None:
                unsure.append(name)
            continue
        if moved(kind, before, after):
            change = after - before
            relative = f", {change / before:+.0%}" if before else ""
            changes.append({"figure": name, "from": before, "to": after, "change": change,
                            "text": f"{name} moved from {_fmt(before)} to {_fmt(after)} ({change:+.3g}{relative})"})
    return {"comparable": not changes, "moved": changes, "not_compared": unsure,
            "week": week["week"], "compared_with": other["week"]}


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def format_report(week: dict[str, Any], other: dict[str, Any] | None, verdict: dict[str, Any] | None) -> list[str]:
    lines = []
    for report in [week] + ([other] if other else []):
        boot = report["boot_seconds"]
        lines += [f"week {report['week']}: {report['cycles']} cycles, useful fraction {_pct(report['useful_fraction'])}",
                  f"  boot latency: median {_fmt(boot['median'])} s, p95 {_fmt(boot['p95'])} s "
                  f"({boot['machines']} machines)"]
        for mt, c in report["machinetypes"].items():
            lines.append(f"  {mt}: {c['machines']} machines, abort rate {_pct(c['abort_rate'])}, "
                         f"fizzle rate {_pct(c['fizzle_rate'])}, in backoff "
                         f"{_fmt(report['backoff_seconds'].get(mt, 0.0) / 3600)} h")
        for operation, e in report["api"].items():
            lines.append(f"  API {operation}: {e['calls']} calls, error rate {_pct(e['error_rate'])}, "
                         f"mean {_fmt(e['mean_seconds'])} s, max {_fmt(e['max_seconds'])} s, "
                         + ", ".join(f"{k} {v}" for k, v in sorted(e["outcomes"].items())))
        hb, refusals = report["heartbeats"], report["refusals"]
        lines.append(f"  heartbeats: {hb['late']} late of {hb['checked']} checked ({_pct(hb['late_rate'])}), "
                     f"largest age {_fmt(hb['max_age'])} s")
        ended = report["ended_by_platform"]
        lines.append(f"  refusals: capacity {refusals['capacity']}, quota {refusals['quota']} of "
                     f"{refusals['creates']} creates; ended by the platform: capacity {ended['capacity']}, "
                     f"quota {ended['quota']}")
        for note in report["notes"]:
            lines.append(f"  note: {note}")
    if verdict is not None:
        if verdict["comparable"]:
            lines.append(f"verdict: {verdict['week']} and {verdict['compared_with']} are comparable "
                         "(no figure moved past its threshold)")
        else:
            lines.append(f"verdict: {verdict['week']} and {verdict['compared_with']} are NOT comparable:")
            lines += [f"  {c['text']}" for c in verdict["moved"]]
        if verdict["not_compared"]:
            lines.append("  too few samples to compare: " + ", ".join(verdict["not_compared"]))
    return lines
