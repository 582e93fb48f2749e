"""Format versions: a newer vacagent reads what an older one wrote; an older one refuses newer files."""

from __future__ import annotations

import json

import pytest

from vacagent.backoff import FeedbackState
from vacagent.model import MachineRecord
from vacagent.state import formats
from vacagent.state.store import SpaceStore

# machine.json as vacagent 0.1.0 (before formats and leases) wrote it.
OLD_RECORD = {
    "adopted": False, "backend_id": "local:123", "created": 1700000000.0, "deleting_since": None,
    "listed": True, "machinetype": "churn", "name": "churn-0a1b2c3d", "processors": 1, "space": "lab",
    "started": 1700000010.0, "state": "running",
}


def test_an_old_record_is_read_by_the_new_code(tmp_path):
    store = SpaceStore(tmp_path, "lab")
    directory = store.machine_dir("churn-0a1b2c3d")
    directory.mkdir(parents=True)
    (directory / "machine.json").write_text(json.dumps(OLD_RECORD))
    record = store.records()["churn-0a1b2c3d"]
    assert record.epoch == 0 and record.state == "running" and record.backend_id == "local:123"


def test_an_old_feedback_file_is_read_by_the_new_code(tmp_path):
    store = SpaceStore(tmp_path, "lab")
    (store.machinetypes_dir / "churn").mkdir(parents=True)
    (store.machinetypes_dir / "churn" / "feedback.json").write_text(json.dumps({"consecutive_aborts": 2}))
    assert store.feedback("churn") == FeedbackState(consecutive_aborts=2)


def test_new_files_carry_the_format(tmp_path):
    store = SpaceStore(tmp_path, "lab")
    store.write_intent(MachineRecord("churn-1", "lab", "churn", 1, 1.0, epoch=4))
    store.save_feedback("churn", FeedbackState())
    store.save_definition("churn", {"processors": 1})
    stored = json.loads((store.machine_dir("churn-1") / "machine.json").read_text())
    assert stored["format"] == formats.FORMAT and stored["epoch"] == 4
    assert json.loads((store.machinetypes_dir / "churn" / "feedback.json").read_text())["format"] == formats.FORMAT
    assert store.definition("churn") == {"processors": 1}  # the format key is not part of the definition


@pytest.mark.parametrize("reader", ["records", "feedback", "definition"])
def test_code_pretending_to_be_older_refuses_the_new_files(tmp_path, monkeypatch, reader):
    store = SpaceStore(tmp_path, "lab")
    store.write_intent(MachineRecord("churn-1", "lab", "churn", 1, 1.0))
    store.save_feedback("churn", FeedbackState())
    store.save_definition("churn", {"processors": 1})
    monkeypatch.setattr(formats, "FORMAT", 1)
    older = SpaceStore(tmp_path, "lab")
    call = {"records": older.records, "feedback": lambda: older.feedback("churn"),
            "definition": lambda: older.definition("churn")}[reader]
    with pytest.raises(formats.FormatTooNew, match=r"format 2 was written by a newer vacagent; this one reads formats 1 to 1"):
        call()


@pytest.mark.parametrize("value", [3, "2", None, True])
def test_a_format_this_code_does_not_know_is_refused(value):
    with pytest.raises(formats.FormatTooNew, match="some/file.json"):
        formats.checked({"format": value if value != 3 else formats.FORMAT + 1}, "some/file.json")
