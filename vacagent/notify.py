"""systemd's notify protocol (sd_notify), in the few lines it takes.

With `Type=notify` systemd passes NOTIFY_SOCKET; the daemon sends READY=1
when its first configuration is loaded, WATCHDOG=1 at least every half of
WatchdogSec, RELOADING=1 / READY=1 around a SIGHUP reload and STOPPING=1 when
it begins to exit.  Without NOTIFY_SOCKET every call is a no-op.
"""

from __future__ import annotations

import os
import socket


def notify(*lines: str) -> bool:
    """Send `lines` (e.g. "READY=1", "STATUS=...") to systemd; False if not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(lines).encode())
    except OSError:
        return False
    return True


def watchdog_seconds() -> float | None:
    """How often systemd expects WATCHDOG=1, or None if the watchdog is off for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000
    except ValueError:
        return None
