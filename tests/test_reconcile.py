"""Joining the backend listing with the records: adopt, follow, spot the gone."""

from vacagent.model import Machine, MachineRecord, MachineState as S
from vacagent.reconcile import reconcile

from conftest import T0


def rec(name, **kw):
    return MachineRecord(name=name, space="s", machinetype="mt", processors=1, created=T0, **kw)


def machine(name, state=S.RUNNING, started=T0 + 5, **kw):
    return Machine(name=name, machinetype="mt", state=state, backend_id=f"id-{name}", started_at=started, **kw)


def test_listed_record_follows_the_backend():
    r = reconcile([machine("a")], {"a": rec("a")}, "s", T0 + 10, 300)
    (pair,) = r.pairs
    assert pair.state is S.RUNNING
    assert pair.record.listed and pair.record.backend_id == "id-a" and pair.record.started == T0 + 5
    assert r.changed == (pair.record,) and r.adopted == ()


def test_unchanged_record_is_not_rewritten():
    first = reconcile([machine("a")], {"a": rec("a")}, "s", T0 + 10, 300).changed[0]
    assert reconcile([machine("a")], {"a": first}, "s", T0 + 20, 300).changed == ()


def test_first_seen_running_without_backend_start_time():
    r = reconcile([machine("a", started=None)], {"a": rec("a")}, "s", T0 + 42, 300)
    assert r.pairs[0].record.started == T0 + 42


def test_stopped_unseen_has_unknown_start():
    r = reconcile([machine("a", state=S.STOPPED, started=None)], {"a": rec("a")}, "s", T0 + 42, 300)
    assert r.pairs[0].record.started is None


def test_coarse_backend_start_time_is_not_before_intent():
    r = reconcile([machine("a", started=T0 - 0.5)], {"a": rec("a")}, "s", T0 + 1, 300)
    assert r.pairs[0].record.started == T0


def test_unknown_machine_is_adopted():
    r = reconcile([machine("x")], {}, "s", T0 + 10, 300)
    (adopted,) = r.adopted
    assert adopted.adopted and adopted.name == "x" and adopted.listed and adopted.created == T0 + 5
    assert r.pairs[0].state is S.RUNNING


def test_record_not_yet_listed_is_starting_within_grace():
    r = reconcile([], {"a": rec("a")}, "s", T0 + 300, 300)
    assert r.pairs[0].state is S.STARTING


def test_record_never_listed_is_gone_after_grace():
    r = reconcile([], {"a": rec("a")}, "s", T0 + 300.5, 300)
    assert r.pairs[0].state is S.GONE


def test_listed_before_then_missing_is_gone_at_once():
    r = reconcile([], {"a": rec("a", listed=True)}, "s", T0 + 1, 300)
    assert r.pairs[0].state is S.GONE


def test_deleted_and_missing_is_gone():
    r = reconcile([], {"a": rec("a", deleting_since=T0 + 1)}, "s", T0 + 2, 300)
    assert r.pairs[0].state is S.GONE
