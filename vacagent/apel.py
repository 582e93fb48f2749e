"""APEL accounting: one individual job record per finished machine, for APEL's `ssmsend`.  Pure.

The record is Vcycle's (`APEL-individual-job-message: v0.3`, the fields and
choices of Vcycle's writeApel; docs/accounting.md), with vacagent's names:

    Site            the space's apel.gocdb_sitename (without one: the space name, archive only)
    SubmitHost      <space>/vacagent-<host of the daemon that closed it>
    LocalJobId      the machine's name (unique in the site: APEL keys a record on it and EndTime)
    LocalUserId     the machine's name
    Queue           the machinetype
    GlobalUserName  /DC=... from the space name's dot-separated parts, reversed
    FQAN            the machinetype's accounting_fqan, if it has one
    WallDuration    seconds it ran; CpuDuration the same (a VM's CPU time is not known)
    Processors      its processors; NodeCount 1
    StartTime, EndTime   when it started and stopped running (epoch seconds)
    MemoryReal, MemoryVirtual   mb_per_processor x processors, in kB (its max_rss_bytes)
    ServiceLevelType HEPSPEC; ServiceLevel hs06_per_processor x processors, or 1.0 without it

Machines that never ran, or ran less than `fizzle_seconds`, get no record
(Vcycle's rule).  `placement` names the files: ssmsend reads its outgoing
directory as a dirq QueueSimple (8-hex-digit directories of
14-hex-digit files), so a record is `<yyyymmdd>/<hhmmss><8 hex digits of
its close's id>`: the same name however often a crash makes the close
complete again.  `state.store` writes it (atomically, archive and, with a
gocdb_sitename, outgoing) as a step of the journaled close.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vacagent.model import MachineRecord, MachineType, Outcome

HEADER = "APEL-individual-job-message: v0.3"


@dataclass(frozen=True)
class ApelSettings:
    """A space's `apel:` section; directories default to STATE/apel-outgoing and STATE/apel-archive."""

    gocdb_sitename: str | None = None
    outgoing: str | None = None
    archive: str | None = None


def record(space: str, host: str, rec: MachineRecord, outcome: Outcome, mt: MachineType | None,
           settings: ApelSettings) -> str | None:
    """The record's text, or None when the machine gets none."""
    if rec.started is None or mt is None or outcome.ran_seconds < mt.fizzle_seconds:
        return None
    wall = int(outcome.ran_seconds)
    start = int(rec.started)
    dn = "".join(f"/DC={part}" for part in reversed(space.split(".")))
    hs06 = mt.extra.get("hs06_per_processor")
    level = round(float(hs06) * rec.processors, 3) if isinstance(hs06, (int, float)) else 1.0
    kb = mt.mb_per_processor * rec.processors * 1024
    fields = [
        ("Site", settings.gocdb_sitename or space),
        ("SubmitHost", f"{space}/vacagent-{host}"),
        ("LocalJobId", rec.name),
        ("LocalUserId", rec.name),
        ("Queue", rec.machinetype),
        ("GlobalUserName", dn),
    ]
    fqan = mt.extra.get("accounting_fqan")
    if fqan:
        fields.append(("FQAN", str(fqan)))
    fields += [
        ("WallDuration", wall),
        ("CpuDuration", wall),
        ("Processors", rec.processors),
        ("NodeCount", 1),
        ("InfrastructureDescription", "APEL-VACAGENT"),
        ("InfrastructureType", "grid"),
        ("StartTime", start),
        ("EndTime", start + wall),
        ("MemoryReal", kb),
        ("MemoryVirtual", kb),
        ("ServiceLevelType", "HEPSPEC"),
        ("ServiceLevel", level),
    ]
    return "\n".join([HEADER, *(f"{k}: {v}" for k, v in fields), "%%"]) + "\n"


def placement(settings: ApelSettings, state_dir: Path, closed: float, closing: str) -> dict[str, str | None]:
    """Where a record closed at `closed` goes: {"name", "archive", "outgoing", "staging"}; without a
    gocdb_sitename, archive only.  `staging` is inside the outgoing directory (so on its file
    system) in a dot-directory ssmsend does not read: the record is published by renaming it
    from there, so that whether it was published is known even after ssmsend took it away."""
    when = datetime.fromtimestamp(closed, timezone.utc)
    day, file = f"{when:%Y%m%d}", f"{when:%H%M%S}{closing[:8]}"
    archive = Path(settings.archive) if settings.archive else state_dir / "apel-archive"
    outgoing = Path(settings.outgoing) if settings.outgoing else state_dir / "apel-outgoing"
    site = bool(settings.gocdb_sitename)
    return {"name": f"{day}/{file}", "archive": str(archive / day / file),
            "outgoing": str(outgoing / day / file) if site else None,
            "staging": str(outgoing / ".staging" / f"{day}-{file}") if site else None}
