"""The state directory: atomic writes, intent, closing, pruning, the record cache."""

import json
import os

import pytest

from vacagent.backoff import FeedbackState
from vacagent.model import MachineRecord, Outcome
from vacagent.state import atomic
from vacagent.state.store import SpaceStore

from conftest import T0


def record(name="mt-1", **kw):
    return MachineRecord(name=name, space="s", machinetype="mt", processors=2, created=T0, **kw)


def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / "a" / "f.json"
    atomic.write_json(path, {"v": 1})
    atomic.write_json(path, {"v": 2})
    assert atomic.read_json(path) == {"v": 2}
    assert [p.name for p in path.parent.iterdir()] == ["f.json"]  # no temp files left


def test_failed_write_leaves_the_old_file(tmp_path):
    path = tmp_path / "f.json"
    atomic.write_json(path, {"v": 1})

    class Boom:
        pass

    with pytest.raises(TypeError):
        atomic.write_json(path, {"v": Boom()})
    assert atomic.read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_crash_before_rename_leaves_old_content(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic.write_json(path, {"v": 1})

    def crash(*a):
        raise OSError("killed")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic.write_json(path, {"v": 2})
    monkeypatch.undo()
    assert atomic.read_json(path) == {"v": 1}


def test_append_line_keeps_lines_whole(tmp_path):
    path = tmp_path / "log.jsonl"
    for i in range(100):
        atomic.append_line(path, {"i": i, "pad": "x" * 200})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["i"] for line in lines] == list(range(100))


def test_intent_creates_the_whole_directory_at_once(tmp_path):
    store = SpaceStore(tmp_path, "s", "site")
    path = store.write_intent(record(), {"machinefeatures/total_cpu": "2\n"})
    assert (path / "machinefeatures" / "total_cpu").read_text() == "2\n"
    assert (path / "joboutputs").is_dir() and (path / "jobfeatures").is_dir()
    assert atomic.read_json(path / "machine.json")["machinetype"] == "mt"
    assert sorted(p.name for p in store.machines_dir.iterdir()) == ["mt-1"]  # no temp dir left
    with pytest.raises(OSError):
        store.write_intent(record())  # a name is never reused


def test_records_round_trip_and_cache_rereads_changes(tmp_path):
    store = SpaceStore(tmp_path, "s", "site")
    store.write_intent(record("a"))
    store.write_intent(record("b"))
    assert set(store.records()) == {"a", "b"}
    r = store.records()["a"]
    outcome = Outcome("300 x", 300, 12.5, True, "stopped", T0 + 20)
    store.save(MachineRecord(**{**r.__dict__, "state": "running", "outcome": outcome}))
    again = store.records()
    assert again["a"].state == "running" and again["a"].outcome == outcome
    assert again["b"] == store.records()["b"]


def test_another_writer_is_seen(tmp_path):
    store = SpaceStore(tmp_path, "s", "site")
    store.write_intent(record("a"))
    store.records()
    other = SpaceStore(tmp_path, "s", "site")  # e.g. `vacagent once` in another process
    other.save(MachineRecord(**{**record("a").__dict__, "state": "stopped"}))
    assert store.records()["a"].state == "stopped"


def test_outputs_and_our_shutdown_message_never_overwrites(tmp_path):
    store = SpaceStore(tmp_path, "s", "site")
    path = store.write_intent(record())
    assert store.outputs("mt-1", "heartbeat").shutdown_message is None
    (path / "joboutputs" / "shutdown_message").write_text("300 No more work available\n")
    os.utime(path / "joboutputs" / "shutdown_message", (T0 + 5, T0 + 5))
    (path / "joboutputs" / "heartbeat").write_text("")
    os.utime(path / "joboutputs" / "heartbeat", (T0 + 7, T0 + 7))
    out = store.outputs("mt-1", "heartbeat")
    assert out.shutdown_message.startswith("300") and out.shutdown_message_at == T0 + 5
    assert out.heartbeat_at == T0 + 7
    assert store.write_shutdown_message("mt-1", "700 Heartbeat not updated") is False
    assert (path / "joboutputs" / "shutdown_message").read_text().startswith("300")


def test_close_moves_to_finished_and_writes_accounting(tmp_path):
    store = SpaceStore(tmp_path, "s", "site")
    store.write_intent(record())
    outcome = Outcome("200 ok", 200, 900.0, False, "stopped", T0 + 900)
    line = store.close(record(), outcome, T0 + 1000)
    assert store.records() == {}
    (finished,) = list(store.finished())
    assert finished.name == "mt-1" and finished.parent.name == "2027-01-15"
    assert atomic.read_json(finished / "machine.json")["outcome"]["message"] == "200 ok"
    accounting = (tmp_path / "accounting" / "2027-01-15.jsonl").read_text().splitlines()
    assert json.loads(accounting[0]) == line
    assert line["ran_seconds"] == 900.0 and line["site"] == "site" and line["processors"] == 2


def test_prune_finished_after_retention(tmp_path):
    store = SpaceStore(tmp_path, "s", "site")
    for day in ("2027-01-01", "2027-01-10", "2027-01-15"):
        (store.finished_dir / day / "m").mkdir(parents=True)
    assert store.prune_finished(T0, retention_days=7) == 1  # T0 is 2027-01-15
    assert sorted(p.name for p in store.finished_dir.iterdir()) == ["2027-01-10", "2027-01-15"]


def test_feedback_and_definitions(tmp_path):
    store = SpaceStore(tmp_path, "s", "site")
    assert store.feedback("mt") == FeedbackState()
    state = FeedbackState(2, T0, T0 + 100, T0, "x")
    store.save_feedback("mt", state)
    assert store.feedback("mt") == state
    store.save_definition("mt", {"a": 1})
    assert store.definition("mt") == {"a": 1} and store.stored_machinetypes() == ["mt"]


def test_decisions_rotate(tmp_path):
    store = SpaceStore(tmp_path, "s", "site")
    for i in range(50):
        store.append_decision({"i": i, "pad": "x" * 100}, max_bytes=1000)
    assert store.decisions_path.stat().st_size <= 1000 + 200
    assert store.decisions_path.with_suffix(".jsonl.1").exists()
