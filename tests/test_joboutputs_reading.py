"""The cycle reads what machines wrote defensively (issue 14): a FIFO, a
symlink, a hard link or a huge file as shutdown_message never blocks the
cycle, is never followed, and never brings more than MESSAGE_BYTES; control
characters in a message reach the log escaped."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from vacagent import logs
from vacagent.model import MachineRecord
from vacagent.state.store import MESSAGE_BYTES, SHUTDOWN_MESSAGE, SpaceStore


@pytest.fixture
def store(tmp_path):
    store = SpaceStore(tmp_path / "state", "lab", "site")
    for name in ("m-1", "m-2"):
        store.write_intent(MachineRecord(name=name, space="lab", machinetype="mt", processors=1, created=0))
    return store


def outputs_within(store, name, seconds=5.0):
    """store.outputs(name), failing the test (not hanging it) if it blocks."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(out=store.outputs(name, "heartbeat")), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "reading joboutputs blocked the cycle"
    return result["out"]


def test_fifo_as_shutdown_message_never_blocks(store):
    os.mkfifo(store.machine_dir("m-1") / "joboutputs" / SHUTDOWN_MESSAGE)
    os.mkfifo(store.machine_dir("m-1") / "joboutputs" / "heartbeat")
    out = outputs_within(store, "m-1")
    assert out.shutdown_message is None and out.heartbeat_at is None


def test_symlink_as_shutdown_message_is_never_followed(store, tmp_path):
    elsewhere = tmp_path / "secret"
    elsewhere.write_text("100 read through a link\n")
    os.symlink(elsewhere, store.machine_dir("m-1") / "joboutputs" / SHUTDOWN_MESSAGE)
    os.symlink(elsewhere, store.machine_dir("m-1") / "joboutputs" / "heartbeat")
    out = outputs_within(store, "m-1")
    assert out.shutdown_message is None and out.heartbeat_at is None


def test_hard_link_as_shutdown_message_is_ignored(store):
    theirs = store.machine_dir("m-2") / "joboutputs" / SHUTDOWN_MESSAGE
    theirs.write_text("100 another machine's message\n")
    os.link(theirs, store.machine_dir("m-1") / "joboutputs" / SHUTDOWN_MESSAGE)
    assert outputs_within(store, "m-1").shutdown_message is None


def test_huge_shutdown_message_is_read_up_to_the_cap(store):
    with open(store.machine_dir("m-1") / "joboutputs" / SHUTDOWN_MESSAGE, "wb") as f:
        f.write(b"300 " + b"x" * (64 << 20))
    assert len(outputs_within(store, "m-1").shutdown_message) == MESSAGE_BYTES


def test_control_characters_in_a_message_are_escaped_in_the_log():
    record = logging.LogRecord("vacagent.x", logging.INFO, __file__, 1, "shutdown message received", (), None)
    record.kv = {"message": "300 done\n2026-01-01 error forged line\x1b[2J\r\x00\u2028"}
    line = logs.KeyValueFormatter(timestamps=False).format(record)
    assert line.isprintable()
    assert "\\n2026-01-01 error forged line\\x1b[2J\\r\\x00\\u2028" in line


@pytest.mark.parametrize("name", ["jobs_started", "demand", "job_seconds"])
def test_fifo_as_a_reported_count_never_blocks(store, name):
    os.mkfifo(store.machine_dir("m-1") / "joboutputs" / name)
    outputs_within(store, "m-1")
