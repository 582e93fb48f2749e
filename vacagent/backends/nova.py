"""Nova's records and answers, translated: pure functions, no I/O.

- `to_machine(server, site, space)`: one `GET /servers/detail` entry -> `Machine`
  through `STATES`; an ERROR carries its fault as the machine's message, and
  a fault Nova gives for capacity ("No valid host was found") or for its
  late quota re-check ("Quota exceeded") becomes the machine's `Cause`.
- `tags(...)`, `metadata(...)`: how a server is marked as this site's, space's
  and machinetype's (tags for the server-side filter, metadata for reading
  back, both checked on the client).
- `choose_flavor(...)`: the flavor rule (`sizing`'s, shared with EC2 and GCE,
  with a reason for each candidate); `choose_zone(...)`: the spread.
- `error_for(...)`: an HTTP answer -> the `errors` type the caller acts on.

Nova reports capacity and quota only in the text of a fault or an error
body; this module is the one place that reads those texts.  Neighbour:
`openstack` (the backend, which does the requests).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from vacagent import errors
from vacagent.backends import sizing
from vacagent.model import Cause, Machine, MachineState, MachineType

STATES: Mapping[str, MachineState] = {
    "BUILD": MachineState.STARTING,
    "REBUILD": MachineState.STARTING,
    "ACTIVE": MachineState.RUNNING,
    # Operations on a live server: it is still there and still running its work.
    "REBOOT": MachineState.RUNNING,
    "HARD_REBOOT": MachineState.RUNNING,
    "PASSWORD": MachineState.RUNNING,
    "MIGRATING": MachineState.RUNNING,
    "RESIZE": MachineState.RUNNING,
    "VERIFY_RESIZE": MachineState.RUNNING,
    "REVERT_RESIZE": MachineState.RUNNING,
    "SHUTOFF": MachineState.STOPPED,
    "STOPPED": MachineState.STOPPED,
    "ERROR": MachineState.FAILED,
    "DELETED": MachineState.DELETING,
    "SOFT_DELETED": MachineState.DELETING,
    # PAUSED, SUSPENDED, SHELVED, SHELVED_OFFLOADED, RESCUE, UNKNOWN: an operator's doing or
    # Nova's own doubt; UNKNOWN leaves them to the lifetime and heartbeat rules.
}

NO_VALID_HOST = "No valid host was found"
QUOTA_TEXT = "Quota exceeded"
META_SITE, META_SPACE, META_MACHINETYPE = "vacagent_site", "vacagent_space", "vacagent_machinetype"
TAG_MAX = 60  # Nova's limit on one tag


def tag(kind: str, value: str) -> str:
    """`vac-<kind>=<value>`, or a digest of the value when that would pass Nova's 60 characters."""
    text = f"vac-{kind}={value}"
    if len(text) <= TAG_MAX:
        return text
    return f"vac-{kind}#{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def tags(site: str, space: str, machinetype: str | None = None) -> list[str]:
    marks = [tag("site", site), tag("space", space)]
    return marks + [tag("mt", machinetype)] if machinetype is not None else marks


def metadata(site: str, space: str, machinetype: str) -> dict[str, str]:
    return {META_SITE: site, META_SPACE: space, META_MACHINETYPE: machinetype}


def is_ours(server: Mapping[str, Any], site: str, space: str) -> bool:
    """Does the server carry this site's and space's marks (tags and metadata)?

    The listing filters by tags on the server (Nova refuses a metadata filter
    with 400); the metadata is checked here."""
    meta = server.get("metadata") or {}
    carried = set(server.get("tags") or ())
    return (meta.get(META_SITE) == site and meta.get(META_SPACE) == space
            and set(tags(site, space)) <= carried and bool(meta.get(META_MACHINETYPE)))


