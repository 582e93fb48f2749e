"""The endpoint's URL layout, and the checks a request path passes before
any file is touched.  Pure.

The path is taken as the client sent it (`raw_path`), never decoded: names
of spaces, machines and files never need percent-encoding, so any `%` is
refused, and so are `.`/`..` segments, empty segments (`//`), backslashes,
query strings and absolute-form targets.  Only then is anything looked up.

Neighbours: `app` calls `parse`; `actuate` calls `machine_urls` to tell a
new machine where to find its endpoint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vacagent.model import NAME_RE
from vacagent.schema import SAFE_FILE

PREFIX = "/machines/"
KINDS = {"machinefeatures": "GET", "jobfeatures": "GET", "joboutputs": "PUT"}
FILE_RE = re.compile(SAFE_FILE)  # the same rule as a definition's heartbeat_file
MAX_TARGET = 512  # longer than any valid path: /machines/ + 63 + 63 + 15 + 64 + slashes


class Refused(Exception):
    """A request answered with an error status; `reason` goes in the body (never a secret);
    `cap` names the limit it hit, if any (counted in /metrics)."""

    def __init__(self, status: int, reason: str, cap: str | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.cap = cap


@dataclass(frozen=True)
class Target:
    space: str
    machine: str
    kind: str  # machinefeatures, jobfeatures or joboutputs
    key: str  # the file name


def machine_urls(base_url: str, space: str, machine: str) -> dict[str, str]:
    """kind -> URL of the machine's directory of that kind (no trailing slash, as MJF expects)."""
    return {kind: f"{base_url}/machines/{space}/{machine}/{kind}" for kind in KINDS}


def parse(raw_path: str) -> Target:
    """The target of a request under /machines/; raises Refused (400 or 404)."""
    if len(raw_path) > MAX_TARGET:
        raise Refused(400, "request path too long")
    if not raw_path.startswith("/"):
        raise Refused(400, "absolute-form request targets are not accepted")
    if "?" in raw_path or "#" in raw_path:
        raise Refused(400, "query strings are not accepted")
    if "%" in raw_path:
        raise Refused(400, "percent-encoded paths are not accepted (names never need encoding)")
    if "\\" in raw_path:
        raise Refused(400, "backslashes are not accepted")
    segments = raw_path.split("/")[1:]
    if any(s in ("", ".", "..") for s in segments):
        raise Refused(400, "empty, '.' and '..' path segments are not accepted")
    if not raw_path.startswith(PREFIX) or len(segments) != 5:
        raise Refused(404, "no such resource: /machines/<space>/<machine>/<kind>/<file>")
    _, space, machine, kind, key = segments
    if kind not in KINDS:
        raise Refused(404, f"no such resource: {kind!r} is not one of {', '.join(KINDS)}")
    if not NAME_RE.match(space):
        raise Refused(404, "no such space")
    if not NAME_RE.match(machine):
        raise Refused(404, "no such machine")
    if not FILE_RE.match(key):
        raise Refused(400, "file names are 1-64 of [A-Za-z0-9._-], and not '.' or '..'")
    return Target(space, machine, kind, key)
