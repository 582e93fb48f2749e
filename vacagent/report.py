"""Observe the cycle through a reporter: hooks the cycle calls, knowing
nothing of logs or metrics.

`Reporter` is all no-ops (the simulator and tests use it or subclass it);
`LogReporter` writes one key=value line per event.  Definition problems are
reported when they appear or change, not every cycle.
"""

from __future__ import annotations

from typing import Any, Mapping

from vacagent import logs
from vacagent.backoff import FeedbackState
from vacagent.model import Machine, MachineRecord, iso

log = logs.get("vacagent.cycle")


class Reporter:
    def definition_problem(self, space: str, key: str, message: str, warning: bool) -> None: ...

    def definition_problem_cleared(self, space: str, key: str) -> None: ...

    def machine_adopted(self, space: str, record: MachineRecord) -> None: ...

    def record_quarantined(self, space: str, name: str, reason: str, where: str) -> None: ...

    def feedback_quarantined(self, space: str, machinetype: str, reason: str, where: str) -> None: ...

    def machine_left_out(self, space: str, machine: Machine) -> None: ...

    def disk_full(self, space: str, unwritten: list[str]) -> None: ...

    def disk_writable(self, space: str) -> None: ...

    def machine_created(self, space: str, record: MachineRecord, probe: bool) -> None: ...

    def create_failed(self, space: str, machinetype: str, name: str, error: BaseException, backs_off: bool) -> None: ...

    def machine_deleting(self, space: str, record: MachineRecord, reason: str, message: str | None) -> None: ...

    def delete_failed(self, space: str, name: str, error: BaseException) -> None: ...

    def machine_closed(self, space: str, accounting: Mapping[str, Any]) -> None: ...

    def feedback_changed(self, space: str, machinetype: str, old: FeedbackState, new: FeedbackState) -> None: ...

    def cycle_done(self, space: str, decision: Mapping[str, Any]) -> None: ...

    def backend_request(self, space: str, backend: str, operation: str, outcome: str, seconds: float) -> None: ...

    def cycle_failed(self, space: str, error: BaseException) -> None: ...


class LogReporter(Reporter):
    def definition_problem(self, space: str, key: str, message: str, warning: bool) -> None:
        if warning:
            log.warning("definition warning", space=space, detail=message)
        else:
            log.error("definition skipped", space=space, detail=message)

    def definition_problem_cleared(self, space: str, key: str) -> None:
        log.info("definition problem cleared", space=space, machinetype=key)

    def machine_adopted(self, space: str, record: MachineRecord) -> None:
        log.warning(
            "machine adopted", space=space, machinetype=record.machinetype, machine=record.name,
            state=record.state, why="listed by the backend with no record (daemon killed after create?)",
        )

    def record_quarantined(self, space: str, name: str, reason: str, where: str) -> None:
        log.error("record quarantined", space=space, machine=name, moved_to=where, why=reason,
                  then="the machine, if the backend lists it, is adopted; every other machine goes on")

    def machine_left_out(self, space: str, machine: Machine) -> None:
        log.warning("machine left out of the listing", space=space, machine=machine.name, state=machine.state.value,
                    then="the backend found it when asked for it alone: not taken for gone")

    def feedback_quarantined(self, space: str, machinetype: str, reason: str, where: str) -> None:
        log.error("feedback quarantined", space=space, machinetype=machinetype, moved_to=where, why=reason,
                  then="one probe at a time until a machine finds work, as after an abort")

    def disk_full(self, space: str, unwritten: list[str]) -> None:
        log.error("state directory full", space=space, unwritten=len(unwritten), first=unwritten[0],
                  then="creating nothing, deleting what must go, trying the writes again every cycle")

    def disk_writable(self, space: str) -> None:
        log.info("state directory writable again", space=space, then="creating as usual")

    def machine_created(self, space: str, record: MachineRecord, probe: bool) -> None:
        log.info(
            "machine created", space=space, machinetype=record.machinetype, machine=record.name,
            processors=record.processors, backend_id=record.backend_id, probe=probe or None,
        )

    def create_failed(self, space: str, machinetype: str, name: str, error: BaseException, backs_off: bool) -> None:
        log.error(
            "create failed", space=space, machinetype=machinetype, machine=name,
            error=type(error).__name__, detail=str(error), backoff=backs_off,
        )

    def machine_deleting(self, space: str, record: MachineRecord, reason: str, message: str | None) -> None:
        log.info(
            "machine deleting", space=space, machinetype=record.machinetype, machine=record.name,
            reason=reason, message=message,
        )

    def delete_failed(self, space: str, name: str, error: BaseException) -> None:
        log.error("delete failed", space=space, machine=name, error=type(error).__name__, detail=str(error))

    def machine_closed(self, space: str, accounting: Mapping[str, Any]) -> None:
        log.info(
            "machine finished", space=space, machinetype=accounting["machinetype"],
            machine=accounting["machine"], ran_seconds=round(accounting["ran_seconds"]),
            message=accounting["shutdown_message"] or None, aborted=accounting["aborted"],
            reason=accounting["reason"],
        )

    def feedback_changed(self, space: str, machinetype: str, old: FeedbackState, new: FeedbackState) -> None:
        until = iso(new.backoff_until) if new.backoff_until else None
        if new.consecutive_aborts > old.consecutive_aborts:
            log.warning("machinetype backing off", space=space, machinetype=machinetype,
                        consecutive_aborts=new.consecutive_aborts, until=until, last=new.last_message)
        elif (new.backoff_until or 0) > (old.backoff_until or 0):
            log.info("machinetype backoff extended", space=space, machinetype=machinetype, until=until,
                     last=new.last_message)
        elif old.probing and not new.probing:
            log.info("machinetype backoff reset", space=space, machinetype=machinetype,
                     why="a machine created after the last abort ran fizzle_seconds")

    def cycle_done(self, space: str, decision: Mapping[str, Any]) -> None:
        log.debug(
            "cycle done", space=space, machines=decision["machines_total"],
            processors=decision["processors_total"], created=sum(len(v) for v in decision["created"].values()),
            deleted=len(decision["deleted"]), closed=len(decision["closed"]),
        )

    def cycle_failed(self, space: str, error: BaseException) -> None:
        log.error("cycle failed", space=space, error=type(error).__name__, detail=str(error))
