"""Domain types shared by every layer: machinetypes, machines, shutdown codes, plans.

Everything here is a frozen value with no I/O.  The decision core
(`feedback`, `backoff`, `planner`) consumes and produces these; backends
translate their native records into `Machine`; the state store persists
`MachineRecord`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Mapping

# Vcycle's rule for names that may become DNS labels and directory names.
# \Z, not $: "$" also matches before a trailing newline.
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


def iso(t: float) -> str:
    """A time for people: 2026-11-22T10:00:00Z."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class MachineState(enum.Enum):
    """Lifecycle state of a machine as the backend reports it."""

    STARTING = "starting"  # requested, booting, pending
    RUNNING = "running"
    STOPPED = "stopped"  # finished by itself (shut down, exited, pod Succeeded/Failed)
    FAILED = "failed"  # the cloud gave up on it (ERROR, boot failure)
    DELETING = "deleting"  # deletion requested, not yet gone
    UNKNOWN = "unknown"  # a native state we have no mapping for
    GONE = "gone"  # no longer listed by the backend (never reported by a backend itself)

    @property
    def finished(self) -> bool:
        return self in (MachineState.STOPPED, MachineState.FAILED)


class Cause(enum.Enum):
    """Why the platform ended a machine, when it says so: it decides whom the end is charged to.

    Backends set it on a listed `Machine`; `feedback` carries it into the
    machine's `Outcome` (and so into accounting).
    """

    RECLAIMED = "reclaimed"  # spot reclaim, preemption, eviction: the lab's doing, never the project's abort
    CAPACITY = "capacity"  # the cloud had no room for it after accepting it (No valid host, unschedulable)
    QUOTA = "quota"  # the project's quota refused it after accepting it (Nova's late re-check)


# MachineState -> its value, for per-machine loops (enum's .value is a slow property).
STATE_VALUE = {state: state.value for state in MachineState}


@dataclass(frozen=True)
class ShutdownMessage:
    """A vacuum shutdown message: `"NNN free text"`.

    100 shutdown as requested by host, 200 intended work completed ok,
    300 no more work available, 400 site/host/VM banned or disabled,
    500 problem with the environment the site provided, 600 grid-wide problem
    with the job agent or application, 700 error with the job agent or
    application in this machine.
    """

    code: int
    text: str

    @classmethod
    def parse(cls, raw: str) -> "ShutdownMessage | None":
        """Parse the first line of a shutdown_message file; None if it has no code."""
        line = raw.strip().splitlines()[0].strip() if raw.strip() else ""
        match = re.match(r"^(\d{3})(?:\s+(.*))?$", line)
        if not match:
            return None
        return cls(int(match.group(1)), (match.group(2) or "").strip())

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


FAILED_TO_START = ShutdownMessage(700, "Failed to start")
RECLAIMED_BY_HOST = ShutdownMessage(100, "Shutdown as requested by the VM's host/hypervisor")
EXCEEDED_WALLCLOCK = ShutdownMessage(700, "Exceeded max_wallclock_seconds")
HEARTBEAT_STALE = ShutdownMessage(700, "Heartbeat not updated")
MACHINETYPE_GONE = ShutdownMessage(700, "Machinetype no longer configured")
# A machine that stopped by itself (a VM shut down, a process exited) and said nothing: it did its work
# if it ran past fizzle_seconds (Vac's 200), else it is an abort like any short run.
STOPPED_SILENTLY = ShutdownMessage(200, "Stopped by itself without a shutdown message")
STOPPED_EARLY = ShutdownMessage(700, "Stopped by itself before fizzle_seconds without a shutdown message")


@dataclass(frozen=True)
class MachineType:
    """One machinetype in one space: a pipe entry merged with site overrides.

    `extra` holds the keys the core does not interpret (root_image,
    flavor_names, container image, user_data_option_*, ...): backends and the
    user_data renderer read them.
    """

    name: str
    processors: int = 1
    target_share: float = 1.0
    backoff_seconds: int = 600
    max_backoff_seconds: int | None = None  # default 8 x backoff_seconds
    fizzle_seconds: int = 600
    max_wallclock_seconds: int = 86400
    min_wallclock_seconds: int = 0
    heartbeat_file: str | None = None
    heartbeat_seconds: int = 0
    max_starting_processors: int | None = None
    processors_limit: int | None = None  # cap on this machinetype's processors in the space
    mb_per_processor: int = 2048
    user_data: str | None = None  # template location (path or https URL)
    source: str = ""  # where the definition came from, for messages
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def backoff_cap(self) -> int:
        if self.max_backoff_seconds is not None:
            return self.max_backoff_seconds
        return 8 * self.backoff_seconds

    @property
    def heartbeat_checked(self) -> bool:
        return bool(self.heartbeat_file) and self.heartbeat_seconds > 0


