"""One space's part of the state directory: machine records, machinetype
feedback and definitions, finished machines, accounting and decision records.

Intent before action: `write_intent` creates the machine's directory (with
its record) before the backend is asked to create it; the name is the
idempotency key.  A record is closed (moved to `finished/<date>/<name>/`,
with one accounting line) only once the backend no longer lists the machine;
the close is journaled first (`closing/<name>.json`) so that it happens
exactly once whatever interrupts it (`close`, `finish_closes`).

Only the holder of the space's cycle lock writes machine.json and
feedback.json; the endpoint writes only inside joboutputs/, which
`outputs()` reads afresh every cycle.

Records are cached in memory and kept current by this store's own writes.
A store that writes records first writes a fresh random stamp to
`spaces/<space>/records.stamp` (once per `records()` call, that is once per
cycle); `records()` reads the stamp, and if it is not the one this store last
wrote or saw, another process has held the cycle lock and written records
since, and every record is read again.  So a quiet 50,000-machine cycle
costs one small file read, not 50,000 stats, and no change can hide in a
file system's coarse timestamps (the simulator runs cycles milliseconds
apart).  This relies on the lock: a store that caches reads and writes in
its own cycles only (readers without the lock, like `vacagent status`, use
a new store each time).  A write that fails drops the cache.  Write records
only through a `SpaceStore`: a machine.json edited by hand is seen by a new
process, or after another process's cycle, not by a running daemon.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from vacagent import apel as apel_records
from vacagent import backoff, crashpoints, ledger
from vacagent.backoff import FeedbackState
from vacagent.model import MachineRecord, Outcome
from vacagent.state import formats
from vacagent.state.atomic import (
    FILE_MODE, append_line, create, make_dirs, read_json, read_lines, write_json, write_text,
)

SHUTDOWN_MESSAGE = "shutdown_message"
MESSAGE_BYTES = 1024  # of a shutdown message, the most the cycle reads
JOB_SECONDS = "job_seconds"  # seconds the machine spent running jobs so far, as it reports them
JOBS_STARTED = "jobs_started"  # reserved joboutputs names: docs/machine-protocol.md
DEMAND = "demand"
STAMP = "records.stamp"


def _read_output(path: str) -> tuple[str | None, float | None]:
    """(text, mtime) of a file a machine wrote, or (None, None) if it is absent or not a plain file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return None, None  # absent, or a symlink (ELOOP): never followed
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            return None, None
        return os.read(fd, MESSAGE_BYTES).decode("utf-8", "replace"), st.st_mtime
    finally:
        os.close(fd)


