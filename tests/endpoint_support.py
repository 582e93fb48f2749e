"""Builders for the endpoint tests: machines made by the real Actuator in a
real state directory, a running endpoint, raw HTTP requests, and a
fingerprint of the whole state directory."""

from __future__ import annotations

import hashlib
import http.client
import os
import stat
from pathlib import Path

from vacagent.actuate import Actuator
from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.backends.fake import FakeBackend
from vacagent.backoff import FeedbackState
from vacagent.clock import SystemClock
from vacagent.fetch import Fetcher
from vacagent.model import MachineType
from vacagent.report import Reporter
from vacagent.state.store import SpaceStore


def machinetype(tmp: Path, name: str = "proj-a", template: str = "##user_data_token##", **kw) -> MachineType:
    path = tmp / f"{name}.user_data"
    path.write_text(template)
    kw.setdefault("heartbeat_file", "heartbeat")
    return MachineType(name=name, user_data=str(path), **kw)


class RecordingBackend(FakeBackend):
    """The fake backend, also keeping every create request (environment included)."""

    def __init__(self, context: BackendContext):
        super().__init__(context)
        self.requests: list[CreateRequest] = []

    def create_machine(self, request: CreateRequest):
        self.requests.append(request)
        return super().create_machine(request)


def actuator(state: Path, space: str, endpoint_url: str | None, reporter: Reporter | None = None,
             **options) -> Actuator:
    backend = RecordingBackend(BackendContext("site", space, state, options, SystemClock()))
    return Actuator(space, "site", backend, SpaceStore(state, space, "site"), Fetcher(state / "cache"),
                    reporter or Reporter(), endpoint_url=endpoint_url)


def create(act: Actuator, mt: MachineType) -> tuple[str, str]:
    """Create one machine whose user_data is its token; returns (name, token)."""
    store = act.store
    store.save_definition(mt.name, {"heartbeat_file": mt.heartbeat_file} if mt.heartbeat_file else {})
    record, _ = act.create(mt, False, FeedbackState(), SystemClock().now())
    assert record is not None
    return record.name, act.backend.machines[record.name].user_data


def request(port: int, method: str, path: str, token: str | None = None, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with the path sent exactly as given (no encoding, no normalization)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        all_headers = dict(headers or {})
        if token is not None:
            all_headers.setdefault("Authorization", f"Bearer {token}")
        if body is not None and "Transfer-Encoding" not in all_headers:
            all_headers.setdefault("Content-Length", str(len(body)))
        for key, value in all_headers.items():
            conn.putheader(key, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def fingerprint(root: Path) -> dict[str, tuple]:
    """Every entry under `root`: kind, mtime (ns), size and content hash (or link target)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[str(path.relative_to(root))] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[str(path.relative_to(root))] = ("file", st.st_mtime_ns, st.st_size, digest)
            else:
                out[str(path.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_mtime_ns)
    return out
