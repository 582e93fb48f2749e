"""An in-memory backend for tests, benchmarks and the simulator.

It behaves like a small cloud: machines boot after `boot_seconds`, deletion
takes `delete_seconds`, listings come in pages of `page_size`.  It records
every call, and `fail_next(method, error)` makes the next call of that
method raise, once (as Karpenter's fake does).  Time comes from the clock it
is given, so a fake clock drives it in tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.errors import NotFound
from vacagent.model import Machine, MachineState


@dataclass
class FakeMachine:
    name: str
    machinetype: str
    processors: int
    created_at: float
    user_data: str
    state: MachineState = MachineState.STARTING
    started_at: float | None = None
    stopped_at: float | None = None
    deleted_at: float | None = None
    message: str | None = None


class FakeBackend:
    def __init__(self, context: BackendContext):
        options = context.options
        self.context = context
        self.clock = context.clock
        self.boot_seconds = float(options.get("boot_seconds", 0))
        self.delete_seconds = float(options.get("delete_seconds", 0))
        self.page_size = int(options.get("page_size", 500))
        self.max_user_data_bytes = int(options.get("max_user_data_bytes", 1 << 20))
        self.machines: dict[str, FakeMachine] = {}
        self.calls: list[tuple[str, str]] = []  # (method, machine name or "")
        self.requests_made = 0
        self._fail: dict[str, list[BaseException]] = {}

    # -- test controls ---------------------------------------------------

    def fail_next(self, method: str, error: BaseException) -> None:
        self._fail.setdefault(method, []).append(error)

    def stop(self, name: str, message: str | None = None, failed: bool = False) -> None:
        """The machine stops by itself now (or fails, as a cloud ERROR)."""
        m = self.machines[name]
        m.state = MachineState.FAILED if failed else MachineState.STOPPED
        m.stopped_at = self.clock.now()
        m.message = message

    def _check(self, method: str, name: str = "") -> None:
        self.calls.append((method, name))
        self.requests_made += 1
        pending = self._fail.get(method)
        if pending:
            raise pending.pop(0)

    # -- the protocol ----------------------------------------------------

    def _advance(self, m: FakeMachine, now: float) -> None:
        if m.state is MachineState.STARTING and now >= m.created_at + self.boot_seconds:
            m.state = MachineState.RUNNING
            m.started_at = m.created_at + self.boot_seconds

    def list_machines(self) -> list[Machine]:
        now = self.clock.now()
        for name in [n for n, m in self.machines.items() if m.deleted_at is not None]:
            if now >= self.machines[name].deleted_at + self.delete_seconds:
                del self.machines[name]
        out = []
        pages = max(1, -(-len(self.machines) // self.page_size))
        for _ in range(pages):
            self._check("list")
        for m in self.machines.values():
            self._advance(m, now)
            out.append(self._to_machine(m))
        return out

    def create_machine(self, request: CreateRequest) -> Machine:
        self._check("create", request.name)
        existing = self.machines.get(request.name)
        if existing is None:
            existing = FakeMachine(
                name=request.name,
                machinetype=request.machinetype.name,
                processors=request.machinetype.processors,
                created_at=self.clock.now(),
                user_data=request.user_data,
            )
            self.machines[request.name] = existing
            self._advance(existing, self.clock.now())
        return self._to_machine(existing)

    def delete_machine(self, machine: Machine) -> None:
        try:
            self._check("delete", machine.name)
        except NotFound:
            return
        m = self.machines.get(machine.name)
        if m is not None and m.deleted_at is None:
            m.deleted_at = self.clock.now()
            if self.delete_seconds <= 0:
                del self.machines[machine.name]

    @staticmethod
    def _to_machine(m: FakeMachine) -> Machine:
        state = MachineState.DELETING if m.deleted_at is not None else m.state
        return Machine(
            name=m.name,
            machinetype=m.machinetype,
            state=state,
            backend_id=f"fake-{m.name}",
            processors=m.processors,
            started_at=m.started_at,
            stopped_at=m.stopped_at,
            message=m.message,
        )
