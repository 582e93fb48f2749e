"""Which spaces this daemon instance runs, among the instances sharing one
state directory: the registry entry, the space leases, one SpaceLoop per
space held.

The daemon calls `tick(now)` every half cycle.  Each tick:

1. refreshes this instance's entry in `instances/` and prunes dead ones;
2. renews the lease of every space held (or drops it, if this instance no
   longer trusts it or another instance claimed a newer epoch: its loop is
   stopped and never acts again);
3. reads every space's lease, computes the fair share (`instances.assign`)
   over the live instances, releases at most one space held beyond this
   instance's share (once its current cycle is done), and claims the free
   spaces assigned to it (or any space left free for a whole lease).

On a full state disk (ENOSPC, EDQUOT) the tick renews what it can without
writing a byte: the registry entry's and the claim files' mtimes (see
`state.lease`), so the spaces held go on being acted on; nothing is
claimed, released or rebalanced until there is room, which is logged once
per change.

A space whose state was written by a newer vacagent is refused: its loop
stops, its lease is released, and the registry entry says so, so the
other instances leave it to one that reads it.  `leave()` is the graceful
end (SIGTERM): mark the entry stopping, finish the current cycles, release
every lease, remove the entry; another instance takes each space within
one tick.  Neighbours: `daemon` (signals, clock, endpoint), `cycle`,
`state.lease`, `state.instances`.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from dataclasses import dataclass, replace

from vacagent import __version__, config, cycle, errors, logs
from vacagent.clock import Clock
from vacagent.config import Settings
from vacagent.errors import ConfigError
from vacagent.model import iso
from vacagent.state import formats
from vacagent.state.instances import Instance, Registry, alive, assign, live, mismatch
from vacagent.state.lease import Fence, Lease, LeaseLost, SpaceLease, free

log = logs.get("vacagent.coordinator")


def instance_id(settings: Settings) -> str:
    """`instance_name` when set, else the short host name and a random id (new at every start)."""
    return settings.instance_name or f"{socket.gethostname().split('.')[0]}-{secrets.token_hex(3)}"


def margin(settings: Settings) -> float:
    """How long before its lease expires a holder stops trusting it: the clock skew tolerated."""
    return settings.lease_seconds / 3


class SpaceLoop(threading.Thread):
    """One space's cycles, every cycle_seconds, until stopped or the lease is lost."""

    def __init__(self, space: cycle.Space, cycle_seconds: float, clock: Clock, stop: threading.Event):
        super().__init__(name=f"space-{space.name}", daemon=True)
        self.space = space
        self.cycle_seconds = cycle_seconds
        self.clock = clock
        self.stop = stop
        self.cycles = 0
        self.ended: str | None = None  # why the loop ended by itself (lease lost)
        self.refused: str | None = None  # why the space's state cannot be read by this vacagent

    def run(self) -> None:
        while not self.stop.is_set():
            started = self.clock.monotonic()  # a cycle's length, never the wall clock's steps
            try:
                cycle.run_once(self.space, self.clock.now())
            except cycle.SpaceBusy as e:
                log.warning("cycle skipped", space=self.space.name, why=str(e))
            except LeaseLost as e:
                self.ended = str(e)
                log.warning("stopped acting on space", space=self.space.name, why=str(e),
                            instance=self.space.actuator.fence.holder if self.space.actuator.fence else None)
                cycle.record_stop(self.space, self.clock.now(), str(e))
                return
            except formats.FormatTooNew as e:
                self.refused = str(e)
                log.error("space refused", space=self.space.name, why=str(e))
                return
            except Exception as e:  # noqa: BLE001 - the loop must go on
                self.space.actuator.reporter.cycle_failed(self.space.name, e)
            self.cycles += 1
            elapsed = self.clock.monotonic() - started
            if elapsed > self.cycle_seconds:
                log.warning("cycle overran", space=self.space.name, seconds=round(elapsed, 1),
                            cycle_seconds=self.cycle_seconds)
            self.clock.sleep(max(0.0, self.cycle_seconds - elapsed), until=self.stop)


