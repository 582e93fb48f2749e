"""The state directory: atomic writes, intent, closing, pruning, the record cache."""

import json
import os
import subprocess
import sys

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


def test_append_line_cuts_a_torn_tail_before_the_next_line(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    atomic.append_line(path, {"i": 1})
    with open(path, "ab") as f:
        f.write(b'{"i": 2, "pa')  # a process died half-way through its line
    assert [x["i"] for x in atomic.read_lines(path)] == [1]  # the reader skips it, and says so
    assert "unreadable line skipped" in caplog.text
    atomic.append_line(path, {"i": 3})
    assert path.read_text() == '{"i":1}\n{"i":3}\n'
    assert "torn last line removed" in caplog.text


def test_append_line_rolls_back_a_short_write(tmp_path):
    """A file size limit makes write() short and then fail, as a full disk does."""
    path = tmp_path / "log.jsonl"
    atomic.append_line(path, {"i": 1})
    script = f"""
import resource, signal
from pathlib import Path
from vacagent.state import atomic
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({path.stat().st_size + 10}, resource.RLIM_INFINITY))
try:
    atomic.append_line(Path({str(path)!r}), {{"i": 2, "pad": "x" * 100}})
except OSError as e:
    print("refused", e.errno)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith("refused"), result.stderr
    assert path.read_text() == '{"i":1}\n'  # nothing of the second line is left