def day(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Outputs:
    """What a machine wrote into its joboutputs directory."""

    shutdown_message: str | None = None
    shutdown_message_at: float | None = None
    heartbeat_at: float | None = None
    job_seconds: float | None = None
    jobs_started: int | None = None  # None: no (readable) report
    jobs_started_at: float | None = None
    demand: int | None = None
    demand_at: float | None = None


def _count(path: str) -> tuple[int | None, float | None]:
    """A joboutputs file holding one integer >= 0: (value, mtime); (None, None) if absent or not a count."""
    content, at = _read_output(path)
    text = (content or "")[:32].split()
    if len(text) != 1 or not text[0].isdigit():
        return None, None
    return int(text[0]), at


def parse_job_seconds(text: str) -> float | None:
    """A job_seconds file's value: a non-negative number, else None (treated as not reported)."""
    try:
        value = float(text.strip().split()[0])
    except (ValueError, IndexError):
        return None
    return value if value >= 0 and value == value and value != float("inf") else None


_RECORD_FIELDS = tuple(f.name for f in fields(MachineRecord))


def record_to_json(record: MachineRecord) -> dict[str, Any]:
    # asdict() deep-copies every value: 10x slower, and the values are plain already.
    data = {formats.KEY: formats.FORMAT}
    data.update((name, getattr(record, name)) for name in _RECORD_FIELDS)
    if record.outcome is None:
        data.pop("outcome")
    else:
        data["outcome"] = asdict(record.outcome)
    return data


def accounting_line(site: str, record: MachineRecord, outcome: Outcome, closing: str) -> dict[str, Any]:
    """A closed machine's accounting line (the one place it is built); `closing` is its close's id."""
    return {
        formats.KEY: formats.FORMAT,
        "site": site,
        "space": record.space,
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
        "cause": outcome.cause,
        "closing": closing,
    }


def _write_apel(spec: dict[str, Any]) -> None:
    """Exactly once, though ssmsend deletes what it sends: staged, archived, then published by a rename.

    Before the archive copy exists nothing was published (stage again); once it exists, a staged copy
    still there is not yet published (rename it), and none means it was."""
    archive, outgoing = Path(spec["archive"]), spec.get("outgoing")
    staging = Path(spec["staging"]) if outgoing else None
    if not archive.exists():
        if staging is not None:
            write_text(staging, spec["text"])
        write_text(archive, spec["text"])
        crashpoints.reached("after_apel_archive")
    if staging is not None and staging.exists():
        make_dirs(Path(outgoing).parent)
        os.rename(staging, outgoing)
        crashpoints.reached("after_apel_outgoing")


def _has_closing(path: Path, closing: str) -> bool:
    """Does the accounting file already hold the line of this close?"""
    try:
        return any(line.get("closing") == closing for line in read_lines(path))
    except FileNotFoundError:
        return False


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
        self.closing_dir = self.root / "closing"
        self.decisions_path = state_dir / "decisions" / f"{space}.jsonl"
        self._machines_prefix = f"{self.machines_dir}{os.sep}"  # str paths: pathlib costs ~3 us a join
        self._records: dict[str, MachineRecord] | None = None  # None: read them all at the next records()
        self._stamp: str | None = None  # the stamp the cache is valid for
        self._claimed = False  # has this store stamped since the last records()?
        self.damaged: dict[str, str] = {}  # machine name -> why its record cannot be read (see quarantine)

    # -- machine records -------------------------------------------------

    def machine_dir(self, name: str) -> Path:
        return self.machines_dir / name

    def records(self) -> dict[str, MachineRecord]:
        """All open records: from the cache, unless another store wrote since."""
        stamp = self._read_stamp()
        if self._records is None or stamp != self._stamp:
            self._records = self._read_all()
            self._stamp = stamp
        self._claimed = False
        return dict(self._records)

    def _read_stamp(self) -> str | None:
        try:
            with open(self.root / STAMP) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def _read_all(self) -> dict[str, MachineRecord]:
        records: dict[str, MachineRecord] = {}
        self.damaged = {}
        try:
            entries = sorted(os.scandir(self.machines_dir), key=lambda e: e.name)
        except FileNotFoundError:
            entries = []
        closing = set(self._closing())  # journaled as closed: no longer open, whatever is left
        for entry in entries:
            if entry.name.startswith(".") or entry.name in closing:
                continue
            path = f"{entry.path}{os.sep}machine.json"
            try:
                records[entry.name] = record_from_json(formats.checked(read_json(Path(path)), path))
            except FileNotFoundError:
                if os.path.isdir(entry.path):  # (not a directory closed since the scan)
                    self.damaged[entry.name] = f"{path}: missing"
            except (ValueError, TypeError, AttributeError) as e:
                self.damaged[entry.name] = f"{path}: unreadable record: {e}"
        return records

    def quarantine(self, name: str, now: float) -> Path:
        """Set a machine whose record cannot be read aside, whole, in quarantine/<name>.<time>
        (or, if that cannot be made, beside it as machines/.damaged-<name>.<time>): the machine is
        then adopted (if listed) as one with no record; nothing else waits on it."""
        self._claim()
        target = self.root / "quarantine" / f"{name}.{int(now)}"
        try:
            make_dirs(target.parent)
            os.rename(self.machine_dir(name), target)
        except OSError:
            target = self.machines_dir / f".damaged-{name}.{int(now)}"  # a rename in place: no new directory
            os.rename(self.machine_dir(name), target)
        self.damaged.pop(name, None)
        return target

    def _claim(self) -> None:
        """Before this cycle's first write: a fresh stamp tells every other store to re-read."""
        if not self._claimed:
            stamp = secrets.token_hex(8)
            write_text(self.root / STAMP, stamp)
            self._stamp = stamp
            self._claimed = True

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._records = None  # what reached the disk is unsure: read it all next time
            raise

    def _cached(self, record: MachineRecord) -> None:
        if self._records is not None:
            self._records[record.name] = record

    def write_intent(self, record: MachineRecord, files: dict[str, str] | None = None) -> Path:
        """Create the machine's directory and record; fails if the name exists."""
        path = self.machine_dir(record.name)
        make_dirs(self.machines_dir)
        self._claim()
        tmp = f"{self._machines_prefix}.{record.name}.intent"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            self._build_intent(tmp, record, files or {})
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # a full disk: leave no half-built directory behind
            raise
        # The whole directory appears at once: a reader never sees a machine
        # without its record.  rename() refuses to replace a non-empty directory.
        with self._writing():
            os.rename(tmp, path)
        self._cached(record)
        return path

    @staticmethod
    def _build_intent(tmp: str, record: MachineRecord, files: dict[str, str]) -> None:
        made = {""}
        for sub in ("machinefeatures", "jobfeatures", "joboutputs"):
            make_dirs(os.path.join(tmp, sub))
            made.add(sub)
        for relative, text in files.items():
            parent = os.path.dirname(relative)
            if parent not in made:
                make_dirs(os.path.join(tmp, parent))
                made.add(parent)
            with os.fdopen(create(os.path.join(tmp, relative)), "w") as f:
                f.write(text)
        write_json(Path(tmp) / "machine.json", record_to_json(record))

    def save(self, record: MachineRecord) -> None:
        self._claim()
        with self._writing():
            write_json(self.machine_dir(record.name) / "machine.json", record_to_json(record))
        self._cached(record)

    def outputs(self, name: str, heartbeat_file: str | None) -> Outputs:
        """The machine's shutdown message, heartbeat time (file modification times) and its
        `jobs_started` and `demand` counts (a file that is not one integer counts as absent).

        What a machine wrote is read defensively (`_read_output`): a file that is not a
        regular file with one link (a FIFO, a symlink, a device, a hard link to someone
        else's file) is ignored, never opened in a way that could block; at most
        MESSAGE_BYTES are read.  The heartbeat counts only as a regular file."""
        directory = f"{self._machines_prefix}{name}{os.sep}joboutputs{os.sep}"
        message, message_at = _read_output(directory + SHUTDOWN_MESSAGE)
        heartbeat_at = None
        if heartbeat_file:
            try:
                st = os.stat(directory + heartbeat_file, follow_symlinks=False)
                heartbeat_at = st.st_mtime if stat.S_ISREG(st.st_mode) else None
            except FileNotFoundError:
                pass
        jobs_started, jobs_started_at = _count(directory + JOBS_STARTED)
        demand, demand_at = _count(directory + DEMAND)
        return Outputs(message, message_at, heartbeat_at, self._job_seconds(directory),
                       jobs_started, jobs_started_at, demand, demand_at)

    @staticmethod
    def _job_seconds(joboutputs: str) -> float | None:
        text, _ = _read_output(joboutputs + JOB_SECONDS)
        return None if text is None else parse_job_seconds(text[:64])

    def write_shutdown_message(self, name: str, message: str) -> bool:
        """Leave our message for a machine we end, unless it left its own.  True if written."""
        path = self.machine_dir(name) / "joboutputs" / SHUTDOWN_MESSAGE
        try:
            fd = create(path, FILE_MODE)
        except FileExistsError:
            return False
        except FileNotFoundError:
            return False  # the machine directory is already gone
        with os.fdopen(fd, "w") as f:
            f.write(message + "\n")
        return True

    def close(self, record: MachineRecord, outcome: Outcome, now: float, fizzle_seconds: float = 0.0,
              apel: tuple[str, apel_records.ApelSettings] | None = None) -> dict[str, Any]:
        """Close a record: move the machine's directory to finished/ and write its accounting line
        (with the machine's ledger, docs/ledger.md), and its APEL record if `apel` gives one
        (the text, the space's settings).

        Exactly once, whatever crash or full disk interrupts it: the whole
        close is first journaled in `closing/<name>.json` (the finished
        record, where it goes, the accounting line with its `closing` id);
        from then on the record is no longer open, and `finish_closes()`
        completes any step a crash left undone.
        """
        job_seconds = self._job_seconds(f"{self._machines_prefix}{record.name}{os.sep}joboutputs{os.sep}")
        target_dir = self.finished_dir / day(now)
        target = target_dir / record.name
        if target.exists():
            target = target_dir / f"{record.name}.{int(now)}"
        closing = secrets.token_hex(8)
        final = {**record_to_json(record), "outcome": asdict(outcome), "closed": now, "closing": closing}
        journal = {
            "record": final,
            "finished": str(target.relative_to(self.root)),
            "accounting": f"{day(now)}.jsonl",
            "line": {**accounting_line(self.site, record, outcome, closing),
                     **ledger.accounting_fields(ledger.closed_life(record, outcome, now, job_seconds, fizzle_seconds),
                                                now)},
        }
        if apel is not None:
            journal["apel"] = {"text": apel[0], **apel_records.placement(apel[1], self.state_dir, now, closing)}
        self._claim()
        with self._writing():
            formats.write(self.closing_dir / f"{record.name}.json", journal)
        if self._records is not None:
            self._records.pop(record.name, None)
        crashpoints.reached("after_close_journal")
        self._complete(record.name, journal, recovering=False)
        return journal["line"]

    def finish_closes(self) -> Iterator[dict[str, Any]]:
        """Complete the closes a crash or an error interrupted; yields their accounting lines."""
        for name in self._closing():
            journal = formats.read(self.closing_dir / f"{name}.json")
            self._complete(name, journal, recovering=True)
            yield journal["line"]

    def _closing(self) -> list[str]:
        """Names of the machines whose close is journaled and not yet complete."""
        try:
            return sorted(e.name[:-5] for e in os.scandir(self.closing_dir)
                          if e.name.endswith(".json") and not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def _complete(self, name: str, journal: dict[str, Any], recovering: bool) -> None:
        source = self.machine_dir(name)
        if source.exists():
            target = self.root / journal["finished"]
            make_dirs(target.parent)
            write_json(source / "machine.json", journal["record"])
            os.rename(source, target)
        crashpoints.reached("after_finished")
        path = self.state_dir / "accounting" / journal["accounting"]
        closing = journal["line"]["closing"]
        if not (recovering and _has_closing(path, closing)):
            append_line(path, journal["line"], crash_point="mid_append")
        crashpoints.reached("after_accounting")
        if journal.get("apel"):
            _write_apel(journal["apel"])
        os.unlink(self.closing_dir / f"{name}.json")

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
        """The stored feedback (a fresh one if none); ValueError naming the file if it cannot be read."""
        path = self.machinetypes_dir / machinetype / "feedback.json"
        try:
            data = formats.read(path)
        except FileNotFoundError:
            return FeedbackState()
        except ValueError as e:
            raise ValueError(f"{path}: not JSON: {e}") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a JSON object")
        try:
            return backoff.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e

    def quarantine_feedback(self, machinetype: str, now: float) -> Path:
        """Set an unreadable feedback.json aside in quarantine/<machinetype>.feedback.<time>.json."""
        target = self.root / "quarantine" / f"{machinetype}.feedback.{int(now)}.json"
        make_dirs(target.parent)
        self._claim()
        os.rename(self.machinetypes_dir / machinetype / "feedback.json", target)
        return target

    def save_feedback(self, machinetype: str, state: FeedbackState) -> None:
        formats.write(self.machinetypes_dir / machinetype / "feedback.json", asdict(state))

    def definition(self, machinetype: str) -> dict[str, Any] | None:
        """The stored definition, without its format key."""
        try:
            data = formats.read(self.machinetypes_dir / machinetype / "definition.json")
        except (FileNotFoundError, ValueError):
            return None
        data.pop(formats.KEY, None)
        return data

    def save_definition(self, machinetype: str, definition: dict[str, Any]) -> None:
        if self.definition(machinetype) != definition:
            formats.write(self.machinetypes_dir / machinetype / "definition.json", definition)

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
        append_line(path, formats.stamped(decision))
