"""One space's part of the state directory: machine records, machinetype
feedback and definitions, finished machines, accounting and decision records.

Intent before action: `write_intent` creates the machine's directory (with
its record) before the backend is asked to create it; the name is the
idempotency key.  A record is closed (moved to `finished/<date>/<name>/`,
with one accounting line) only once the backend no longer lists the machine.

Records are cached in memory: each cycle re-reads only the records whose
directory changed since the last read (the atomic rename of machine.json
changes its directory's mtime), so a 50,000-machine space costs one scandir
and one stat per machine, not 50,000 JSON parses.

Only the holder of the space's cycle lock writes machine.json and
feedback.json; the endpoint writes only inside joboutputs/.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from vacagent.backoff import FeedbackState
from vacagent.model import MachineRecord, Outcome
from vacagent.state.atomic import append_line, read_json, write_json

SHUTDOWN_MESSAGE = "shutdown_message"


def day(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Outputs:
    """What a machine wrote into its joboutputs directory."""

    shutdown_message: str | None = None
    shutdown_message_at: float | None = None
    heartbeat_at: float | None = None


def record_to_json(record: MachineRecord) -> dict[str, Any]:
    data = asdict(record)
    if record.outcome is None:
        data.pop("outcome")
    return data


def record_from_json(data: dict[str, Any]) -> MachineRecord:
    outcome = data.get("outcome")
    fields = {k: v for k, v in data.items() if k in MachineRecord.__dataclass_fields__}
    fields["outcome"] = Outcome(**outcome) if outcome else None
    return MachineRecord(**fields)


class SpaceStore:
    def __init__(self, state_dir: Path, space: str, site: str = ""):
        self.state_dir = state_dir
        self.space = space
        self.site = site
        self.root = state_dir / "spaces" / space
        self.machines_dir = self.root / "machines"
        self.finished_dir = self.root / "finished"
        self.machinetypes_dir = self.root / "machinetypes"
        self.decisions_path = state_dir / "decisions" / f"{space}.jsonl"
        self._cache: dict[str, tuple[int, MachineRecord]] = {}

    # -- machine records -------------------------------------------------

    def machine_dir(self, name: str) -> Path:
        return self.machines_dir / name

    def records(self) -> dict[str, MachineRecord]:
        """All open records, re-reading only those whose directory changed."""
        fresh: dict[str, tuple[int, MachineRecord]] = {}
        try:
            entries = list(os.scandir(self.machines_dir))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                mtime = entry.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            cached = self._cache.get(entry.name)
            if cached and cached[0] == mtime:
                fresh[entry.name] = cached
                continue
            try:
                record = record_from_json(read_json(Path(entry.path) / "machine.json"))
            except FileNotFoundError:
                continue  # a directory being created or removed right now
            except (ValueError, TypeError) as e:
                raise ValueError(f"{entry.path}/machine.json: unreadable record: {e}") from e
            fresh[entry.name] = (mtime, record)
        self._cache = fresh
        return {name: rec for name, (_, rec) in fresh.items()}

    def write_intent(self, record: MachineRecord, files: dict[str, str] | None = None) -> Path:
        """Create the machine's directory and record; fails if the name exists."""
        path = self.machine_dir(record.name)
        self.machines_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.machines_dir / f".{record.name}.intent"
        shutil.rmtree(tmp, ignore_errors=True)
        for sub in ("machinefeatures", "jobfeatures", "joboutputs"):
            (tmp / sub).mkdir(parents=True)
        for relative, text in (files or {}).items():
            (tmp / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp / relative).write_text(text)
        write_json(tmp / "machine.json", record_to_json(record))
        # The whole directory appears at once: a reader never sees a machine
        # without its record.  rename() refuses to replace a non-empty directory.
        os.rename(tmp, path)
        return path

    def save(self, record: MachineRecord) -> None:
        write_json(self.machine_dir(record.name) / "machine.json", record_to_json(record))

    def outputs(self, name: str, heartbeat_file: str | None) -> Outputs:
        """The machine's shutdown message and heartbeat time (file modification times)."""
        directory = self.machine_dir(name) / "joboutputs"
        message = message_at = heartbeat_at = None
        try:
            path = directory / SHUTDOWN_MESSAGE
            message_at = path.stat().st_mtime
            message = path.read_text(errors="replace")[:1024]
        except FileNotFoundError:
            message_at = None
        if heartbeat_file:
            try:
                heartbeat_at = (directory / heartbeat_file).stat().st_mtime
            except FileNotFoundError:
                pass
        return Outputs(message, message_at, heartbeat_at)

    def write_shutdown_message(self, name: str, message: str) -> bool:
        """Leave our message for a machine we end, unless it left its own.  True if written."""
        path = self.machine_dir(name) / "joboutputs" / SHUTDOWN_MESSAGE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except FileNotFoundError:
            return False  # the machine directory is already gone
        with os.fdopen(fd, "w") as f:
            f.write(message + "\n")
        return True

    def close(self, record: MachineRecord, outcome: Outcome, now: float) -> dict[str, Any]:
        """Move the machine's directory to finished/ and write its accounting line."""
        source = self.machine_dir(record.name)
        target_dir = self.finished_dir / day(now)
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / record.name
        if target.exists():
            target = target_dir / f"{record.name}.{int(now)}"
        final = {**record_to_json(record), "outcome": asdict(outcome), "closed": now}
        if source.exists():
            write_json(source / "machine.json", final)
            os.rename(source, target)
        self._cache.pop(record.name, None)
        line = {
            "site": self.site,
            "space": self.space,
            "machinetype": record.machinetype,
            "machine": record.name,
            "processors": record.processors,
            "created": record.created,
            "started": record.started,
            "ended": outcome.at,
            "ran_seconds": outcome.ran_seconds,
            "shutdown_message": outcome.message,
            "code": outcome.code,
            "aborted": outcome.aborted,
            "reason": outcome.reason,
        }
        append_line(self.state_dir / "accounting" / f"{day(now)}.jsonl", line)
        return line

    def prune_finished(self, now: float, retention_days: float) -> int:
        """Remove finished/<date>/ directories older than the retention period."""
        if not self.finished_dir.is_dir():
            return 0
        cutoff = day(now - retention_days * 86400)
        removed = 0
        for entry in sorted(self.finished_dir.iterdir()):
            if entry.is_dir() and entry.name < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        return removed

    def finished(self) -> Iterator[Path]:
        if self.finished_dir.is_dir():
            for date_dir in sorted(self.finished_dir.iterdir()):
                yield from sorted(date_dir.iterdir())

    # -- machinetypes ----------------------------------------------------

    def feedback(self, machinetype: str) -> FeedbackState:
        try:
            data = read_json(self.machinetypes_dir / machinetype / "feedback.json")
        except (FileNotFoundError, ValueError):
            return FeedbackState()
        fields = {k: v for k, v in data.items() if k in FeedbackState.__dataclass_fields__}
        return FeedbackState(**fields)

    def save_feedback(self, machinetype: str, state: FeedbackState) -> None:
        write_json(self.machinetypes_dir / machinetype / "feedback.json", asdict(state))

    def definition(self, machinetype: str) -> dict[str, Any] | None:
        try:
            return read_json(self.machinetypes_dir / machinetype / "definition.json")
        except (FileNotFoundError, ValueError):
            return None

    def save_definition(self, machinetype: str, definition: dict[str, Any]) -> None:
        if self.definition(machinetype) != definition:
            write_json(self.machinetypes_dir / machinetype / "definition.json", definition)

    def stored_machinetypes(self) -> list[str]:
        if not self.machinetypes_dir.is_dir():
            return []
        return sorted(p.name for p in self.machinetypes_dir.iterdir() if (p / "definition.json").exists())

    # -- decision records ------------------------------------------------

    def append_decision(self, decision: dict[str, Any], max_bytes: int) -> None:
        path = self.decisions_path
        try:
            if path.stat().st_size > max_bytes:
                os.replace(path, path.with_suffix(".jsonl.1"))
        except FileNotFoundError:
            pass
        append_line(path, decision)
