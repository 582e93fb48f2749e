"""When the site's machine endpoint last came up: `STATE/endpoint.json`.

The endpoint writes it when it starts listening; each cycle reads
`up_since` and hands it to the planner, which counts heartbeats from no
earlier than that time: machines get a full `heartbeat_seconds` to report
again after the endpoint was down (for a restart, an upgrade, a crash).
With several daemon instances, the latest start wins, which at worst
gives machines one grace period too many, never one too few.

Neighbours: `endpoint.server` writes it; `cycle` reads it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from vacagent.model import iso
from vacagent.state import formats

FILE = "endpoint.json"


def record_up(state_dir: Path, now: float, url: str | None, listen: str) -> None:
    formats.write(
        state_dir / FILE,
        {"up_since": now, "at": iso(now), "url": url, "listen": listen, "host": socket.getfqdn(), "pid": os.getpid()},
    )


def up_since(state_dir: Path) -> float | None:
    try:
        value = formats.read(state_dir / FILE).get("up_since")
    except (OSError, ValueError, AttributeError, formats.FormatTooNew):
        return None
    return float(value) if isinstance(value, (int, float)) else None
