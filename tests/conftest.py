"""Shared builders for tests: small constructors with sensible defaults."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from vacagent.clock import FakeClock
from vacagent.model import MachineState, MachineType, MachineView, SpaceLimits

T0 = 1_800_000_000.0
REPO = Path(__file__).resolve().parent.parent
FIXTURE_PIPE = REPO / "tests" / "fixtures" / "example.pipe"


def mt(name: str = "p-a", **kw) -> MachineType:
    defaults = dict(backoff_seconds=100, fizzle_seconds=60, max_wallclock_seconds=10_000)
    defaults.update(kw)
    return MachineType(name=name, **defaults)


def view(name: str = "p-a-1", machinetype: str = "p-a", state: MachineState = MachineState.RUNNING,
         created: float = T0, started: float | None = T0, processors: int = 1, **kw) -> MachineView:
    return MachineView(name=name, machinetype=machinetype, processors=processors, state=state,
                       created=created, started=started, **kw)


def limits(processors_limit: int = 100, **kw) -> SpaceLimits:
    return SpaceLimits(processors_limit=processors_limit, **kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def vacagent_bin() -> str:
    exe = Path(sys.executable).parent / "vacagent"
    assert exe.exists(), "vacagent is not installed in this environment (pip install -e .)"
    return str(exe)


# .ci/run sets this: there, a test whose service (OpenStack, FUSE, tmpfs, ...) cannot be
# brought up fails instead of skipping, so CI never passes by testing nothing.
REQUIRE_SERVICES = os.environ.get("VACAGENT_REQUIRE_SERVICES") == "1"


def service_unavailable(reason: str) -> None:
    """Skip (on a developer's machine) or fail (in CI) a test whose service cannot run here."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (VACAGENT_REQUIRE_SERVICES=1: a service test may not skip here)")
    pytest.skip(reason)


# The OpenStack control plane, once per session, for tests marked `openstack` (tests/openstack_support.py).
from openstack_support import (  # noqa: E402,F401
    _openstack_for_marked_tests,
    openstack_cloud,
    pytest_collection_modifyitems,
)
