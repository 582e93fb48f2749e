"""Every backend call counted and timed, for `vacagent health` and /metrics.

`Metered` wraps any backend: per operation (list, create, delete) it counts
calls by outcome and sums their seconds, and tells the reporter of each
call.  The cycle takes the summary into each decision record
(`decisions/<space>.jsonl`, key `api`): the calls since the previous record,
so a cycle whose listing failed is counted in the next one's record.

Outcomes are a fixed set (Prometheus labels must not grow): ok, capacity,
quota, temporary, permanent, not_found, error.  The timer is the clock's
monotonic reading: real seconds in the daemon, simulated ones (usually 0)
on a fake clock.  Neighbours: `base` (the protocol), `cycle`, `report`.
"""

from __future__ import annotations

from typing import Any, Callable

from vacagent import errors
from vacagent.backends.base import Backend, CreateRequest
from vacagent.model import Machine

OUTCOMES = (
    (errors.CapacityExhausted, "capacity"),
    (errors.QuotaExceeded, "quota"),
    (errors.Temporary, "temporary"),
    (errors.Permanent, "permanent"),
    (errors.NotFound, "not_found"),
)

Observer = Callable[[str, str, float], None]  # (operation, outcome, seconds)


def outcome_of(error: BaseException | None) -> str:
    if error is None:
        return "ok"
    for kind, name in OUTCOMES:
        if isinstance(error, kind):
            return name
    return "error"


class Metered:
    def __init__(self, backend: Backend, timer: Callable[[], float], observe: Observer | None = None):
        self.inner = backend
        self.timer = timer
        self.observe = observe
        self._summary: dict[str, dict[str, Any]] = {}

    def __getattr__(self, name: str) -> Any:  # requests_made, max_user_data_bytes, a backend's own extras
        return getattr(self.inner, name)

    def _call(self, operation: str, call: Callable[[], Any]) -> Any:
        started = self.timer()
        error: BaseException | None = None
        try:
            return call()
        except BaseException as e:
            error = e
            raise
        finally:
            seconds = max(0.0, self.timer() - started)
            outcome = outcome_of(error)
            entry = self._summary.setdefault(operation, {"calls": 0, "outcomes": {}, "seconds": 0.0,
                                                         "max_seconds": 0.0})
            entry["calls"] += 1
            entry["outcomes"][outcome] = entry["outcomes"].get(outcome, 0) + 1
            entry["seconds"] += seconds
            entry["max_seconds"] = max(entry["max_seconds"], seconds)
            if self.observe is not None:
                self.observe(operation, outcome, seconds)

    def list_machines(self) -> list[Machine]:
        return self._call("list", self.inner.list_machines)

    def create_machine(self, request: CreateRequest) -> Machine:
        return self._call("create", lambda: self.inner.create_machine(request))

    def delete_machine(self, machine: Machine) -> None:
        return self._call("delete", lambda: self.inner.delete_machine(machine))

    def take_summary(self) -> dict[str, dict[str, Any]]:
        """The calls since the last summary (rounded), and start afresh."""
        summary, self._summary = self._summary, {}
        for entry in summary.values():
            entry["seconds"] = round(entry["seconds"], 6)
            entry["max_seconds"] = round(entry["max_seconds"], 6)
        return summary