@dataclass(frozen=True)
class Machine:
    """A machine as the backend lists it, already normalized by its translator."""

    name: str
    machinetype: str
    state: MachineState
    backend_id: str = ""
    processors: int = 1
    started_at: float | None = None  # when it began running, if the backend knows
    stopped_at: float | None = None  # when it stopped, if the backend knows
    message: str | None = None  # a shutdown message the platform carries (pod termination message)
    cause: Cause | None = None  # the platform's reason it ended, when it gives one


@dataclass(frozen=True)
class Outcome:
    """How a machine ended, as decided once and recorded in its machine.json."""

    message: str  # the shutdown message that stands ("300 No more work available")
    code: int | None
    ran_seconds: float
    aborted: bool
    reason: str  # why vacagent deleted it, or "stopped" / "gone"
    at: float
    cause: str | None = None  # Cause.value when the platform ended it for a reason of its own


@dataclass(frozen=True)
class MachineRecord:
    """What the state store knows of one machine, from intent to closing."""

    name: str
    space: str
    machinetype: str
    processors: int
    created: float  # intent time
    backend_id: str = ""
    state: str = "intent"  # last observed state, or "intent" before the backend has seen it
    started: float | None = None  # first time seen running
    listed: bool = False  # has the backend ever listed it?
    deleting_since: float | None = None
    outcome: Outcome | None = None
    adopted: bool = False
    epoch: int = 0  # the lease epoch it was created (or adopted) under; 0: before leases


@dataclass(frozen=True)
class MachineView:
    """Everything the decision core needs about one live machine, joined from
    the backend listing, the record and the machine's joboutputs."""

    name: str
    machinetype: str
    processors: int
    state: MachineState
    created: float
    started: float | None
    stopped: float | None = None
    shutdown_message: str | None = None  # left by the machine (joboutputs or platform)
    shutdown_message_at: float | None = None
    heartbeat_at: float | None = None
    deleting_since: float | None = None
    outcome_recorded: bool = False
    endpoint_up_since: float | None = None  # when the endpoint taking its heartbeats last came up
    cause: Cause | None = None  # from the backend listing
    jobs_started: int | None = None  # its `jobs_started` report: None when it sent none (the old protocol)
    jobs_started_at: float | None = None  # when that report was written (its latest job start)
    demand: int | None = None  # its project's waiting jobs, from its `demand` report
    demand_at: float | None = None  # when that report was written
    # The backend never answered its create: vacagent stopped before the call
    # returned, and the record still reads "intent".
    unconfirmed: bool = False


NEVER_CREATED = "never created"  # the outcome reason of an unconfirmed machine that never appeared


@dataclass(frozen=True)
class SpaceLimits:
    """The limits of one space the planner must never exceed."""

    processors_limit: int
    max_machines: int | None = None
    creation_budget_processors: int | None = None  # default: 10% of processors_limit
    max_starting_seconds: int = 3600
    shutdown_grace_seconds: int = 60
    delete_retry_seconds: int = 60

    @property
    def budget(self) -> int:
        if self.creation_budget_processors is not None:
            return self.creation_budget_processors
        return max(1, -(-self.processors_limit // 10))  # ceil(10%)


@dataclass(frozen=True)
class Quota:
    """A cloud's own limits on what this site may run in a space (None: no limit of that kind).

    Reported by backends that can read them (backends/base.py: QuotaReporting),
    already less what other users of the project hold."""

    processors: int | None = None
    machines: int | None = None


@dataclass(frozen=True)
class Create:
    machinetype: str
    count: int
    probe: bool = False


@dataclass(frozen=True)
class Delete:
    name: str
    reason: str  # why, for logs and decisions ("stopped", "700 Heartbeat not updated", ...)
    message: str | None  # our shutdown message to record, None if the machine left its own
    outcome: Outcome | None  # None when the outcome was already recorded


@dataclass(frozen=True)
class Close:
    """A machine that is gone from the backend: move its record to finished/."""

    name: str
    outcome: Outcome | None  # None when the outcome was already recorded


@dataclass(frozen=True)
class Plan:
    creates: tuple[Create, ...] = ()
    deletes: tuple[Delete, ...] = ()
    closes: tuple[Close, ...] = ()
    held: Mapping[str, str] = field(default_factory=dict)  # machinetype -> why nothing (more)
