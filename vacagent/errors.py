"""Typed errors, named by what the caller does next.

Backends map native failures to these; the cycle and actuator decide on the
type, never on a message string.  Messages read as a trail:
"creating machine demo-alpha-7f3a: quota exceeded".
"""

import errno


class VacagentError(Exception):
    """Base of every error vacagent raises on purpose."""


class ConfigError(VacagentError):
    """Bad configuration or definition: fix the file; nothing was acted on."""


class NotFound(VacagentError):
    """The machine is already gone: a delete counts as done."""


class CapacityExhausted(VacagentError):
    """The cloud has no room for this machine now: back off the machinetype."""


class QuotaExceeded(VacagentError):
    """The project's quota is used up: back off the machinetype."""


class Temporary(VacagentError):
    """A passing failure (timeout, 5xx, throttling): try again after `delay` seconds."""

    def __init__(self, message: str, delay: float = 0.0):
        super().__init__(message)
        self.delay = delay


class Permanent(VacagentError):
    """The request can never succeed as made (bad image, bad flavor): back off and tell the operator."""


def disk_full(error: BaseException) -> bool:
    """Did a write fail because the file system (or the quota) is full?  The cycle then
    creates nothing, goes on deleting, and tries again next cycle."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def backs_off(error: BaseException) -> bool:
    """Does a failed create of this kind put its machinetype into backoff?"""
    return isinstance(error, (CapacityExhausted, QuotaExceeded, Permanent))
