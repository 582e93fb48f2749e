"""Prometheus metrics: a reporter that counts what the cycle does, and the
endpoint's request counts, served at the endpoint's `/metrics`.

`Metrics` owns one registry per daemon (not prometheus_client's global
one, so that tests and several daemons in one process never mix figures).
`MetricsReporter` is the log reporter plus the counting: operators get the
same events as log lines and as series.

    vacagent_machines{space,machinetype,state}          machines at the last cycle
    vacagent_processors{space,machinetype}              processors in use at the last cycle
    vacagent_machines_created_total{space,machinetype}
    vacagent_create_failures_total{space,machinetype}
    vacagent_machines_deleted_total{space,machinetype,reason}
    vacagent_machines_finished_total{space,machinetype,code}   code "none": no shutdown message
    vacagent_cycle_duration_seconds{space}               histogram
    vacagent_ledger_processor_seconds_total{space,machinetype,phase}   finished machines' ledger
    vacagent_ledger_live_processor_seconds{space,machinetype,phase}    open machines' ledger so far
    vacagent_backend_requests_total{space,backend,operation,outcome}   outcome: ok, capacity, quota,
                                                         temporary, permanent, not_found, error
    vacagent_backend_request_duration_seconds{backend,operation}       histogram
    vacagent_heartbeat_age_seconds{space,machinetype}    oldest heartbeat of a machine past fizzle_seconds
    vacagent_heartbeats_late{space,machinetype}          such machines whose heartbeat is late
    vacagent_backoff{space,machinetype}                  1 while the machinetype backs off, else 0
    vacagent_backoff_consecutive_aborts{space,machinetype}
    vacagent_cycle_failures_total{space}
    vacagent_endpoint_requests_total{route,status}       route: machinefeatures, jobfeatures,
                                                         joboutputs, healthz, metrics, invalid, other
    vacagent_endpoint_request_duration_seconds{route}    histogram

Neighbours: `report` (the hooks), `endpoint.app` (requests, /metrics), `daemon`.
"""

from __future__ import annotations

from typing import Any, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from vacagent.clock import Clock
from vacagent.model import MachineRecord
from vacagent.report import LogReporter

_COUNTS = ("machines", "processors")  # the keys of a decision's per-machinetype counts that are not states


