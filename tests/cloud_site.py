"""A site on a cloud backend (EC2 on moto, GCE on the emulator) for end-to-end tests of the real daemon."""

from __future__ import annotations

import json
from pathlib import Path

from vacagent.state.atomic import read_json

USER_DATA = "#cloud-config\n# machine ##user_data_machine_hostname## of ##user_data_machinetype##\n"


def write_site(tmp_path: Path, site: str, backend: str, options: dict, definition: dict,
               processors_limit: int = 6) -> Path:
    """One space `cloud` with one machinetype `burst` (2 processors); quick cycles and graces."""
    (tmp_path / "user_data").write_text(USER_DATA)
    burst = {"processors": 2, "user_data": "user_data", "fizzle_seconds": 60, "backoff_seconds": 60,
             **definition}
    config = {
        "site": site,
        "state_dir": "state",
        "cycle_seconds": 0.3,
        "endpoint": {"listen": "127.0.0.1", "port": 0},  # the VMs' URLs (nothing boots them here)
        "spaces": {
            "cloud": {
                "backend": backend,
                "options": options,
                "processors_limit": processors_limit,
                "creation_budget_processors": processors_limit,
                "intent_grace_seconds": 5,
                "shutdown_grace_seconds": 1,
                "delete_retry_seconds": 2,
                "machinetypes": {"burst": burst},
            }
        },
    }
    path = tmp_path / "vacagent.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def feedback(state: Path) -> dict:
    path = state / "spaces" / "cloud" / "machinetypes" / "burst" / "feedback.json"
    return read_json(path) if path.exists() else {}
