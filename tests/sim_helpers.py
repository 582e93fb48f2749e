"""Builders for simulator tests: tiny scenarios written to a temporary file."""

from __future__ import annotations

import json
from pathlib import Path

from vacagent.sim import scenario as scenarios


def write(tmp_path: Path, data: dict, name: str = "tiny.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def tiny(**overrides) -> dict:
    """One project, one processor, one job of 1000 s at time 0; boots take 60 s."""
    data = {
        "duration": 1500,
        "cycle_seconds": 60,
        "spaces": [{"name": "lab", "processors": 1, "boot_seconds": 60}],
        "projects": [{"name": "alpha", "idle_seconds": 120, "workload": [{"kind": "jobs", "jobs": [[0, 1, 1000]]}]}],
    }
    data.update(overrides)
    return data


def load(tmp_path: Path, data: dict, seed: int | None = None) -> scenarios.Scenario:
    return scenarios.load(str(write(tmp_path, data)), seed)
