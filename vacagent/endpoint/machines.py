"""A machine's directory as the endpoint sees it: find it, check a token
against it, read its features, write its joboutputs.

Blocking file I/O: `app` runs these methods in a thread pool, never in the
event loop.  Nothing outside the machine's own directory is ever touched:
names were checked by `paths.parse` before they get here, and every step
below the daemon's own `spaces/<space>/machines/` goes through directory
file descriptors opened with O_NOFOLLOW, so a symlink (or a FIFO, or a
directory where a file should be) is refused with 409, never followed.

Writes are atomic (a temporary file in joboutputs/, renamed over the
target) and stamped with the endpoint's clock, so the heartbeat time the
cycle reads (the file's mtime) is when the endpoint accepted the PUT.  A
small file PUT again with the very same body only gets its time updated
(utime is atomic too; never on a file with another hard link, whose other
name may be another machine's heartbeat): the usual heartbeat then costs no new inode, which
on some disks is most of a request's cost (benchmarks/endpoint.py).  Only
shutdown_message is fsynced: it steers the machinetype's backoff and must
survive a crash, while a heartbeat lost in a crash is replaced by the next
one (and the cycle grants a grace period after the endpoint restarts).

A machine found is cached with the identity of its `token.sha256` (inode,
mtime), so that a steady stream of heartbeats costs one directory open and
one stat per request for the lookup; the state directory stays the only
truth, and any daemon instance can serve any machine.

Neighbours: `paths` (the checks before), `app` (HTTP), `tokens`,
`state.store` (which writes the directories this module reads).
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from vacagent import tokens
from vacagent.config import EndpointSettings
from vacagent.endpoint.paths import Refused, Target
from vacagent.model import NAME_RE
from vacagent.state.atomic import FILE_MODE
from vacagent.state.store import SHUTDOWN_MESSAGE

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_FEATURE_BYTES = 65536  # MJF values are one short line each
CACHE_LIMIT = 100_000


@dataclass(frozen=True)
class Machine:
    space: str
    name: str
    path: str  # the directory, live or under finished/
    closed: bool  # its directory is under finished/: the token is dead
    token_hash: str | None  # None: no token.sha256 (adopted machine): no token is accepted
    heartbeat_file: str | None  # the machinetype's heartbeat_file, for the small body cap


def _open_dir(name: str | Path, dir_fd: int | None = None) -> int:
    """Open a directory, refusing symlinks and non-directories with 409."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Refused(409, f"{Path(name).name} is not a plain directory (symlinks are never followed)") from None
        raise


