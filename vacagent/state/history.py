"""Reading the state directory's history back: accounting lines, decision
records and the machines still open, for the operator views (`usage`,
`health`).  Read-only; never needs the configuration, only the directory.

A line that does not parse (a file cut by a full disk, an edit) is skipped
and counted, never fatal: a report on a year of history must not fail on
one bad line.  Neighbours: `store` writes what this reads; `ledger` turns
records into phases.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vacagent import ledger
from vacagent.state.store import SpaceStore, day


@dataclass
class Reading:
    """What was read, and what could not be."""

    skipped: list[str] = field(default_factory=list)  # "file:line: reason"


def _lines(path: Path, reading: Reading) -> Iterator[dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    value = json.loads(raw)
                except ValueError as e:
                    reading.skipped.append(f"{path}:{number}: not JSON ({e})")
                    continue
                if isinstance(value, dict):
                    yield value
    except FileNotFoundError:
        return


def accounting(state_dir: Path, reading: Reading, since: float | None = None) -> Iterator[dict[str, Any]]:
    """Every accounting line of machines closed at or after `since` (all, without it)."""
    directory = state_dir / "accounting"
    if not directory.is_dir():
        return
    first = day(since) if since is not None else ""
    for path in sorted(directory.glob("*.jsonl")):
        if path.stem >= first:
            yield from _lines(path, reading)


def spaces(state_dir: Path) -> list[str]:
    root = state_dir / "spaces"
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def decisions(state_dir: Path, reading: Reading) -> Iterator[tuple[str, dict[str, Any]]]:
    """(space, decision record) for every cycle still on disk, oldest first within each space."""
    directory = state_dir / "decisions"
    if not directory.is_dir():
        return
    names = sorted({p.name.split(".jsonl")[0] for p in directory.iterdir() if ".jsonl" in p.name})
    for space in names:
        for suffix in (".jsonl.1", ".jsonl"):  # the rotated file holds the older records
            for record in _lines(directory / f"{space}{suffix}", reading):
                yield space, record


@dataclass(frozen=True)
class OpenMachine:
    space: str
    machinetype: str
    name: str
    processors: int
    spans: tuple[ledger.Span, ...]


def open_machines(state_dir: Path, now: float, reading: Reading) -> Iterator[OpenMachine]:
    """Machines whose records are still open, with their ledger up to `now`."""
    for space in spaces(state_dir):
        store = SpaceStore(state_dir, space)
        try:
            records = store.records()
        except ValueError as e:
            reading.skipped.append(str(e))
            continue
        fizzle: dict[str, float] = {}
        for record in records.values():
            if record.machinetype not in fizzle:
                definition = store.definition(record.machinetype) or {}
                fizzle[record.machinetype] = float(definition.get("fizzle_seconds", 600))
            job_seconds = store.outputs(record.name, None).job_seconds
            life = ledger.open_life(record, job_seconds, fizzle[record.machinetype])
            yield OpenMachine(space, record.machinetype, record.name, record.processors, ledger.spans(life, now))


def exists(state_dir: Path) -> bool:
    return os.path.isdir(state_dir / "spaces") or os.path.isdir(state_dir / "accounting")
