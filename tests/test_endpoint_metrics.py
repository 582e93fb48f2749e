"""Prometheus metrics: the reporter counts what real cycles do (fake
backend, real state directory), and series of vanished states go away."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from vacagent import config, cycle
from vacagent.clock import FakeClock
from vacagent.metrics import Metrics, MetricsReporter

from conftest import T0


def samples(metrics: Metrics) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition()[0].decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_reporter_counts_cycles(tmp_path):
    (tmp_path / "x.sh").write_text("#!/bin/sh\n")
    (tmp_path / "vacagent.yaml").write_text("""
site: m.test
state_dir: state
spaces:
  lab:
    backend: fake
    options: {boot_seconds: 0}
    processors_limit: 3
    creation_budget_processors: 3
    machinetypes:
      lab-a: {user_data: x.sh, fizzle_seconds: 10, backoff_seconds: 100}
""")
    settings = config.load(tmp_path / "vacagent.yaml")
    clock = FakeClock(T0)
    metrics = Metrics()
    space = cycle.build(settings, settings.spaces["lab"], MetricsReporter(metrics, clock), clock)
    cycle.run_once(space, clock.now())
    clock.advance(1)
    cycle.run_once(space, clock.now())
    lab_a = (("machinetype", "lab-a"), ("space", "lab"))
    got = samples(metrics)
    assert got[("vacagent_machines_created_total", lab_a)] == 3
    assert got[("vacagent_machines", (*lab_a[:1], ("space", "lab"), ("state", "running")))] == 3
    assert got[("vacagent_processors", lab_a)] == 3
    assert got[("vacagent_cycle_duration_seconds_count", (("space", "lab"),))] == 2
    # All three stop with 300: they are deleted, closed, and the running series goes away.
    for name in list(space.backend.machines):
        space.backend.stop(name, "300 No more work available")
    clock.advance(1)
    cycle.run_once(space, clock.now())
    clock.advance(1)
    cycle.run_once(space, clock.now())
    got = samples(metrics)
    assert got[("vacagent_machines_deleted_total", (*lab_a[:1], ("reason", "stopped"), ("space", "lab")))] == 3
    assert got[("vacagent_machines_finished_total", (("code", "300"), *lab_a))] == 3
    assert not any(name == "vacagent_machines" for name, _ in got)
    assert ("vacagent_processors", lab_a) not in got
    assert not any(name.endswith("_created") for name, _ in got)
