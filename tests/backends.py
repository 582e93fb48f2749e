"""Drivers that let one contract suite run against every backend.

Each driver builds a backend on a fresh space, makes create requests for
machines that run until deleted or exit by themselves, and waits for the
backend to show a condition (real backends need real time to act).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.backends.fake import FakeBackend
from vacagent.backends.local import LocalBackend
from vacagent.clock import FakeClock, SystemClock
from vacagent.model import MachineType
from vacagent.state.atomic import read_json

from conftest import T0

MT = MachineType(name="mt", processors=2)


class FakeDriver:
    name = "fake"

    def __init__(self, tmp_path: Path, site: str = "site", space: str = "s"):
        self.clock = FakeClock(T0)
        self.context = BackendContext(site, space, tmp_path, {"boot_seconds": 5}, self.clock)
        self.backend = FakeBackend(self.context)

    def other(self, site: str, space: str):
        # A fake cloud is one process's memory: another space is another fake.
        return FakeBackend(BackendContext(site, space, self.context.state_dir, {}, self.clock))

    def request(self, name: str) -> CreateRequest:
        return CreateRequest(name, MT, "#!/bin/sh\nsleep 600\n")

    def let_exit(self, name: str) -> None:
        self.backend.stop(name, None)

    def wait(self, predicate, timeout: float = 10.0):
        self.clock.advance(10)
        result = predicate()
        assert result, "condition not reached"
        return result

    def cleanup(self) -> None:
        pass


class LocalDriver:
    name = "local"

    def __init__(self, tmp_path: Path, site: str = "site", space: str = "s"):
        self.tmp = tmp_path
        self.context = BackendContext(site, space, tmp_path, {"terminate_grace_seconds": 1}, SystemClock())
        self.backend = LocalBackend(self.context)
        self.exits: set[str] = set()

    def other(self, site: str, space: str):
        return LocalBackend(BackendContext(site, space, self.tmp, {}, SystemClock()))

    def request(self, name: str) -> CreateRequest:
        script = "#!/bin/sh\nwhile [ ! -e stop ]; do sleep 0.1; done\n"
        return CreateRequest(name, MT, script, {"JOBOUTPUTS": str(self.tmp / name)})

    def let_exit(self, name: str) -> None:
        (self.backend.root / name / "work" / "stop").touch()

    def wait(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result or time.monotonic() > deadline:
                assert result, "condition not reached"
                return result
            time.sleep(0.05)

    def cleanup(self) -> None:
        kill_local_machines(self.tmp)


def kill_local_machines(state_dir: Path) -> None:
    """Kill every process group a local backend started under state_dir (test hygiene)."""
    for info_path in Path(state_dir).glob("local/*/*/process.json"):
        try:
            os.killpg(read_json(info_path)["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError, KeyError, ValueError):
            pass


DRIVERS = [FakeDriver, LocalDriver]