@dataclass
class Held:
    fence: Fence
    loop: SpaceLoop
    stop: threading.Event
    releasing: bool = False


class Coordinator:
    def __init__(self, settings: Settings, spaces: list[cycle.Space], clock: Clock, endpoint: str | None = None):
        self.clock = clock
        self.registry = Registry(settings.state_dir)
        self.me = Instance(
            id=instance_id(settings), host=socket.getfqdn(), pid=os.getpid(), version=__version__,
            started=clock.now(), last_seen=clock.now(), site=settings.site,
            spaces={s.name: config.fingerprint(s) for s in settings.spaces.values()}, endpoint=endpoint,
        )
        self.held: dict[str, Held] = {}
        self.refused: dict[str, str] = {}
        self.stopping = False
        self.disk_full = False  # did the last tick find no room to write?
        self._configure(settings, spaces)

    def _configure(self, settings: Settings, spaces: list[cycle.Space]) -> None:
        self.settings = settings
        self.spaces = {s.name: s for s in spaces}
        self.leases = {name: SpaceLease(settings.state_dir, name) for name in self.spaces}
        self.me = replace(self.me, spaces={s.name: config.fingerprint(s) for s in settings.spaces.values()})

    @property
    def id(self) -> str:
        return self.me.id

    # -- joining and leaving --------------------------------------------------

    def join(self, now: float) -> None:
        """Register this instance; ConfigError if it may not run beside the instances already running."""
        lease_seconds = self.settings.lease_seconds
        others = [i for i in self.registry.read() if alive(i, now, lease_seconds)]
        for other in others:
            if other.id == self.id and (other.host, other.pid) != (self.me.host, self.me.pid):
                if other.host != self.me.host or _running(other.pid, other.last_seen):
                    raise ConfigError(
                        f"{self.settings.files[0]}: instance_name: {self.id!r} is in use by pid {other.pid} on "
                        f"host {other.host} (seen {now - other.last_seen:.0f}s ago): every instance needs its own name"
                    )
        why = mismatch(self.me, [o for o in others if o.id != self.id])
        if why:
            raise ConfigError(f"{self.settings.files[0]}: spaces: {why}")
        self.me = replace(self.me, started=now, last_seen=now)
        full = self._write_entry()
        self._note_disk(full)
        if full is None:
            log.info("instance registered", instance=self.id, state_dir=self.settings.state_dir,
                     others=",".join(o.id for o in others if o.id != self.id) or None)

    def _write_entry(self) -> OSError | None:
        """Write this instance's registry entry, or on a full disk refresh its mtime alone
        (nothing, if it was never written); the disk-full error, or None."""
        try:
            self.registry.write(self.me)
        except OSError as e:
            if not errors.disk_full(e):
                raise
            try:
                self.registry.refresh(self.me)
            except FileNotFoundError:
                pass  # not registered yet: the next tick with room registers it
            return e
        return None

    def _note_disk(self, full: OSError | None) -> None:
        """Log a change between full and writable, once."""
        if full is not None and not self.disk_full:
            log.error("state directory full", where="instance registry and leases", detail=full.strerror,
                      then="leases held are renewed in place (mtime only); none is claimed or released "
                           "until there is room; retrying every tick")
        elif full is None and self.disk_full:
            log.info("state directory writable again", where="instance registry and leases",
                     then="claiming and releasing leases as usual")
        self.disk_full = full is not None

    def leave(self) -> None:
        """Finish the current cycles, release every lease, remove the registry entry."""
        self.stopping = True
        self.me = replace(self.me, stopping=True, last_seen=self.clock.now())
        self._write_entry()
        self._stop_all()
        for name in list(self.held):
            self._release(name, "stopping")
        self.registry.remove(self.id)
        log.info("instance left", instance=self.id)

    def _stop_all(self) -> None:
        for held in self.held.values():
            held.stop.set()
        for held in self.held.values():
            held.loop.join()

    def reconfigure(self, settings: Settings, spaces: list[cycle.Space]) -> None:
        """After a reload: the same leases, the new spaces' runtimes; spaces no longer configured are released."""
        self._stop_all()
        previous = self.held
        self.held = {}
        self._configure(settings, spaces)
        for name, held in previous.items():
            if name in self.spaces and not held.fence.lost:
                self._start(name, held.fence)
            else:
                self.held[name] = held
                self._release(name, "no longer configured")

    # -- the tick ---------------------------------------------------------

    def tick(self, now: float) -> None:
        lease_seconds = self.settings.lease_seconds
        self.me = replace(self.me, last_seen=now, refused=tuple(sorted(self.refused)))
        full = self._write_entry()
        for dead in self.registry.prune(now, lease_seconds, keep=self.id):
            log.info("instance pruned", instance=dead, why=f"not seen for {lease_seconds:g}s")
        self._reap()
        full = self._renew(now) or full
        self._note_disk(full)
        if self.stopping or self.disk_full:
            return
        current = self._read_leases()
        instances = live(self.registry.read(), now, lease_seconds)
        ids = {i.id for i in instances} | {self.id}
        refused = {i.id: i.refused for i in instances}
        refused[self.id] = tuple(self.refused)
        holders = {s: lease.holder for s, lease in current.items() if lease is not None and not free(lease, now)}
        target = assign(self.spaces, ids, holders, refused)
        self._rebalance(target)
        for name in sorted(self.spaces):
            if name in self.held or name in self.refused or name not in current:
                continue
            lease = current[name]
            abandoned = lease is not None and now >= lease.expires_at + lease_seconds
            if free(lease, now) and (target.get(name) == self.id or abandoned):
                self._claim(name, lease, now)

    def _read_leases(self) -> dict[str, Lease | None]:
        current: dict[str, Lease | None] = {}
        for name, leases in self.leases.items():
            try:
                current[name] = leases.read(self.settings.lease_seconds)
            except formats.FormatTooNew as e:
                self._refuse(name, str(e))
            except (OSError, ValueError) as e:
                log.error("lease unreadable", space=name, detail=str(e))
        return current

    def _reap(self) -> None:
        """Spaces whose loop ended: lease lost, state refused, or a release that is now due."""
        for name, held in list(self.held.items()):
            if held.loop.is_alive():
                continue
            if held.loop.refused:
                self._release(name, "state written by a newer vacagent")
                self._refuse(name, held.loop.refused)
            elif held.loop.ended or held.fence.lost:
                del self.held[name]
            elif held.releasing:
                self._release(name, "rebalancing: another instance is below its fair share")

    def _renew(self, now: float) -> OSError | None:
        """Renew every lease held; the disk-full error if one was renewed in place, or None."""
        full = None
        for name, held in list(self.held.items()):
            why = held.fence.check()
            if why is None:
                try:
                    renewed = self.leases[name].renew(held.fence.lease, now, self.settings.lease_seconds)
                except OSError as e:
                    if not errors.disk_full(e):
                        raise
                    full = e
                    renewed = self.leases[name].renew_in_place(held.fence.lease, now, self.settings.lease_seconds)
                held.fence.renewed(renewed)
                why = held.fence.check()  # a claim that raced the renewal: lease.json may now be ours, the epoch not
            if why is not None:
                held.fence.lose(why)
                held.stop.set()
                log.warning("lease lost", space=name, instance=self.id, epoch=held.fence.epoch, why=why)
                if not held.loop.is_alive():
                    del self.held[name]
        return full

    def _rebalance(self, target: dict[str, str]) -> None:
        """Release one space held beyond the fair share (at most one per tick: no stampede)."""
        if any(h.releasing for h in self.held.values()):
            return
        for name in sorted(self.held):
            if target.get(name, self.id) != self.id:
                held = self.held[name]
                held.releasing = True
                held.stop.set()
                log.info("releasing space", space=name, instance=self.id, epoch=held.fence.epoch,
                         to=target[name], why="fair share: that instance holds fewer spaces")
                return

    def _claim(self, name: str, previous: Lease | None, now: float) -> None:
        try:
            lease = self.leases[name].claim(self.id, now, self.settings.lease_seconds, previous)
        except OSError as e:
            if not errors.disk_full(e):
                raise
            return  # filled since this tick's registry write: the next tick says so
        if lease is None:
            return  # another instance claimed it first
        fence = Fence(self.leases[name], lease, self.clock, margin(self.settings))
        log.info(
            "lease taken", space=name, instance=self.id, epoch=lease.epoch, expires=iso(lease.expires_at),
            previous=previous.holder if previous else None,
            why=None if previous is None else ("released" if previous.released else f"expired {iso(previous.expires_at)}"),
        )
        self._start(name, fence)

    def _start(self, name: str, fence: Fence) -> None:
        space = self.spaces[name]
        space.actuator.fence = fence
        stop = threading.Event()
        loop = SpaceLoop(space, self.settings.cycle_seconds, self.clock, stop)
        self.held[name] = Held(fence, loop, stop)
        loop.start()

    def _release(self, name: str, why: str) -> None:
        held = self.held.pop(name)
        if held.fence.lost:
            return
        held.fence.lose(f"released: {why}")
        try:
            self.leases[name].release(held.fence.lease, self.clock.now())
        except OSError as e:
            if not errors.disk_full(e):
                raise
            log.warning("lease given up unreleased", space=name, instance=self.id, epoch=held.fence.epoch, why=why,
                        detail=f"state directory full: another instance may claim it once it expires "
                               f"({iso(held.fence.lease.expires_at)})")
            return
        log.info("lease released", space=name, instance=self.id, epoch=held.fence.epoch, why=why)

    def _refuse(self, name: str, why: str) -> None:
        if name not in self.refused:
            log.error("space refused", space=name, instance=self.id, why=why)
        self.refused[name] = why

    # -- views --------------------------------------------------------------

    def holding(self) -> dict[str, int]:
        """Space -> epoch, for the spaces this instance holds."""
        return {name: held.fence.epoch for name, held in self.held.items() if not held.fence.lost}


