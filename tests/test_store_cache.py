"""The state store's record cache: own writes are seen at once, other stores' writes after their stamp."""

import os

from vacagent.model import MachineRecord, Outcome
from vacagent.state.store import SpaceStore

from conftest import T0


def record(name="p-a-1", **kw):
    return MachineRecord(name=name, space="s", machinetype="p-a", processors=1, created=T0, **kw)


def test_own_writes_are_cached_and_need_no_reread(tmp_path):
    store = SpaceStore(tmp_path, "s")
    assert store.records() == {}
    store.write_intent(record())
    store.save(record(state="running", started=T0 + 5, listed=True))
    assert store.records()["p-a-1"].state == "running"
    os.remove(store.machine_dir("p-a-1") / "machine.json")  # behind the store's back: it does not look
    assert "p-a-1" in store.records()


def test_another_stores_cycle_is_seen_in_the_next_cycle(tmp_path):
    """Cycles take turns under the cycle lock: each reads the records, then writes."""
    mine, other = SpaceStore(tmp_path, "s"), SpaceStore(tmp_path, "s")
    mine.records()
    mine.write_intent(record())
    assert other.records()["p-a-1"].state == "intent"  # a new store reads everything
    other.save(record(state="running", started=T0 + 5, listed=True))
    other.write_intent(record("p-a-2"))
    seen = mine.records()
    assert seen["p-a-1"].state == "running" and "p-a-2" in seen
    other.records()
    other.close(record("p-a-2"), Outcome("200 ok", 200, 10.0, False, "stopped", T0 + 20), T0 + 20)
    assert set(mine.records()) == {"p-a-1"}


def test_a_failed_write_drops_the_cache(tmp_path, monkeypatch):
    store = SpaceStore(tmp_path, "s")
    store.write_intent(record())
    store.records()

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    with monkeypatch.context() as m:
        m.setattr("vacagent.state.store.write_json", broken)
        try:
            store.save(record(state="running"))
        except OSError:
            pass
    os.remove(store.machine_dir("p-a-1") / "machine.json")
    assert store.records() == {}  # read again from the disk, not from the cache


def test_every_cycle_of_another_store_is_seen_even_if_it_writes_the_same_stamp_twice(tmp_path):
    mine, other = SpaceStore(tmp_path, "s"), SpaceStore(tmp_path, "s")
    mine.write_intent(record())
    for i in range(3):
        mine.records()
        other.records()
        other.save(record(state="running", started=T0 + i, listed=True))
        assert mine.records()["p-a-1"].started == T0 + i


def test_closed_records_leave_the_cache_and_the_machines_directory(tmp_path):
    store = SpaceStore(tmp_path, "s")
    store.write_intent(record())
    store.close(record(), Outcome("300 no work", 300, 5.0, True, "stopped", T0 + 9), T0 + 9)
    assert store.records() == {} and not store.machine_dir("p-a-1").exists()
    assert SpaceStore(tmp_path, "s").records() == {}


def test_outputs_read_the_shutdown_message_and_the_heartbeat_time(tmp_path):
    store = SpaceStore(tmp_path, "s")
    store.write_intent(record())
    outputs = store.machine_dir("p-a-1") / "joboutputs"
    assert store.outputs("p-a-1", "heartbeat").shutdown_message is None
    (outputs / "heartbeat").write_text("")
    os.utime(outputs / "heartbeat", (T0 + 7, T0 + 7))
    (outputs / "shutdown_message").write_text("300 No more work available\n")
    os.utime(outputs / "shutdown_message", (T0 + 8, T0 + 8))
    got = store.outputs("p-a-1", "heartbeat")
    assert (got.shutdown_message, got.shutdown_message_at, got.heartbeat_at) == \
        ("300 No more work available\n", T0 + 8, T0 + 7)
    assert store.outputs("p-a-1", None).heartbeat_at is None
