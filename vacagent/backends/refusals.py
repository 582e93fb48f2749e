"""A cloud's refusals as errors.py types: the rule the EC2 and GCE backends share.

Each backend keeps its own tables (EC2 error codes; GCE error reasons and
operation error codes); `kind` applies them, the code before the HTTP
status, so a stockout answered with a 500 is still capacity.  `typed`
builds the error from the trail of what failed; a Temporary carries the
delay before the next try.

Neighbours: `ec2`, `gce`; `errors` (the types).
"""

from __future__ import annotations

from typing import Collection

from vacagent.errors import CapacityExhausted, ConfigError, Permanent, QuotaExceeded, Temporary

RETRY_DELAY = 10.0  # seconds before a throttled, failed or unanswered request is tried again by the next cycle


def kind(code: str, status: int, capacity: Collection[str], quota: Collection[str],
         temporary: Collection[str]) -> type[Exception]:
    """Capacity or quota by code; temporary by code, or for 429 and 5xx; anything else permanent."""
    if code in capacity:
        return CapacityExhausted
    if code in quota:
        return QuotaExceeded
    if code in temporary or status == 429 or status >= 500:
        return Temporary
    return Permanent


def typed(error_kind: type[Exception], message: str) -> Exception:
    return Temporary(message, RETRY_DELAY) if error_kind is Temporary else error_kind(message)


def option_error(space: str, key: str, reason: str) -> ConfigError:
    return ConfigError(f"space {space}: options.{key}: {reason}")
