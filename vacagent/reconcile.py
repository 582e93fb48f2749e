"""Join the backend's listing with the state store's records.  Pure.

- listed, with a record: the record follows what the backend says (state,
  first time seen running);
- listed, no record: *adopted* (a daemon died between create and record, or
  a record was lost): a new record is made from the listing;
- a record, not listed: *gone* if the machine was listed before or its
  deletion was asked for; *gone* too (it failed to start) if it was never
  listed within `intent_grace_seconds` of its intent; otherwise still
  starting (the cloud may not list it yet).

Used by `cycle` before the planner; the simulator runs it too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping, NamedTuple

from vacagent.model import STATE_VALUE, Machine, MachineRecord, MachineState


class Pair(NamedTuple):  # one per machine per cycle: a tuple is three times cheaper to build than a frozen dataclass
    record: MachineRecord
    machine: Machine | None
    state: MachineState  # what the planner sees (GONE if not listed any more)


@dataclass(frozen=True)
class Reconciled:
    pairs: tuple[Pair, ...]
    changed: tuple[MachineRecord, ...]  # existing records to save
    adopted: tuple[MachineRecord, ...]  # new records to create


def _observe(record: MachineRecord, machine: Machine, now: float) -> MachineRecord:
    if (
        record.listed
        and record.started is not None
        and record.state == STATE_VALUE[machine.state]
        and (not machine.backend_id or machine.backend_id == record.backend_id)
    ):
        return record  # nothing to learn: the common case, and `replace` is slow at 50,000 machines
    started = record.started
    if started is None:
        if machine.started_at is not None:
            started = machine.started_at
        elif machine.state in (MachineState.RUNNING, MachineState.DELETING):
            started = now  # first seen running; a machine that stopped unseen stays unknown
        if started is not None:
            # Backends' start times can be coarse (the local one is to a second).
            started = max(started, record.created)
    return replace(
        record,
        state=machine.state.value,
        backend_id=machine.backend_id or record.backend_id,
        started=started,
        listed=True,
    )


def reconcile(
    listing: Iterable[Machine],
    records: Mapping[str, MachineRecord],
    space: str,
    now: float,
    intent_grace_seconds: float,
) -> Reconciled:
    listed = {m.name: m for m in listing}
    pairs: list[Pair] = []
    changed: list[MachineRecord] = []
    adopted: list[MachineRecord] = []

    for name, record in records.items():
        machine = listed.get(name)
        if machine is not None:
            updated = _observe(record, machine, now)
            if updated != record:
                changed.append(updated)
            pairs.append(Pair(updated, machine, machine.state))
        elif record.listed or record.deleting_since is not None or now - record.created > intent_grace_seconds:
            pairs.append(Pair(record, None, MachineState.GONE))
        else:
            pairs.append(Pair(record, None, MachineState.STARTING))

    for name, machine in listed.items():
        if name in records:
            continue
        record = _observe(
            MachineRecord(
                name=name,
                space=space,
                machinetype=machine.machinetype,
                processors=machine.processors,
                created=machine.started_at if machine.started_at is not None else now,
                adopted=True,
            ),
            machine,
            now,
        )
        adopted.append(record)
        pairs.append(Pair(record, machine, machine.state))

    return Reconciled(tuple(pairs), tuple(changed), tuple(adopted))
