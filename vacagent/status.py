"""What operators ask the state directory: `vacagent status` and `vacagent why`.

Reads only the state directory (no backend call), so it answers at once
and works while the daemons run.  The figures are as of each space's last
cycle.  With several instances, status lists them (instances/) and each
space's lease: holder, epoch, expiry; `why` says who holds a space and when
an instance stopped acting on it because another took it over.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any, Iterable

from vacagent import backoff
from vacagent.backoff import Kind, gate
from vacagent.config import Settings
from vacagent.model import iso
from vacagent.state import formats
from vacagent.state.instances import Registry, alive
from vacagent.state.lease import SpaceLease, free
from vacagent.state.store import SpaceStore, day

RECLAIM_WINDOW_DAYS = 7  # the reclaim rate counts machines closed in the last week


def last_decisions(store: SpaceStore, count: int = 1) -> list[dict[str, Any]]:
    """The last `count` decision records of a space, newest last."""
    path = store.decisions_path
    if not path.exists():
        return []
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        chunk = min(size, max(65536, count * 16384))
        f.seek(size - chunk)
        lines = f.read().splitlines()
    if chunk < size:
        lines = lines[1:]  # the first line may be cut
    out = []
    for line in lines[-count:]:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def lease_status(settings: Settings, name: str, now: float) -> dict[str, Any] | None:
    """The space's lease in force, and what it means now (held, expired, released)."""
    try:
        lease = SpaceLease(settings.state_dir, name).read(settings.lease_seconds)
    except formats.FormatTooNew as e:
        return {"state": "unreadable", "detail": str(e)}
    if lease is None:
        return None
    state = "released" if lease.released else ("expired" if free(lease, now) else "held")
    return {"state": state, "holder": lease.holder, "epoch": lease.epoch, "renewed_at": lease.renewed_at,
            "expires_at": lease.expires_at}


def instances_status(settings: Settings, now: float) -> list[dict[str, Any]]:
    return [
        {"id": i.id, "host": i.host, "pid": i.pid, "version": i.version, "started": i.started,
         "last_seen": i.last_seen, "alive": alive(i, now, settings.lease_seconds), "stopping": i.stopping,
         "refused": list(i.refused), "endpoint": i.endpoint}
        for i in Registry(settings.state_dir).read()
    ]


