"""Space leases: which instance may act on a space, under which epoch.

    spaces/<space>/epochs/<N>.json   one file per epoch, claimed by exclusive creation (O_EXCL):
                                     holder, claimed_at, expires_at, previous holder and why it ended
    spaces/<space>/lease.json        the holder's renewals: holder, epoch, renewed_at, expires_at, released

A new epoch is claimed by creating `epochs/<N+1>.json` with O_EXCL, where N
is the newest epoch file: exactly one claimer wins, on a local disk and on
NFS or CephFS alike, even where flock/fcntl locks are not shared between
hosts (NFS without lockd).  `filelock` serialises claimers on one host as
well, never alone.  So the epochs are 1, 2, 3... with no gaps, and the
holder of epoch N is *superseded* exactly when `epochs/<N+1>.json` exists:
the fencing check before every create, delete and close is one stat().

The lease in force is that of the newest epoch: lease.json when it speaks
of that epoch, else the claim file's own expiry (the claimer died, or has
not yet written lease.json).  A holder renews every tick; others may claim
once the lease is released or expired.  The holder itself stops trusting
its lease `margin` seconds before it expires (its own clock): that margin
is the clock skew tolerated between hosts (docs/operations.md).

On a full disk neither file can be rewritten, so a holder renews by setting
its own claim file's mtime to the new expiry (`renew_in_place`: metadata
only, no new block); readers take the later of a claim file's stated expiry
and its mtime.  A lease cannot be claimed or released on a full disk: a free
space waits for room, a released one for its expiry.

Pure decisions (`in_force`, `free`, `trusted`) take `now`; `SpaceLease`
does the file I/O; `Fence` is what the actuator asks.  Neighbours:
`instances` (who is alive, who should hold what), `coordinator` (ticks).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import filelock

from vacagent import errors, logs
from vacagent.clock import Clock
from vacagent.model import iso
from vacagent.state import formats
from vacagent.state.atomic import FILE_MODE, dumps, make_dirs

LEASE = "lease.json"
EPOCHS = "epochs"
KEEP_EPOCHS = 20  # epoch files kept for operators; older ones are pruned

log = logs.get("vacagent.lease")


@dataclass(frozen=True)
class Lease:
    holder: str
    epoch: int
    renewed_at: float
    expires_at: float
    released: bool = False


class LeaseLost(Exception):
    """This instance may no longer act on the space: it stops at once."""


# -- pure decisions ----------------------------------------------------------


def in_force(renewed: Lease | None, claimed: Lease | None) -> Lease | None:
    """The lease of the newest epoch: lease.json (`renewed`) if it speaks of
    that epoch, else the newest claim file's own (`claimed`)."""
    if claimed is None:
        return renewed
    if renewed is not None and renewed.epoch > claimed.epoch:
        return renewed
    if renewed is not None and renewed.epoch == claimed.epoch:  # the later expiry: renewed in place on a full disk
        return replace(renewed, expires_at=max(renewed.expires_at, claimed.expires_at))
    return claimed


def free(lease: Lease | None, now: float) -> bool:
    """May another instance claim the space at `now`?"""
    return lease is None or lease.released or now >= lease.expires_at


def trusted(lease: Lease, now: float, margin: float) -> bool:
    """Does the holder still trust its own lease at `now`?  It stops `margin`
    seconds before others may claim, so clocks may differ by up to `margin`."""
    return not lease.released and now < lease.expires_at - margin


# -- files -----------------------------------------------------------------


def _epoch_name(epoch: int) -> str:
    return f"{epoch:012d}.json"


def _lease_from(data: Any, path: Path) -> Lease:
    formats.checked(data, path)
    try:
        return Lease(str(data["holder"]), int(data["epoch"]), float(data["renewed_at"]),
                     float(data["expires_at"]), bool(data.get("released", False)))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a lease: {e}") from e


