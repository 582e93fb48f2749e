"""Atomic file writes: a reader never sees half a file.

Write to a temporary file in the same directory, fsync it, rename it over
the target, and fsync the directory so that the rename survives a crash.
Appends (`append_line`) use O_APPEND with one write() per line, which keeps
lines whole between processes on a local or shared filesystem, under an
flock so that a line is never torn: a short write (a full disk) is completed
or rolled back, and the torn tail a crash left is cut off before the next
line goes on.  `read_lines` skips a torn or unreadable line and says so.

Modes: every file is created with its final mode from the first byte
(os.open with the mode, never a chmod after the data is in), which the
process's umask may make stricter, never looser: FILE_MODE (0640) for state,
SECRET_MODE (0600) for what holds a token or user_data, and DIR_MODE (0750)
for every directory made here, parents included (`make_dirs`).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator

from vacagent import crashpoints, logs

log = logs.get("vacagent.state")

FILE_MODE = 0o640
SECRET_MODE = 0o600
DIR_MODE = 0o750


def make_dirs(path: Path | str) -> None:
    """mkdir -p with DIR_MODE for every directory it makes (os.makedirs gives parents 0777)."""
    path = Path(path)
    if path.is_dir():
        return
    make_dirs(path.parent)
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create(path: Path | str, mode: int = FILE_MODE, exclusive: bool = True) -> int:
    """A new file's descriptor, opened for writing with `mode` from the start (umask applies)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_EXCL if exclusive else os.O_TRUNC)
    return os.open(path, flags, mode)


def write_bytes(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    make_dirs(path.parent)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        with os.fdopen(create(tmp, mode), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def write_text(path: Path, text: str, mode: int = FILE_MODE) -> None:
    write_bytes(path, text.encode("utf-8"), mode)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def write_json(path: Path, obj: Any, mode: int = FILE_MODE) -> None:
    write_text(path, dumps(obj), mode)


def read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.load(f)


def _end_of_last_line(fd: int, size: int) -> int:
    """Offset just past the last newline (0 if none): where whole lines end."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def append_line(path: Path, obj: Any, crash_point: str | None = None) -> None:
    """Append one JSON line whole, or nothing (OSError); `crash_point`: its name in `crashpoints`."""
    make_dirs(path.parent)
    line = (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)  # read: to find a torn tail
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one appender at a time may repair or roll back
        size = os.fstat(fd).st_size
        whole = _end_of_last_line(fd, size) if size else 0
        if whole != size:
            log.warning("torn last line removed", file=path, bytes=size - whole,
                        why="a process stopped half-way through writing it")
            os.ftruncate(fd, whole)
        if crash_point and crashpoints.armed(crash_point):
            os.write(fd, line[: len(line) // 2])
            crashpoints.reached(crash_point)
        written = 0
        try:
            while written < len(line):  # a short write (disk nearly full): write the rest
                written += os.write(fd, line[written:])
        except OSError:
            os.ftruncate(fd, whole)  # roll back: never half a line
            raise
    finally:
        os.close(fd)


def read_lines(path: Path) -> Iterator[dict]:
    """The JSON objects of a JSONL file, skipping (and logging) a torn or unreadable line."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                obj = json.loads(raw)
                if not raw.endswith(b"\n"):
                    raise ValueError("no end of line")
            except ValueError as e:
                log.warning("unreadable line skipped", file=path, line=number, why=f"torn or corrupt: {e}")
                continue
            yield obj
