"""Format versions of the files vacagent writes in the state directory.

Every JSON file (and every JSON line) vacagent writes carries `"format": N`,
the format of the vacagent that wrote it.  A file without the key was
written before formats existed and is format 1.  The rule that makes
rolling upgrades safe:

- a newer vacagent reads every older format (new keys have defaults);
- an older vacagent that meets a newer format refuses it (`FormatTooNew`,
  naming the file and both numbers) instead of misreading it; the cycle
  then refuses that one space and leaves it to an instance that reads it.

Bump FORMAT when a file's meaning changes in a way an older reader would
get wrong (a renamed or reinterpreted key), not for a new optional key.

Neighbours: `store` (records, feedback, definitions), `lease`, `instances`,
`uptime`; docs/operations.md (rolling upgrade).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vacagent.state.atomic import read_json, write_json

FORMAT = 2  # 2: leases, instances, epochs on records
KEY = "format"


class FormatTooNew(Exception):
    """A file written by a newer vacagent than this one."""

    def __init__(self, path: Path | str, found: object):
        self.path = str(path)
        self.found = found
        super().__init__(
            f"{path}: format {found!r} was written by a newer vacagent; this one reads formats 1 to {FORMAT}: "
            "upgrade this instance (the space is left to instances that read it)"
        )


def stamped(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with this vacagent's format number."""
    return {KEY: FORMAT, **data}


def checked(data: Any, path: Path | str) -> Any:
    """`data` as read from `path`, or FormatTooNew if a newer vacagent wrote it."""
    if isinstance(data, dict):
        found = data.get(KEY, 1)
        if not isinstance(found, int) or isinstance(found, bool) or found > FORMAT:
            raise FormatTooNew(path, found)
    return data


def read(path: Path) -> Any:
    return checked(read_json(path), path)


def write(path: Path, data: dict[str, Any]) -> None:
    write_json(path, stamped(data))