class SpaceLease:
    """The lease files of one space."""

    def __init__(self, state_dir: Path, space: str):
        self.space = space
        self.root = state_dir / "spaces" / space
        self.path = self.root / LEASE
        self.epochs = self.root / EPOCHS

    def epoch_path(self, epoch: int) -> Path:
        return self.epochs / _epoch_name(epoch)

    def newest_epoch(self) -> int:
        try:
            names = os.listdir(self.epochs)
        except FileNotFoundError:
            return 0
        return max((int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()), default=0)

    def superseded(self, epoch: int) -> bool:
        """Has another claim followed epoch `epoch`?  One stat: the fencing check."""
        return os.path.exists(self.epoch_path(epoch + 1))

    def _claim_of(self, epoch: int, lease_seconds: float) -> Lease:
        path = self.epoch_path(epoch)
        try:
            with open(path, "rb") as f:
                raw = f.read()
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:  # pruned between listing and reading: an old epoch
            return Lease("", epoch, 0.0, 0.0, released=True)
        if not raw.strip():  # the claimer died between creating and writing it
            return Lease("(unknown)", epoch, mtime, mtime + lease_seconds)
        data = formats.checked(json.loads(raw), path)
        expires = max(float(data.get("expires_at", mtime + lease_seconds)), mtime)  # mtime: renew_in_place
        return Lease(str(data.get("holder", "(unknown)")), epoch, float(data.get("claimed_at", mtime)), expires)

    def read(self, lease_seconds: float) -> Lease | None:
        """The lease in force, or None if the space was never held.  FormatTooNew
        if a newer vacagent wrote it."""
        newest = self.newest_epoch()
        claimed = self._claim_of(newest, lease_seconds) if newest else None
        try:
            renewed = _lease_from(formats.read(self.path), self.path)
        except FileNotFoundError:
            renewed = None
        except ValueError:
            renewed = None  # half-written by hand or unreadable: the claim file decides
        return in_force(renewed, claimed)

    def claim(self, holder: str, now: float, lease_seconds: float, previous: Lease | None) -> Lease | None:
        """Claim the epoch after `previous` (the lease in force as read, None: never held);
        None if another instance claimed it, or any later one, first."""
        make_dirs(self.epochs)
        local = filelock.FileLock(str(self.root / "lease.lock"), mode=FILE_MODE)
        try:
            local.acquire(timeout=0)  # the extra: claimers on one host do not even race
        except filelock.Timeout:
            return None
        try:
            epoch = self.newest_epoch() + 1
            if epoch != (previous.epoch + 1 if previous else 1):
                return None  # claimed by another instance since `previous` was read
            lease = Lease(holder, epoch, now, now + lease_seconds)
            ended = None if previous is None else ("released" if previous.released else "expired")
            body = formats.stamped({
                "holder": holder, "epoch": epoch, "claimed_at": now, "claimed": iso(now),
                "expires_at": lease.expires_at, "previous_holder": previous.holder if previous else None,
                "previous_epoch": previous.epoch if previous else None, "previous_ended": ended,
            })
            try:
                fd = os.open(self.epoch_path(epoch), os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            except FileExistsError:
                return None
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(dumps(body))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError:  # no room for the body: an empty epoch would fence off nobody's work for a lease
                os.unlink(self.epoch_path(epoch))
                raise
            # mtime == expires_at: a later mtime can only come from renew_in_place.
            os.utime(self.epoch_path(epoch), (lease.expires_at, lease.expires_at))
        finally:
            local.release()
        try:
            self._write(lease)
        except OSError as e:
            if not errors.disk_full(e):
                raise
            # The claim file says as much as lease.json would; renew_in_place keeps it alive.
        self._prune(epoch)
        return lease

    def renew(self, lease: Lease, now: float, lease_seconds: float) -> Lease:
        renewed = replace(lease, renewed_at=now, expires_at=now + lease_seconds)
        self._write(renewed)
        return renewed

    def renew_in_place(self, lease: Lease, now: float, lease_seconds: float) -> Lease:
        """Renew without writing a byte (the disk is full): the claim file's mtime becomes the expiry."""
        renewed = replace(lease, renewed_at=now, expires_at=now + lease_seconds)
        os.utime(self.epoch_path(lease.epoch), (renewed.expires_at, renewed.expires_at))
        return renewed

    def release(self, lease: Lease, now: float) -> Lease:
        released = replace(lease, renewed_at=now, expires_at=now, released=True)
        if not self.superseded(lease.epoch):  # never overwrite a newer holder's lease.json
            self._write(released)
        return released

    def _write(self, lease: Lease) -> None:
        formats.write(self.path, {**asdict(lease), "renewed": iso(lease.renewed_at), "expires": iso(lease.expires_at)})

    def _prune(self, newest: int) -> None:
        for epoch in range(max(1, newest - KEEP_EPOCHS - 10), newest - KEEP_EPOCHS):
            try:
                os.unlink(self.epoch_path(epoch))
            except FileNotFoundError:
                pass


class Fence:
    """This instance's hold on one space, as the actuator sees it.

    `confirm(action)` runs immediately before every create, delete and close:
    it raises LeaseLost if the lease was given up, is no longer trusted by
    this instance's clock, or another instance claimed a newer epoch.  The
    coordinator updates the lease at each renewal (from another thread).
    """

    def __init__(self, leases: SpaceLease, lease: Lease, clock: Clock, margin: float):
        self.leases = leases
        self.lease = lease
        self.clock = clock
        self.margin = margin
        self._lost: str | None = None
        self._lock = threading.Lock()

    @property
    def epoch(self) -> int:
        return self.lease.epoch

    @property
    def holder(self) -> str:
        return self.lease.holder

    def renewed(self, lease: Lease) -> None:
        with self._lock:
            self.lease = lease

    def lose(self, why: str) -> None:
        with self._lock:
            if self._lost is None:
                self._lost = why

    @property
    def lost(self) -> str | None:
        return self._lost

    def check(self) -> str | None:
        """Why this instance may not act on the space now, or None if it may."""
        with self._lock:
            lease, lost = self.lease, self._lost
        if lost:
            return lost
        if not trusted(lease, self.clock.now(), self.margin):
            return f"lease of epoch {lease.epoch} not renewed in time (expires {iso(lease.expires_at)})"
        if self.leases.superseded(lease.epoch):
            return f"epoch {lease.epoch} superseded: another instance claimed epoch {lease.epoch + 1}"
        return None

    def confirm(self, action: str, machine: str) -> None:
        """Raise LeaseLost unless this instance may `action` `machine` now."""
        why = self.check()
        if why is not None:
            self.lose(why)
            raise LeaseLost(f"space {self.leases.space}: not {action} {machine}: {why}")
        # The time of every action under an epoch: what the failover tests check against the claims.
        log.debug("acting under lease", space=self.leases.space, epoch=self.epoch, action=action,
                  machine=machine, at=f"{self.clock.now():.3f}")