def _cycles(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Decision records of cycles (not the lines saying an instance stopped acting)."""
    return [d for d in decisions if "stopped" not in d]


def warnings(store: SpaceStore) -> list[str]:
    """What an operator must look at in a space's state directory (after `records()`)."""
    found = [f"unreadable record, to be set aside by the next cycle: {why}" for why in store.damaged.values()]
    quarantine = store.root / "quarantine"
    aside = sorted(quarantine.iterdir()) if quarantine.is_dir() else []
    if store.machines_dir.is_dir():
        aside += sorted(p for p in store.machines_dir.iterdir() if p.name.startswith(".damaged-"))
    found += [f"{'feedback' if '.feedback.' in p.name else 'record'} set aside (unreadable): {p}" for p in aside]
    return found


def reclaims(settings: Settings, space: str, now: float) -> dict[str, tuple[int, int]]:
    """machinetype -> (machines closed, of which the platform reclaimed), over the accounting of the
    last RECLAIM_WINDOW_DAYS days: how often spot capacity is taken back, per machinetype."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    first = day(now - RECLAIM_WINDOW_DAYS * 86400)
    directory = settings.state_dir / "accounting"
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else ():
        if path.stem < first:
            continue
        for line in path.read_text().splitlines():
            try:
                closed = json.loads(line)
            except ValueError:
                continue
            if closed.get("space") == space:
                entry = counts[closed.get("machinetype", "")]
                entry[0] += 1
                entry[1] += closed.get("cause") == "reclaimed"
    return {mt: (n, k) for mt, (n, k) in counts.items()}


def space_status(settings: Settings, name: str, now: float) -> dict[str, Any]:
    store = SpaceStore(settings.state_dir, name, settings.site)
    try:
        return _space_status(settings, store, now)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, formats.FormatTooNew) as e:  # never a traceback
        return {"space": name, "warnings": [f"cannot read the state of space {name}: {type(e).__name__}: {e}"],
                "backend": None, "processors_limit": None, "processors": 0, "machines_total": 0,
                "last_cycle": None, "machinetypes": {}, "machines": []}


def _space_status(settings: Settings, store: SpaceStore, now: float) -> dict[str, Any]:
    name = store.space
    records = store.records()
    decisions = _cycles(last_decisions(store, 4))
    last = decisions[-1] if decisions else {}
    names = sorted(set(store.stored_machinetypes()) | {r.machinetype for r in records.values()})
    machinetypes: dict[str, Any] = {}
    by_mt: dict[str, list] = defaultdict(list)
    for record in records.values():
        by_mt[record.machinetype].append(record)
    closed = reclaims(settings, name, now)
    unreadable = []
    for mt in names:
        try:
            feedback = store.feedback(mt)
        except ValueError as e:
            unreadable.append(f"unreadable feedback, to be set aside by the next cycle: {e}")
            feedback = backoff.unknown(now, "feedback.json unreadable")
        finished, reclaimed = closed.get(mt, (0, 0))
        mine = by_mt.get(mt, [])
        states = Counter("deleting" if r.deleting_since else r.state for r in mine)
        machinetypes[mt] = {
            "machines": len(mine),
            "processors": sum(r.processors for r in mine),
            "states": dict(sorted(states.items())),
            "gate": gate(feedback, now).value,
            "backoff_until": feedback.backoff_until,
            "consecutive_aborts": feedback.consecutive_aborts,
            "backoff_kind": feedback.kind,
            "last_abort": feedback.last_message,
            "held": last.get("held", {}).get(mt),
            "closed_last_week": finished,
            "reclaimed_last_week": reclaimed,
            "reclaim_rate": round(reclaimed / finished, 3) if finished else None,
        }
    machines = [
        {
            "name": r.name,
            "machinetype": r.machinetype,
            "state": "deleting" if r.deleting_since else r.state,
            "processors": r.processors,
            "created": r.created,
            "started": r.started,
            "backend_id": r.backend_id,
        }
        for r in sorted(records.values(), key=lambda r: (r.machinetype, r.created, r.name))
    ]
    space = settings.spaces.get(name)
    return {
        "space": name,
        "backend": space.backend if space else None,
        "processors_limit": space.limits.processors_limit if space else None,
        "processors": sum(r.processors for r in records.values()),
        "machines_total": len(records),
        "last_cycle": last.get("time"),
        "lease": lease_status(settings, name, now),
        "machinetypes": machinetypes,
        "machines": machines,
        "warnings": warnings(store) + unreadable,
    }


def status(settings: Settings, now: float, only: str | None = None) -> dict[str, Any]:
    on_disk = []
    spaces_dir = settings.state_dir / "spaces"
    if spaces_dir.is_dir():
        on_disk = [p.name for p in spaces_dir.iterdir() if p.is_dir()]
    names = sorted(set(settings.spaces) | set(on_disk))
    if only:
        names = [n for n in names if n == only]
    return {
        "site": settings.site,
        "state_dir": str(settings.state_dir),
        "time": now,
        "instances": instances_status(settings, now),
        "spaces": [space_status(settings, n, now) for n in names],
    }


def _lease_line(lease: dict[str, Any] | None, now: float) -> str:
    if lease is None:
        return "never held by any instance"
    if lease["state"] == "unreadable":
        return f"lease unreadable: {lease['detail']}"
    if lease["state"] == "held":
        return (f"held by {lease['holder']} (epoch {lease['epoch']}), renewed {_age(now, lease['renewed_at'])} ago, "
                f"expires in {max(0, int(lease['expires_at'] - now))}s")
    return f"{lease['state']} by {lease['holder']} (epoch {lease['epoch']}) {_age(now, lease['expires_at'])} ago: no instance acts on it"


def _age(now: float, t: float | None) -> str:
    if t is None:
        return "-"
    s = int(now - t)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def format_status(report: dict[str, Any], machines: bool = True) -> Iterable[str]:
    now = report["time"]
    yield f"site {report['site']}  state {report['state_dir']}"
    for i in report.get("instances", []):
        how = "stopping" if i["stopping"] else ("alive" if i["alive"] else "dead")
        refused = f", refuses {','.join(i['refused'])}" if i["refused"] else ""
        yield (f"instance {i['id']}: {how}, host {i['host']} pid {i['pid']} vacagent {i['version']}, "
               f"seen {_age(now, i['last_seen'])} ago{refused}")
    if not report["spaces"]:
        yield "  no spaces have run yet"
    for space in report["spaces"]:
        yield ""
        yield (
            f"space {space['space']} ({space['backend']}): {space['machines_total']} machines, "
            f"{space['processors']}/{space['processors_limit']} processors, last cycle {_age(now, space['last_cycle'])} ago"
        )
        yield f"  lease: {_lease_line(space.get('lease'), now)}"


        for warning in space["warnings"]:
            yield f"  warning: {warning}"
        yield f"  {'MACHINETYPE':<28} {'MACHINES':>8} {'PROCS':>6}  {'STATES':<32} FEEDBACK"
        for mt, info in space["machinetypes"].items():
            states = " ".join(f"{k}={v}" for k, v in info["states"].items()) or "-"
            if info["gate"] == "backoff" and info.get("backoff_kind") == Kind.CAPACITY.value:
                fb = f"backoff until {iso(info['backoff_until'])} (the cloud refused: capacity or quota)"
            elif info["gate"] == "backoff":
                fb = f"backoff until {iso(info['backoff_until'])} ({info['consecutive_aborts']} aborts)"
            elif info["gate"] == "probe":
                fb = f"probing after {info['consecutive_aborts']} abort(s)"
            else:
                fb = "open"
            if info.get("reclaimed_last_week"):
                fb += (f"; reclaimed {info['reclaimed_last_week']}/{info['closed_last_week']} "
                       f"({info['reclaim_rate']:.0%}) in {RECLAIM_WINDOW_DAYS} days")
            yield f"  {mt:<28} {info['machines']:>8} {info['processors']:>6}  {states:<32} {fb}"
        if machines and space["machines"]:
            yield f"  {'MACHINE':<40} {'STATE':<10} {'AGE':>7} {'RUNNING':>8}  BACKEND ID"
            for m in space["machines"]:
                yield (
                    f"  {m['name']:<40} {m['state']:<10} {_age(now, m['created']):>7} "
                    f"{_age(now, m['started']):>8}  {m['backend_id']}"
                )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


WHY_HISTORY = 500  # decision records read back to tell how long a rule has held a machinetype


def rule(reason: str) -> str:
    """The rule a held reason names: its first word (`backoff`, `probe`, `looking`, `demand`, `ramp`, ...)."""
    return reason.split(None, 1)[0].rstrip(":") if reason else ""


def held_since(decisions: list[dict[str, Any]], index: int, machinetype: str) -> float:
    """When the rule that held `machinetype` in decisions[index] began holding it, as far back as recorded."""
    current = rule(decisions[index]["held"][machinetype])
    since = decisions[index]["time"]
    for d in reversed(decisions[:index]):
        reason = d.get("held", {}).get(machinetype)
        if reason is None or rule(reason) != current:
            break
        since = d["time"]
    return since


def why(settings: Settings, space: str | None, machinetype: str | None, count: int, now: float) -> Iterable[str]:
    names = [space] if space else sorted(settings.spaces)
    for name in names:
        store = SpaceStore(settings.state_dir, name, settings.site)
        yield f"space {name}: {_lease_line(lease_status(settings, name, now), now)}"
        history = last_decisions(store, count + WHY_HISTORY)
        decisions = history[-count:]
        if not decisions:
            yield f"space {name}: no decision recorded yet (has the daemon run a cycle?)"
            continue
        for i, d in enumerate(decisions, len(history) - len(decisions)):
            by = f" by {d['instance']} (epoch {d['epoch']})" if "instance" in d else ""
            if "stopped" in d:
                yield f"space {name} at {d['at']}: {d.get('instance', 'an instance')} stopped acting on it: {d['stopped']}"
                continue
            yield (
                f"space {name} at {d['at']}{by}: {d['machines_total']} machines, "
                f"{d['processors_total']}/{d['processors_limit']} processors"
            )
            mts = sorted(set(d.get("machinetypes", {})) | set(d.get("held", {})) | set(d.get("created", {})))
            for mt in mts:
                if machinetype and mt != machinetype:
                    continue
                created = d.get("created", {}).get(mt, [])
                held = d.get("held", {}).get(mt)
                parts = []
                if created:
                    parts.append(f"created {len(created)}")
                if held:
                    since = held_since(history, i, mt)
                    how_long = f" [{rule(held)} for {_duration(d['time'] - since)}, since {iso(since)}]"
                    parts.append(("then held: " if created else "held: ") + held + how_long)
                yield f"  {mt}: {'; '.join(parts) or 'nothing to report'}"
            for deleted in d.get("deleted", []):
                if machinetype is None or deleted["machine"].startswith(machinetype + "-"):
                    yield f"  deleted {deleted['machine']}: {deleted['reason']}"
            for mt, error in d.get("definition_errors", {}).items():
                if machinetype is None or mt == machinetype:
                    yield f"  definition error {mt}: {error}"
