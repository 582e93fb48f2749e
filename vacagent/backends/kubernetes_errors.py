"""The API server's refusals -> vacagent's typed errors.  Pure.

`classify(status, body, retry_after, doing, where)` reads the HTTP status
and the Status body (`reason`, `message`) the API server sends:

| status | what it is | error |
|---|---|---|
| 404 | the object is gone | NotFound |
| 429, or 5xx, 0 (no answer) | throttled (Retry-After honoured), server trouble, network | Temporary(delay) |
| 410 | a continue token too old | Temporary (the listing restarts once first) |
| 403 "exceeded quota" | a ResourceQuota | QuotaExceeded, with the API's message |
| 401, 403 "cannot VERB resource" | RBAC / credentials | ConfigError naming the verb and resource to grant |
| other 403 ("must specify", LimitRange, PodSecurity), 400, 422, other 4xx | admission or validation | Permanent, with the API's message |

`409 AlreadyExists` is the backend's to decide (same name = same intent,
when the existing pod carries this machine's labels).  Neighbours:
`kubernetes` (the backend calls this on every ApiException).
"""

from __future__ import annotations

import json
import re

from vacagent.errors import ConfigError, NotFound, Permanent, QuotaExceeded, Temporary, VacagentError

RBAC = re.compile(r'cannot (\S+) resource "([^"]+)"')
DEFAULT_RETRY_SECONDS = 1.0


def status_body(body: str | bytes | None) -> tuple[str, str]:
    """(reason, message) of a Status body; empty strings when it is not one."""
    try:
        status = json.loads(body or b"{}")
    except ValueError:
        return "", (body.decode(errors="replace") if isinstance(body, bytes) else body or "")[:200]
    if not isinstance(status, dict):
        return "", ""
    return str(status.get("reason") or ""), str(status.get("message") or "")


def _delay(retry_after: str | None) -> float:
    try:
        return max(0.0, float(retry_after)) if retry_after else DEFAULT_RETRY_SECONDS
    except ValueError:
        return DEFAULT_RETRY_SECONDS


def classify(status: int, body: str | bytes | None, retry_after: str | None, doing: str, where: str) -> VacagentError:
    """The typed error for one refusal; `doing` reads as a trail ("creating pod lab-a-1f2e")."""
    reason, message = status_body(body)
    said = f"{doing}: {status} {reason}: {message}".rstrip(": ")
    if status == 404:
        return NotFound(said)
    if status == 429 or status >= 500 or status == 0 or status == 410:
        return Temporary(said, _delay(retry_after))
    rbac = RBAC.search(message)
    if status == 401 or (status == 403 and rbac):
        verb, resource = rbac.groups() if rbac else ("use", "the API")
        return ConfigError(
            f"{where}: {doing}: {status} {reason or 'Unauthorized'}: the credentials may not {verb} {resource} "
            f"(grant verb {verb!r} on {resource!r} in the Role, see docs/kubernetes.md): {message}"
        )
    if status == 403 and "exceeded quota" in message:
        return QuotaExceeded(said)
    return Permanent(said)