def _running(pid: int, seen: float) -> bool:
    """Is the process that wrote an entry last seen at `seen` still running as `pid`?
    A process started after `seen` has only been given the dead instance's pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = _process_start(pid)
    return started is None or started <= seen + 1.0  # 1 s: the boot time's rounding


def _process_start(pid: int) -> float | None:
    """When `pid` started, by the wall clock (Linux /proc); None where that cannot be told."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, after the command name
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


class SpaceHeld(Exception):
    """Another instance holds the space: `vacagent once` leaves it alone."""


def borrow(settings: Settings, space: cycle.Space, clock: Clock) -> Fence:
    """A lease for one cycle of `vacagent once`; SpaceHeld if a daemon holds the space."""
    leases = SpaceLease(settings.state_dir, space.name)
    now = clock.now()
    lease = leases.read(settings.lease_seconds)
    if not free(lease, now):
        raise SpaceHeld(f"space {space.name}: held by instance {lease.holder} (epoch {lease.epoch}) "
                        f"until {iso(lease.expires_at)}: not run")
    holder = f"once-{socket.gethostname().split('.')[0]}-{os.getpid()}"
    claimed = leases.claim(holder, now, settings.lease_seconds, lease)
    if claimed is None:
        raise SpaceHeld(f"space {space.name}: another instance claimed it just now: not run")
    fence = Fence(leases, claimed, clock, margin(settings))
    space.actuator.fence = fence
    return fence


def give_back(fence: Fence, clock: Clock) -> None:
    fence.leases.release(fence.lease, clock.now())
