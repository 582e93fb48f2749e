"""The outer loop: owns the clock, the signals and the sleeps.

Each space runs in its own thread, so a slow or failing cloud never delays
another space; a failing cycle is reported and the loop goes on.  The main
thread handles signals and the systemd watchdog:

- SIGTERM / SIGINT: every space finishes its current cycle, then the daemon
  exits 0 (machines keep running; a restarted daemon finds them again).
- SIGHUP: reload the configuration; if it is invalid, or changes a setting
  that needs a restart (`config.restart_needed`: state_dir, site, the
  endpoint's address), keep the running one and say why.  Spaces finish
  their current cycle before the switch.

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
from vacagent.endpoint.server import EndpointServer
from vacagent.errors import ConfigError
from vacagent.metrics import Metrics, MetricsReporter
from vacagent.report import Reporter

log = logs.get("vacagent.daemon")


def _clock_stepped(seconds: float) -> None:
    log.warning("wall clock stepped", seconds=round(seconds, 1),
                then=f"vacagent's time does not jump: it moves toward the wall clock by at most {SLEW:.0%} "
                     "of the time elapsed, so no machine is judged on the step")


class SpaceLoop(threading.Thread):
    def __init__(self, space: cycle.Space, cycle_seconds: float, clock: Clock, stop: threading.Event):
        super().__init__(name=f"space-{space.name}", daemon=True)
        self.space = space
        self.cycle_seconds = cycle_seconds
        self.clock = clock
        self.stop = stop
        self.cycles = 0

    def run(self) -> None:
        while not self.stop.is_set():
            started = self.clock.monotonic()  # a cycle's length, never the wall clock's steps
            try:
                cycle.run_once(self.space, self.clock.now())
            except cycle.SpaceBusy as e:
                log.warning("cycle skipped", space=self.space.name, why=str(e))
            except Exception as e:  # noqa: BLE001 - the loop must go on
                self.space.actuator.reporter.cycle_failed(self.space.name, e)
            self.cycles += 1
            elapsed = self.clock.monotonic() - started
            if elapsed > self.cycle_seconds:
                log.warning("cycle overran", space=self.space.name, seconds=round(elapsed, 1),
                            cycle_seconds=self.cycle_seconds)
            self.clock.sleep(max(0.0, self.cycle_seconds - elapsed), until=self.stop)


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

    def _launch(self, spaces: list[cycle.Space], settings: Settings) -> tuple[list[SpaceLoop], threading.Event]:
        stop = threading.Event()
        for space in spaces:  # machines are told the URL of the endpoint actually running (port 0: its port)
            space.actuator.endpoint_url = self.endpoint.public_url if self.endpoint else None
        loops = [SpaceLoop(space, settings.cycle_seconds, self.clock, stop) for space in spaces]
        for loop in loops:
            loop.start()
        log.info("spaces started", spaces=",".join(s.name for s in spaces), state_dir=settings.state_dir,
                 cycle_seconds=settings.cycle_seconds)
        return loops, stop

    @staticmethod
    def _stop(loops: list[SpaceLoop], stop: threading.Event) -> None:
        stop.set()
        for loop in loops:
            loop.join()

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
            loops, stop = self._launch(self._build(settings), settings)
        except ConfigError as e:
            log.error("configuration invalid, not starting", detail=str(e))
            if self.endpoint:
                self.endpoint.stop()
            return 2
        notify.notify("READY=1", f"STATUS=running {len(loops)} space(s)")
        watchdog = notify.watchdog_seconds()
        tick = min(watchdog / 2, 5.0) if watchdog else 5.0
        while not self.stopping.is_set():
            self.wake.wait(tick)
            self.wake.clear()
            if watchdog:
                notify.notify("WATCHDOG=1")
            if self.reload_requested.is_set() and not self.stopping.is_set():
                self.reload_requested.clear()
                loops, stop = self._reload(loops, stop)
        notify.notify("STOPPING=1", "STATUS=finishing current cycles")
        log.info("stopping: finishing current cycles")
        self._stop(loops, stop)
        if self.endpoint:
            self.endpoint.stop()
        log.info("stopped")
        return 0

    def _reload(self, loops: list[SpaceLoop], stop: threading.Event) -> tuple[list[SpaceLoop], threading.Event]:
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
            return loops, stop
        self._stop(loops, stop)
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
        result = self._launch(spaces, settings)
        log.info("configuration reloaded", files=",".join(settings.files))
        notify.notify("READY=1", f"STATUS=running {len(spaces)} space(s)")
        return result
