"""Reading a pod back: phase, conditions and container state -> `Machine`.  Pure.

`to_machine(pod)` applies, in order (the first that matches wins):

| the pod                                                    | state    | message / cause |
|------------------------------------------------------------|----------|-----------------|
| a `DisruptionTarget` condition, or reason Evicted/Preempting | STOPPED | cause RECLAIMED, no message (the lab's doing) |
| being deleted (`deletionTimestamp`)                        | DELETING |                 |
| container waiting: ImagePullBackOff, ErrImagePull, CreateContainerConfigError, InvalidImageName | FAILED | `500 <reason>: <message>` |
| Pending, its Secret missing (`secret_missing`)             | FAILED   | `700 Failed to start: ...` |
| Pending, PodScheduled False (Unschedulable)                | STARTING | cause CAPACITY  |
| Pending                                                    | STARTING |                 |
| Running                                                    | RUNNING  |                 |
| Succeeded / Failed                                         | STOPPED  | the termination message if it starts with a 3-digit code, else exit code 0 -> `200`, other -> `700 <reason> (exit code N)` |
| anything else (Unknown)                                    | UNKNOWN  |                 |

The message is the platform's: the cycle uses it only when the machine left
no shutdown message of its own through the endpoint.  Pending pods stay
STARTING: `feedback` ends one after the space's `max_starting_seconds`
with `700 Failed to start` (and the CAPACITY cause, when unschedulable).
Neighbours: `kubernetes_pods` (the manifests), `kubernetes` (the backend).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from vacagent.backends.kubernetes_pods import MACHINETYPE, PROCESSORS
from vacagent.model import Cause, Machine, MachineState, ShutdownMessage

PHASES = {
    "Pending": MachineState.STARTING,
    "Running": MachineState.RUNNING,
    "Succeeded": MachineState.STOPPED,
    "Failed": MachineState.STOPPED,
}
# The environment the site gave cannot run the container: abort at once (500), as Vac does.
BROKEN_ENVIRONMENT = frozenset({"ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "InvalidImageName"})
RECLAIMED_REASONS = frozenset({"Evicted", "Preempting"})


def _time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or ():
        if condition.get("type") == kind:
            return condition
    return None


def _container_state(status: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = status.get("containerStatuses") or ()
    return (containers[0].get("state") or {}) if containers else {}


def exit_message(terminated: Mapping[str, Any]) -> str:
    """The shutdown message a finished container leaves: its own coded message, else from its exit code."""
    own = ShutdownMessage.parse(terminated.get("message") or "")
    if own is not None:
        return str(own)
    code = terminated.get("exitCode")
    if code == 0:
        return "200 Intended work completed ok (exit code 0)"
    reason = terminated.get("reason") or "Error"
    return f"700 {reason}" if code is None else f"700 {reason} (exit code {code})"


def reclaimed(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    target = _condition(status, "DisruptionTarget")
    return status.get("reason") in RECLAIMED_REASONS or (target is not None and target.get("status") == "True")


def translate(pod: Mapping[str, Any], secret_missing: bool = False) -> tuple[MachineState, str | None, Cause | None]:
    """(state, platform's shutdown message, cause) of one pod, by the table above."""
    status = pod.get("status") or {}
    if reclaimed(pod):
        return MachineState.STOPPED, None, Cause.RECLAIMED
    if pod["metadata"].get("deletionTimestamp"):
        return MachineState.DELETING, None, None
    container = _container_state(status)
    phase = status.get("phase")
    waiting = container.get("waiting") or {}
    if waiting.get("reason") in BROKEN_ENVIRONMENT:
        text = f"{waiting['reason']}: {waiting.get('message') or ''}".strip().rstrip(":")
        return MachineState.FAILED, f"500 {text}"[:200], None
    if phase == "Pending":
        if secret_missing:
            return MachineState.FAILED, "700 Failed to start: its Secret is missing", None
        scheduled = _condition(status, "PodScheduled")
        unschedulable = scheduled is not None and scheduled.get("status") == "False"
        return MachineState.STARTING, None, Cause.CAPACITY if unschedulable else None
    state = PHASES.get(phase or "", MachineState.UNKNOWN)
    if state is MachineState.STOPPED:
        return state, exit_message(container.get("terminated") or {"reason": status.get("reason")}), None
    return state, None, None


def to_machine(pod: Mapping[str, Any], secret_missing: bool = False) -> Machine:
    metadata = pod["metadata"]
    labels = metadata.get("labels") or {}
    state, message, cause = translate(pod, secret_missing)
    container = _container_state(pod.get("status") or {})
    running, terminated = container.get("running") or {}, container.get("terminated") or {}
    try:
        processors = int(labels.get(PROCESSORS, 1))
    except ValueError:
        processors = 1
    return Machine(
        name=metadata["name"],
        machinetype=labels.get(MACHINETYPE, ""),
        state=state,
        backend_id=metadata.get("uid", ""),
        processors=processors,
        started_at=_time(running.get("startedAt") or terminated.get("startedAt")),
        stopped_at=_time(terminated.get("finishedAt")),
        message=message,
        cause=cause,
    )