class Metrics:
    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series beside every counter: noise for operators
        r = self.registry = CollectorRegistry()
        self.machines = Gauge("vacagent_machines", "Machines at the last cycle, by state",
                              ["space", "machinetype", "state"], registry=r)
        self.processors = Gauge("vacagent_processors", "Processors in use at the last cycle",
                                ["space", "machinetype"], registry=r)
        self.created = Counter("vacagent_machines_created", "Machines created", ["space", "machinetype"], registry=r)
        self.create_failures = Counter("vacagent_create_failures", "Machine creations the backend refused",
                                       ["space", "machinetype"], registry=r)
        self.deleted = Counter("vacagent_machines_deleted", "Machine deletions asked of the backend",
                               ["space", "machinetype", "reason"], registry=r)
        self.finished = Counter("vacagent_machines_finished", "Machines closed, by shutdown message code",
                                ["space", "machinetype", "code"], registry=r)
        self.cycle_duration = Histogram("vacagent_cycle_duration_seconds", "Duration of one cycle of a space",
                                        ["space"], registry=r,
                                        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.cycle_failures = Counter("vacagent_cycle_failures", "Cycles that failed", ["space"], registry=r)
        self.ledger = Counter("vacagent_ledger_processor_seconds", "Processor-seconds of finished machines by "
                              "ledger phase (docs/ledger.md)", ["space", "machinetype", "phase"], registry=r)
        self.ledger_live = Gauge("vacagent_ledger_live_processor_seconds", "Processor-seconds so far of open "
                                 "machines by ledger phase", ["space", "machinetype", "phase"], registry=r)
        self.backend_requests = Counter("vacagent_backend_requests", "Backend (cloud API) calls by outcome",
                                        ["space", "backend", "operation", "outcome"], registry=r)
        self.backend_duration = Histogram("vacagent_backend_request_duration_seconds", "Backend call duration",
                                          ["backend", "operation"], registry=r,
                                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.heartbeat_age = Gauge("vacagent_heartbeat_age_seconds", "Age of the oldest heartbeat of a running "
                                   "machine past fizzle_seconds", ["space", "machinetype"], registry=r)
        self.heartbeats_late = Gauge("vacagent_heartbeats_late", "Running machines whose heartbeat is older "
                                     "than heartbeat_seconds", ["space", "machinetype"], registry=r)
        self.backoff = Gauge("vacagent_backoff", "1 while the machinetype is in backoff", ["space", "machinetype"],
                             registry=r)
        self.backoff_aborts = Gauge("vacagent_backoff_consecutive_aborts", "Consecutive aborts of the machinetype",
                                    ["space", "machinetype"], registry=r)
        self.requests = Counter("vacagent_endpoint_requests", "Endpoint requests by route and status",
                                ["route", "status"], registry=r)
        self.request_duration = Histogram("vacagent_endpoint_request_duration_seconds",
                                          "Endpoint request handling time", ["route"], registry=r,
                                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1))
        self._series: dict[str, set[tuple[str, str]]] = {}  # space -> (machinetype, state) last set
        self._request_children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def endpoint_request(self, route: str, status: int, seconds: float) -> None:
        # Per request, on the endpoint's event loop: look each labelled child up once.
        children = self._request_children.get((route, status))
        if children is None:
            children = self.requests.labels(route, str(status)), self.request_duration.labels(route)
            self._request_children[(route, status)] = children
        children[0].inc()
        children[1].observe(max(0.0, seconds))

    def machines_seen(self, space: str, per_machinetype: Mapping[str, Mapping[str, int]]) -> None:
        """Set the gauges from one cycle's counts; series that vanished are removed, not left stale."""
        current: set[tuple[str, str]] = set()
        for machinetype, counts in per_machinetype.items():
            self.processors.labels(space, machinetype).set(counts.get("processors", 0))
            for state, n in counts.items():
                if state not in _COUNTS:
                    self.machines.labels(space, machinetype, state).set(n)
                    current.add((machinetype, state))
        for machinetype, state in self._series.get(space, set()) - current:
            self.machines.remove(space, machinetype, state)
        for machinetype in {mt for mt, _ in self._series.get(space, set())} - set(per_machinetype):
            self.processors.remove(space, machinetype)
        self._series[space] = current

    def cycle_seen(self, space: str, decision: Mapping[str, Any], machinetypes: set[str]) -> None:
        """The per-machinetype gauges from one decision record: live ledger, heartbeats, backoff."""
        for mt, phases in decision.get("ledger_live", {}).items():
            for phase, value in phases.items():
                self.ledger_live.labels(space, mt, phase).set(value)
        for mt in machinetypes:
            beats = decision.get("heartbeats", {}).get(mt, {})
            self.heartbeat_age.labels(space, mt).set(beats.get("max_age", 0))
            self.heartbeats_late.labels(space, mt).set(beats.get("late", 0))
            backoff = decision.get("backoff", {}).get(mt)
            self.backoff.labels(space, mt).set(1 if backoff else 0)
            self.backoff_aborts.labels(space, mt).set(backoff["consecutive_aborts"] if backoff else 0)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsReporter(LogReporter):
    def __init__(self, metrics: Metrics, clock: Clock):
        self.metrics = metrics
        self.clock = clock

    def machine_created(self, space: str, record: MachineRecord, probe: bool) -> None:
        super().machine_created(space, record, probe)
        self.metrics.created.labels(space, record.machinetype).inc()

    def create_failed(self, space: str, machinetype: str, name: str, error: BaseException, backs_off: bool) -> None:
        super().create_failed(space, machinetype, name, error, backs_off)
        self.metrics.create_failures.labels(space, machinetype).inc()

    def machine_deleting(self, space: str, record: MachineRecord, reason: str, message: str | None) -> None:
        super().machine_deleting(space, record, reason, message)
        self.metrics.deleted.labels(space, record.machinetype, reason).inc()

    def machine_closed(self, space: str, accounting: Mapping[str, Any]) -> None:
        super().machine_closed(space, accounting)
        code = accounting.get("code")
        self.metrics.finished.labels(space, accounting["machinetype"], str(code) if code else "none").inc()
        for phase, value in accounting.get("ledger_processor_seconds", {}).items():
            self.metrics.ledger.labels(space, accounting["machinetype"], phase).inc(value)

    def backend_request(self, space: str, backend: str, operation: str, outcome: str, seconds: float) -> None:
        self.metrics.backend_requests.labels(space, backend, operation, outcome).inc()
        self.metrics.backend_duration.labels(backend, operation).observe(seconds)

    def cycle_done(self, space: str, decision: Mapping[str, Any]) -> None:
        super().cycle_done(space, decision)
        self.metrics.machines_seen(space, decision["machinetypes"])
        known = set(decision["machinetypes"]) | set(decision.get("held", {})) | set(decision.get("backoff", {}))
        self.metrics.cycle_seen(space, decision, known)
        # The decision carries the cycle's start time (its `now`).
        self.metrics.cycle_duration.labels(space).observe(max(0.0, self.clock.now() - decision["time"]))

    def cycle_failed(self, space: str, error: BaseException) -> None:
        super().cycle_failed(space, error)
        self.metrics.cycle_failures.labels(space).inc()