def timestamp(value: str | None) -> float | None:
    """Nova's times ('2026-12-02T03:04:05.000000' or '...Z'), always UTC -> epoch seconds."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def fault_cause(message: str) -> Cause | None:
    if NO_VALID_HOST in message:
        return Cause.CAPACITY
    if QUOTA_TEXT in message:
        return Cause.QUOTA
    return None


def to_machine(server: Mapping[str, Any]) -> Machine:
    """One server (microversion >= 2.47: the flavor is embedded) -> Machine.  Never raises."""
    status = str(server.get("status", "")).upper()
    state = STATES.get(status, MachineState.UNKNOWN)
    if server.get("OS-EXT-STS:task_state") == "deleting":
        state = MachineState.DELETING
    flavor = server.get("flavor") or {}
    message, cause = None, None
    if state is MachineState.FAILED:
        fault = (server.get("fault") or {}).get("message") or "server in ERROR without a fault"
        cause = fault_cause(fault)
        # The site's environment failed it (500), unless Nova blames nothing we know of (700).
        message = f"{500 if cause else 700} {fault}"
    finished = state in (MachineState.STOPPED, MachineState.FAILED)
    return Machine(
        name=str(server.get("name", "")),
        machinetype=str((server.get("metadata") or {}).get(META_MACHINETYPE, "")),
        state=state,
        backend_id=str(server.get("id", "")),
        processors=int(flavor.get("vcpus") or 1),
        started_at=timestamp(server.get("OS-SRV-USG:launched_at")),
        stopped_at=timestamp(server.get("updated")) if finished else None,
        message=message,
        cause=cause,
    )


def flavor_candidates(machinetype: MachineType, space_default: Sequence[str]) -> list[str]:
    named = machinetype.extra.get("flavor_names") or machinetype.extra.get("flavor_name")
    if isinstance(named, str):
        return [n.strip() for n in named.split(",") if n.strip()]
    return list(named or space_default)


def choose_flavor(machinetype: MachineType, candidates: Sequence[str],
                  flavors: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The first candidate whose vCPUs lie in the machinetype's processor range and whose
    RAM covers `mb_per_processor` for each vCPU.  Raises Permanent naming every candidate."""
    if not candidates:
        raise errors.Permanent(f"machinetype {machinetype.name}: no flavor_names (machinetype or space option)")
    low, high = sizing.processor_range(machinetype)
    why = []
    for name in candidates:
        flavor = flavors.get(name)
        if flavor is None:
            why.append(f"{name}: not found")
            continue
        size = sizing.Size(name, int(flavor.get("vcpus", 0)), int(flavor.get("ram", 0)))
        if sizing.fits(size, machinetype):
            return flavor
        if not low <= size.vcpus <= high:
            why.append(f"{name}: {size.vcpus} vCPUs, outside {low}-{high}")
        else:
            why.append(f"{name}: {size.memory_mb} MB RAM, less than {size.vcpus} x {machinetype.mb_per_processor} MB")
    raise errors.Permanent(f"machinetype {machinetype.name}: no usable flavor ({'; '.join(why)})")


def choose_zone(zones: Sequence[str], in_use: Iterable[str]) -> str | None:
    """The zone with the fewest of this space's machines (first listed on a tie), None without zones."""
    if not zones:
        return None
    counts = dict.fromkeys(zones, 0)
    for zone in in_use:
        if zone in counts:
            counts[zone] += 1
    return min(zones, key=lambda z: counts[z])


def error_text(body: Any) -> str:
    """The message of a Nova/Glance/Neutron error body ({"forbidden": {"message": ...}}, ...)."""
    if isinstance(body, Mapping):
        for value in body.values():
            if isinstance(value, Mapping) and "message" in value:
                return str(value["message"])
        if "message" in body:
            return str(body["message"])
    return str(body)[:300]


def error_for(action: str, status: int, text: str, retry_after: str | None = None) -> errors.VacagentError:
    """An HTTP failure of `action` ("creating machine x") -> the error the caller acts on."""
    said = f"{action}: HTTP {status}: {text}"
    if status in (403, 413) and QUOTA_TEXT.lower() in text.lower():
        return errors.QuotaExceeded(said)
    if status == 401:
        return errors.ConfigError(f"{action}: the cloud refused the credentials again after re-authenticating "
                                  f"(HTTP 401): check the space's auth or application credential")
    if status == 429 or status >= 500:
        try:
            delay = float(retry_after) if retry_after else 30.0
        except ValueError:
            delay = 30.0
        return errors.Temporary(said, delay=delay)
    return errors.Permanent(said)
