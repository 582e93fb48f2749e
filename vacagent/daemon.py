"""The outer loop: owns the clock, the signals and the sleeps.

Each space this instance holds runs in its own thread (`coordinator.SpaceLoop`),
so a slow or failing cloud never delays another space; a failing cycle is
reported and the loop goes on.  The main thread handles signals, the
systemd watchdog, and every half cycle the coordinator's tick: this
instance's registry entry and the space leases it holds, takes or gives up
(several instances may share one state directory; docs/operations.md).

- SIGTERM / SIGINT: every space finishes its current cycle, its lease is
  released (another instance takes it over within a tick), then the daemon
  exits 0 (machines keep running; a restarted daemon finds them again).
- SIGHUP: reload the configuration; if it is invalid, or changes a setting
  that needs a restart (`config.restart_needed`: state_dir, site, the
  endpoint's address, instance_name), keep the running one and say why.
  Spaces finish their current cycle before the switch and keep their leases.

With an `endpoint` section, the daemon also runs the machines' HTTP
endpoint (`endpoint.server`, its own thread and event loop) and serves
Prometheus metrics there; it starts before the first cycle (machines
created are told its URL) and stops after the last.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import replace
from pathlib import Path

from vacagent import config, cycle, logs, notify
from vacagent.clock import SLEW, Clock, SteadyClock
from vacagent.config import Settings
from vacagent.coordinator import Coordinator
from vacagent.endpoint.server import EndpointServer
from vacagent.errors import ConfigError
from vacagent.metrics import Metrics, MetricsReporter
from vacagent.report import Reporter

log = logs.get("vacagent.daemon")


def _tick_seconds(settings: Settings) -> float:
    """Leases are renewed, and free spaces claimed, every half cycle."""
    return settings.cycle_seconds / 2


def _clock_stepped(seconds: float) -> None:
    log.warning("wall clock stepped", seconds=round(seconds, 1),
                then=f"vacagent's time does not jump: it moves toward the wall clock by at most {SLEW:.0%} "
                     "of the time elapsed, so no machine is judged on the step")


class Daemon:
    def __init__(self, config_path: Path | None, clock: Clock | None = None, reporter: Reporter | None = None):
        self.config_path = config_path
        self.clock = clock or SteadyClock(on_step=_clock_stepped)
        self.metrics = Metrics()
        self.reporter = reporter or MetricsReporter(self.metrics, self.clock)
        self.endpoint: EndpointServer | None = None
        self.settings: Settings | None = None  # the configuration in force
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.wake = threading.Event()
        self.coordinator: Coordinator | None = None

    def _build(self, settings: Settings) -> list[cycle.Space]:
        return [cycle.build(settings, s, self.reporter, self.clock) for s in settings.spaces.values()]

    def _serve(self, settings: Settings) -> None:
        """Start, restart or stop the endpoint to match `settings`; ConfigError if it cannot listen."""
        running = self.endpoint
        if running and (running.settings, running.state_dir) == (settings.endpoint, settings.state_dir):
            return
        if running:
            running.stop()
            self.endpoint = None
        if settings.endpoint:
            server = EndpointServer(settings.endpoint, settings.state_dir, self.clock, self.metrics)
            server.start()
            self.endpoint = server

    def _launch(self, spaces: list[cycle.Space], settings: Settings) -> None:
        for space in spaces:  # machines are told the URL of the endpoint actually running (port 0: its port)
            space.actuator.endpoint_url = self.endpoint.public_url if self.endpoint else None
        if self.coordinator is None:
            self.coordinator = Coordinator(settings, spaces, self.clock, self.endpoint.public_url if self.endpoint else None)
            self.coordinator.join(self.clock.now())
        else:
            self.coordinator.reconfigure(settings, spaces)
        log.info("spaces started", spaces=",".join(s.name for s in spaces), state_dir=settings.state_dir,
                 cycle_seconds=settings.cycle_seconds, lease_seconds=settings.lease_seconds,
                 instance=self.coordinator.id)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self.reload_requested.set()
        else:
            self.stopping.set()
        self.wake.set()

    def run(self) -> int:
        # Handlers first: a signal during start-up is honoured once the loop runs.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        try:
            settings = self.settings = config.load(self.config_path)
            self._serve(settings)
            self._launch(self._build(settings), settings)
        except ConfigError as e:
            log.error("configuration invalid, not starting", detail=str(e))
            if self.endpoint:
                self.endpoint.stop()
            return 2
        coordinator = self.coordinator
        assert coordinator is not None
        notify.notify("READY=1", f"STATUS=running, {len(settings.spaces)} space(s) configured")
        watchdog = notify.watchdog_seconds()
        next_tick = self.clock.monotonic()  # ticks are timed on the monotonic clock
        while not self.stopping.is_set():
            if self.clock.monotonic() >= next_tick:
                next_tick = self.clock.monotonic() + _tick_seconds(coordinator.settings)
                try:
                    coordinator.tick(self.clock.now())
                except OSError as e:  # a failing shared filesystem: the leases lapse, the loop goes on
                    log.error("coordination failed", detail=str(e))
            wait = max(0.0, next_tick - self.clock.monotonic())
            if watchdog:
                wait = min(wait, watchdog / 2)
            self.wake.wait(wait)
            self.wake.clear()
            if watchdog:
                notify.notify("WATCHDOG=1")
            if self.reload_requested.is_set() and not self.stopping.is_set():
                self.reload_requested.clear()
                self._reload()
                next_tick = self.clock.monotonic()
        notify.notify("STOPPING=1", "STATUS=finishing current cycles, releasing leases")
        log.info("stopping: finishing current cycles, then releasing leases")
        coordinator.leave()
        if self.endpoint:
            self.endpoint.stop()
        log.info("stopped")
        return 0

    def _reload(self) -> None:
        notify.notify("RELOADING=1")
        try:
            settings = config.load(self.config_path)
            restart = config.restart_needed(self.settings, settings)
            if restart:
                raise ConfigError(f"{', '.join(restart)}: cannot change while running: a restart is needed "
                                  "(systemctl restart vacagent)")
            spaces = self._build(settings)
        except ConfigError as e:
            log.error("reload refused, keeping the running configuration", detail=str(e))
            notify.notify("READY=1")
            return
        if self.endpoint and settings.endpoint:
            # Same address (restart_needed): keep the port actually bound, which machines were told.
            bound = replace(settings.endpoint, port=self.endpoint.port or settings.endpoint.port)
            for endpoint in (bound, self.endpoint.settings):
                try:
                    settings = replace(settings, endpoint=endpoint)
                    self._serve(settings)
                    break
                except ConfigError as e:
                    log.error("endpoint cannot restart, trying the previous settings", detail=str(e))
        self.settings = settings
        self._launch(spaces, settings)
        log.info("configuration reloaded", files=",".join(settings.files))
        notify.notify("READY=1", f"STATUS=running, {len(spaces)} space(s) configured")