def _read_small(name: str, dir_fd: int, limit: int) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused(409, f"{name} is not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


class Directory:
    """The machines of one state directory, with the endpoint's limits."""

    def __init__(self, state_dir: Path, settings: EndpointSettings):
        self.spaces = state_dir / "spaces"
        self.settings = settings
        self._root = str(self.spaces)  # strings, not Paths, on the per-request path: joins cost
        self._known_spaces: set[str] = set()  # a space's directory, once made, stays
        self._cache: dict[tuple[str, str], tuple[tuple[int, int], Machine]] = {}
        self._locks = [threading.Lock() for _ in range(64)]  # per machine (striped): one writer at a time

    # -- lookup and authorization ----------------------------------------

    def authorize(self, space: str, name: str, token: str | None) -> Machine:
        """The machine a request may act on, or Refused: 404, 401 or 403 (docs/machine-protocol.md)."""
        if space not in self._known_spaces:
            if not os.path.isdir(os.path.join(self._root, space, "machines")):
                raise Refused(404, "no such space")
            self._known_spaces.add(space)
        machine = self.find(space, name)
        if machine is None:
            raise Refused(404, "no such machine")
        if token is None:
            raise Refused(401, "a bearer token is required")
        claimed = tokens.owner(token)
        if claimed is None:
            raise Refused(401, "malformed token")
        owner = machine if claimed == (space, name) else self.find(*claimed)
        if owner is None or owner.token_hash is None or not tokens.matches(token, owner.token_hash):
            raise Refused(401, "invalid token")
        if owner is not machine:
            raise Refused(403, "this token belongs to another machine")
        if machine.closed:
            raise Refused(403, "this machine's record is closed; its token is no longer valid")
        return machine

    def get(self, target: Target, token: str | None) -> bytes:
        """Authorize, then read a feature."""
        return self.read(self.authorize(target.space, target.machine, token), target.kind, target.key)

    def put(self, target: Target, token: str | None, body: bytes, now: float) -> None:
        """Authorize, then write a joboutputs file whose body was read before authorization."""
        machine = self.authorize(target.space, target.machine, token)
        cap = self.cap(machine, target.key)
        if len(body) > cap:
            raise Refused(413, f"body larger than {cap} bytes", cap="body_bytes")
        self.write(machine, target.key, body, now)

    def find(self, space: str, name: str) -> Machine | None:
        """The live machine of that name, else its closed directory, else None."""
        path = os.path.join(self._root, space, "machines", name)
        try:
            fd = _open_dir(path)
        except FileNotFoundError:
            return self._find_closed(space, name)
        try:
            return self._load(space, name, path, fd, closed=False)
        finally:
            os.close(fd)

    def _find_closed(self, space: str, name: str) -> Machine | None:
        finished = self.spaces / space / "finished"
        try:
            days = sorted(os.listdir(finished), reverse=True)
        except FileNotFoundError:
            return None
        for day in days:
            path = str(finished / day / name)
            try:
                fd = _open_dir(path)
            except (FileNotFoundError, NotADirectoryError, Refused):
                continue
            try:
                return self._load(space, name, path, fd, closed=True)
            finally:
                os.close(fd)
        return None

    def _load(self, space: str, name: str, path: str, fd: int, closed: bool) -> Machine:
        try:
            st = os.stat(tokens.HASH_FILE, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return Machine(space, name, path, closed, None, None)
        stamp = (st.st_ino, st.st_mtime_ns)
        cached = None if closed else self._cache.get((space, name))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            token_hash = _read_small(tokens.HASH_FILE, fd, 256).decode("ascii", "replace").strip()
        except (OSError, Refused):
            token_hash = None
        machine = Machine(space, name, path, closed, token_hash or None, self._heartbeat_file(space, fd))
        if not closed:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()  # closed machines' entries go with it; live ones come back on use
            self._cache[(space, name)] = (stamp, machine)
        return machine

    def _heartbeat_file(self, space: str, fd: int) -> str | None:
        try:
            machinetype = json.loads(_read_small("machine.json", fd, 1 << 20))["machinetype"]
            if not isinstance(machinetype, str) or not NAME_RE.match(machinetype):
                return None  # never a path component we did not check
            path = self.spaces / space / "machinetypes" / machinetype / "definition.json"
            definition = json.loads(path.read_bytes())
        except (OSError, ValueError, KeyError, TypeError, Refused):
            return None
        value = definition.get("heartbeat_file") if isinstance(definition, dict) else None
        return value if isinstance(value, str) else None

    # -- reading and writing ---------------------------------------------

    def cap(self, machine: Machine, key: str) -> int:
        """The largest body accepted for joboutputs/<key>."""
        if key in (SHUTDOWN_MESSAGE, machine.heartbeat_file):
            return self.settings.max_message_bytes
        return self.settings.max_file_bytes

    def read(self, machine: Machine, kind: str, key: str) -> bytes:
        mfd = self._open_machine(machine)
        try:
            kfd = _open_dir(kind, mfd)
            try:
                return _read_small(key, kfd, MAX_FEATURE_BYTES)
            except FileNotFoundError:
                raise Refused(404, f"no such key in {kind}") from None
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise Refused(409, f"{key} is a symlink: never followed") from None
                raise
            finally:
                os.close(kfd)
        finally:
            os.close(mfd)

    def write(self, machine: Machine, key: str, body: bytes, now: float) -> None:
        """Replace joboutputs/<key> with `body`, atomically, within the machine's total cap."""
        with self._locks[hash((machine.space, machine.name)) % len(self._locks)]:
            mfd = self._open_machine(machine)
            try:
                jfd = _open_dir("joboutputs", mfd)
                try:
                    current = self._check_room(jfd, key, len(body))
                    if current == len(body) <= self.settings.max_message_bytes and _touch_if_unchanged(
                            jfd, key, body, now):
                        return
                    _atomic_write(jfd, key, body, now, durable=key == SHUTDOWN_MESSAGE)
                finally:
                    os.close(jfd)
            finally:
                os.close(mfd)

    def _open_machine(self, machine: Machine) -> int:
        try:
            return _open_dir(machine.path)
        except FileNotFoundError:
            raise Refused(403, "this machine's record was closed") from None

    def _check_room(self, jfd: int, key: str, size: int) -> int | None:
        """Refuse a write that would exceed the machine's total cap; the target's current size."""
        total, current, count = size, None, 0
        with os.scandir(jfd) as entries:
            for entry in entries:
                count += 1
                st = entry.stat(follow_symlinks=False)
                if entry.name == key:
                    if not stat.S_ISREG(st.st_mode):
                        raise Refused(409, f"{key} exists and is not a regular file (symlinks are never followed)")
                    current = st.st_size  # about to be replaced: not counted
                    continue
                total += st.st_size
        if current is None and count >= self.settings.max_joboutputs_files:
            raise Refused(413, f"joboutputs holds {count} files, the most one machine may have",
                          cap="joboutputs_files")
        if total > self.settings.max_joboutputs_bytes:
            raise Refused(413, f"joboutputs would hold {total} bytes, more than {self.settings.max_joboutputs_bytes}",
                          cap="joboutputs_bytes")
        return current


def _touch_if_unchanged(dir_fd: int, key: str, body: bytes, mtime: float) -> bool:
    """A small file that already holds exactly `body` only needs its time updated: one
    atomic utime instead of a new inode (the usual heartbeat: its time is what counts)."""
    try:
        fd = os.open(key, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return False  # absent, or a symlink: the full path decides
    try:
        st = os.fstat(fd)  # again: the file may have been replaced since the directory was read
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size != len(body):
            return False  # a hard link's other name (another machine's heartbeat?) must never be touched
        if body and os.read(fd, len(body) + 1) != body:
            return False
        os.utime(fd, (mtime, mtime))
        return True
    finally:
        os.close(fd)


def _atomic_write(dir_fd: int, key: str, body: bytes, mtime: float, durable: bool) -> None:
    tmp = f".{key}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
            os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        os.rename(tmp, key, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        raise
    if durable:
        os.fsync(dir_fd)
