"""Carry out a Plan: closes, deletes, then creates, in that order.

Every step writes its intent to the state store before calling the backend:
a new machine's directory and record exist before `create_machine` is
called (the name is the idempotency key); a deletion is recorded (with our
shutdown message, unless the machine left its own) before
`delete_machine`.  A crash at any point leaves a record that the next
cycle's reconcile completes: nothing is leaked.

Each new machine gets an endpoint token (see `tokens`): its hash is part
of the intent (`token.sha256`); the token itself goes only to the machine,
in its user_data (`##user_data_token##`) and its environment
(`VACAGENT_TOKEN`).  With an endpoint, the machine is also given the URLs
of its features and joboutputs; without one, the local paths.

With several instances (`state.lease`), the actuator confirms its lease
epoch immediately before every close, delete and create (`Fence.confirm`,
one stat of the next epoch's file); a holder that was superseded raises
LeaseLost there and stops acting on the space at once.  Every new record
carries the epoch it was created under.

A failed create stops creation of that machinetype for the rest of the
cycle.  A permanent error (or a user_data that cannot be rendered) is an
abort of the machinetype (its backoff escalates); a capacity or quota refusal
is not (the cloud had no room: `backoff.record_refusal`, a backoff that never
doubles) and is kept in `refused` for the cycle's decision record; a
temporary error (timeout, 5xx) does neither, and its record is kept until
reconcile sees whether the machine appeared after all.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping

from vacagent import __version__, apel, backoff, crashpoints, errors, features, tokens, userdata
from vacagent.backends.base import Backend, CreateRequest
from vacagent.backoff import FeedbackState
from vacagent.endpoint.paths import machine_urls
from vacagent.feedback import with_own_message
from vacagent.fetch import Fetcher
from vacagent.model import Cause, Machine, MachineRecord, MachineState, MachineType, Outcome, Plan, ShutdownMessage
from vacagent.report import Reporter
from vacagent.state.lease import Fence
from vacagent.state.store import SpaceStore


_REFUSAL_CAUSES = {errors.CapacityExhausted: Cause.CAPACITY, errors.QuotaExceeded: Cause.QUOTA}


def _state(record: MachineRecord) -> MachineState:
    try:
        return MachineState(record.state)
    except ValueError:
        return MachineState.UNKNOWN


def machine_name(machinetype: str) -> str:
    """`<machinetype>-<8 hex>`, at most 63 characters (a DNS label)."""
    return f"{machinetype[:54].rstrip('-')}-{secrets.token_hex(4)}"


@dataclass
class Actuator:
    space: str
    site: str
    backend: Backend
    store: SpaceStore
    fetcher: Fetcher
    reporter: Reporter
    endpoint_url: str | None = None  # base URL of the endpoint machines report to; None: local paths
    manager_hostname: str = field(default_factory=socket.getfqdn)
    apel: apel.ApelSettings | None = None  # the space's APEL accounting, if it writes records
    names: Callable[[str], str] = machine_name  # machinetype -> new machine name (the simulator's are reproducible)
    fence: Fence | None = None  # this instance's lease on the space; None: no leases (simulator, tests)

    @property
    def epoch(self) -> int:
        return self.fence.epoch if self.fence else 0

    def confirm(self, action: str, name: str) -> None:
        """Raise LeaseLost unless this instance still holds the space's lease (no-op without leases)."""
        if self.fence is not None:
            self.fence.confirm(action, name)

    unwritten: list[str] = field(default_factory=list)  # this cycle's writes a full disk refused (see `writing`)
    refused: dict[str, str] = field(default_factory=dict)  # machinetype -> the cloud's capacity/quota refusal, this cycle

    @contextlib.contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """A state write that a full disk may refuse: note it (no new machine is created
        while anything is unwritten) and go on with the rest of the cycle."""
        try:
            yield
        except OSError as e:
            if not errors.disk_full(e):
                raise
            self.unwritten.append(f"{what}: {e.strerror} ({e.filename or self.store.root})")

    def close(self, record: MachineRecord, outcome: Outcome | None, now: float,
              machinetype: MachineType | None = None) -> dict[str, Any]:
        fizzle = machinetype.fizzle_seconds if machinetype else 0.0
        final = outcome or record.outcome or Outcome("", None, 0.0, False, "gone", now)
        final = with_own_message(final, self.store.outputs(record.name, None).shutdown_message, fizzle)
        text = apel.record(self.space, self.manager_hostname, record, final, machinetype, self.apel) \
            if self.apel is not None else None
        self.confirm("closing", record.name)
        line = self.store.close(record, final, now, fizzle, (text, self.apel) if text is not None else None)
        self.reporter.machine_closed(self.space, line)
        return line

    def delete(
        self,
        record: MachineRecord,
        machine: Machine | None,
        reason: str,
        message: str | None,
        outcome: Outcome | None,
        now: float,
    ) -> bool:
        self.confirm("deleting", record.name)
        with self.writing(f"recording the deletion of {record.name}"):  # unrecorded, it is decided again
            if message:
                self.store.write_shutdown_message(record.name, message)
            self.store.save(replace(record, deleting_since=now, outcome=outcome or record.outcome))
        self.reporter.machine_deleting(self.space, record, reason, message)
        target = machine or Machine(record.name, record.machinetype, _state(record), record.backend_id)
        crashpoints.reached("before_delete")
        self.confirm("deleting", record.name)
        try:
            self.backend.delete_machine(target)
        except errors.NotFound:
            pass
        except Exception as e:  # noqa: BLE001 - any backend failure: retry after delete_retry_seconds
            self.reporter.delete_failed(self.space, record.name, e)
            return False
        crashpoints.reached("after_delete")
        return True

    def create(
        self,
        machinetype: MachineType,
        probe: bool,
        feedback: FeedbackState,
        now: float,
        extra_values: Mapping[str, str] | None = None,
        made: int = 0,
    ) -> tuple[MachineRecord | None, FeedbackState]:
        """Create one machine (after `made` of its machinetype this cycle).  Returns its record (None on
        failure) and the machinetype's feedback state, which a failure may have changed."""
        name = self.names(machinetype.name)
        try:
            token = tokens.new(self.space, name)
            urls = machine_urls(self.endpoint_url, self.space, name) if self.endpoint_url else {}
            template = userdata.load_template(machinetype, self.fetcher, now)
            values = {
                "space": self.space,
                "machinetype": machinetype.name,
                "machine_hostname": name,
                "manager_hostname": self.manager_hostname,
                "manager_version": f"vacagent {__version__}",
                **{f"{kind}_url": url for kind, url in urls.items()},
                "token": token,
                **userdata.substitutions(machinetype, self.fetcher, now),
                **(extra_values or {}),
            }
            rendered = userdata.render(template, values)
            size, limit = len(rendered.encode("utf-8")), self.backend.max_user_data_bytes
            if size > limit:
                raise errors.ConfigError(
                    f"{machinetype.source}: machinetype {machinetype.name}: user_data: rendered to {size} bytes, "
                    f"more than the backend of space {self.space} accepts ({limit} bytes)"
                )
        except errors.ConfigError as e:
            self.reporter.create_failed(self.space, machinetype.name, name, e, True)
            return None, backoff.record_abort(feedback, machinetype, now, now, f"user_data: {e}")

        record = MachineRecord(
            name=name,
            space=self.space,
            machinetype=machinetype.name,
            processors=machinetype.processors,
            created=now,
            epoch=self.epoch,
        )
        self.confirm("creating", name)
        files = {**features.features(machinetype, now), tokens.HASH_FILE: tokens.digest(token) + "\n"}
        refused = len(self.unwritten)
        with self.writing(f"writing the intent of {name}"):
            directory = self.store.write_intent(record, files)
        if len(self.unwritten) > refused:
            return None, feedback  # no intent on disk, no machine: nothing is created on a full disk
        where = urls or {kind: str(directory / kind) for kind in ("machinefeatures", "jobfeatures", "joboutputs")}
        environment = {kind.upper(): location for kind, location in where.items()}
        environment["VACAGENT_TOKEN"] = token
        request = CreateRequest(name, machinetype, rendered, environment, log_path=directory / "console.log")
        crashpoints.reached("after_intent")
        self.confirm("creating", name)
        try:
            machine = self.backend.create_machine(request)
        except Exception as e:  # noqa: BLE001 - every failure is an input
            backs_off = errors.backs_off(e)
            self.reporter.create_failed(self.space, machinetype.name, name, e, backs_off)
            if backs_off:
                # The cloud said no for certain: nothing exists, close the record now.
                message = str(ShutdownMessage(700, f"Failed to start: {e}"))[:200]
                cause = next((c for kind, c in _REFUSAL_CAUSES.items() if isinstance(e, kind)), None)
                outcome = Outcome(message, 700, 0.0, True, "create failed", now, cause.value if cause else None)
                self.close(record, outcome, now, machinetype)
                if cause is not None:  # the cloud had no room: not the project's abort
                    refusal = self.refused[machinetype.name] = f"create refused: {e}"
                    feedback = backoff.record_refusal(feedback, machinetype, now, refusal, made)
                else:
                    feedback = backoff.record_abort(feedback, machinetype, now, now, f"create failed: {e}")
            else:
                # The machine may exist after all: reconcile adopts it or closes the
                # record after intent_grace_seconds.  The backend answered: no longer
                # "intent", so a machine that never appears is the failure to start it is.
                with self.writing(f"recording the failed create of {name}"):
                    self.store.save(replace(record, state=MachineState.UNKNOWN.value))
            return None, feedback
        crashpoints.reached("after_create")
        # The cloud's count stands (an OpenStack flavor's vCPUs): accounting charges what was created.
        record = replace(record, backend_id=machine.backend_id, state=machine.state.value,
                         processors=machine.processors)
        with self.writing(f"recording the create of {name}"):  # the listing tells the next cycle
            self.store.save(record)
        self.reporter.machine_created(self.space, record, probe)
        return record, feedback

    def carry_out(
        self,
        plan: Plan,
        records: Mapping[str, MachineRecord],
        machines: Mapping[str, Machine],
        machinetypes: Mapping[str, MachineType],
        feedback: dict[str, FeedbackState],
        now: float,
    ) -> dict[str, Any]:
        """Execute the plan; `feedback` is updated in place.  Returns what was done."""
        done: dict[str, Any] = {"created": {}, "deleted": [], "closed": [], "failed": []}
        self.refused = {}
        for close in plan.closes:
            record = records[close.name]
            with self.writing(f"closing {close.name}"):  # a journaled close is completed next cycle
                self.close(record, close.outcome, now, machinetypes.get(record.machinetype))
                done["closed"].append(close.name)
        for delete in plan.deletes:
            record = records[delete.name]
            self.delete(record, machines.get(delete.name), delete.reason, delete.message, delete.outcome, now)
            done["deleted"].append({"machine": delete.name, "reason": delete.reason})
        for create in plan.creates if not self.unwritten else ():
            mt = machinetypes[create.machinetype]
            for made in range(create.count):
                state = feedback.get(mt.name, FeedbackState())
                record, new_state = self.create(mt, create.probe, state, now, made=made)
                if new_state != state:
                    feedback[mt.name] = new_state
                if record is None:
                    done["failed"].append(mt.name)
                    break
                done["created"].setdefault(mt.name, []).append(record.name)
        done["refused"] = dict(self.refused)
        return done
