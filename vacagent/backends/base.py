"""The Backend protocol: three methods, none optional.

- `list_machines()`: every machine of this site in the space, found by the
  backend's own labels/tags/metadata (never by a local list kept by
  vacagent), paginated underneath, each normalized to `Machine` by a pure
  translator with a state table (unknown native states become UNKNOWN).
- `create_machine(request)`: create one machine; idempotent for the same
  name.  Raises `errors.CapacityExhausted`, `QuotaExceeded`, `Temporary` or
  `Permanent`.
- `delete_machine(machine)`: ask for deletion; a machine already gone
  counts as success.  Deletion may complete later: the machine is closed
  when it is no longer listed.

`max_user_data_bytes` is the largest rendered user_data the backend accepts
(the cloud's own limit); a larger one is refused before anything is created.

`requests_made` counts API requests (listing pages + mutations) so that
benchmarks can check a cycle costs O(pages), never O(machines).

A backend whose cloud keeps quotas it can read also has `quota()` (the
`QuotaReporting` protocol; registry.REPORTS_QUOTA names these backends): a
space of such a backend may leave `processors_limit` unset, and the cycle
then calls `quota()` once per cycle, after listing, and plans within it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from vacagent.clock import Clock, SystemClock
from vacagent.model import Machine, MachineType, Quota


@dataclass(frozen=True)
class BackendContext:
    """What every backend is told about where it runs."""

    site: str
    space: str
    state_dir: Path
    options: Mapping[str, Any] = field(default_factory=dict)  # the space's `options:` from the config
    clock: Clock = field(default_factory=SystemClock)  # for backends that must time things themselves


@dataclass(frozen=True)
class CreateRequest:
    name: str
    machinetype: MachineType
    user_data: str  # rendered; for the local backend, the script the machine runs
    # MACHINEFEATURES, JOBFEATURES, JOBOUTPUTS, VACAGENT_TOKEN: for backends that set a
    # machine's environment (local processes, pods); VMs get the same through user_data.
    environment: Mapping[str, str] = field(default_factory=dict)
    log_path: Path | None = None  # where a backend that captures console output writes it


class Backend(Protocol):
    requests_made: int
    max_user_data_bytes: int

    def list_machines(self) -> list[Machine]:
        """All machines of this site in this space."""

    def create_machine(self, request: CreateRequest) -> Machine:
        """Create one machine (idempotent for the same name)."""

    def delete_machine(self, machine: Machine) -> None:
        """Ask for the machine's deletion; already gone counts as success."""


class LookingUp(Protocol):
    def look_up(self, machines: list[Machine]) -> list[Machine]:
        """Of `machines`, listed before and left out of the last listing without vacagent deleting
        them, those that still exist, as they are now.  For clouds whose listing can leave out a
        live machine (OpenStack: Nova's cells and build requests; EC2: its eventual consistency):
        the cycle asks before it takes a machine for gone, which would close its record."""


class QuotaReporting(Protocol):
    def quota(self) -> Quota:
        """The cloud's limits on this site's machines in the space, read now (after a listing)."""
