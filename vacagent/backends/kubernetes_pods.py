"""What a machine is as a pod: the Pod and Secret manifests built from a create request.  Pure.

A machinetype's pod keys (docs/kubernetes.md; validated in `schema` and
`definitions`): `root_image` (the container image; a `docker://` prefix is
stripped), `container_command` (a list, or a string split as a shell
would), `processors` -> CPU request and limit, `mb_per_processor` x
processors -> memory, `disk_gb_per_processor` x processors -> ephemeral
storage, `kueue_queue_name` -> the `kueue.x-k8s.io/queue-name` label,
`pod_overrides` merged into the pod spec and `container_overrides` into the
worker container (vacagent's own volume, mount and variables are kept).

The rendered user_data and the machine's token travel in a Secret of the
same name, owned by the pod (so the garbage collector deletes it with the
pod), mounted read-only at `SECRET_DIR`; `VACAGENT_TOKEN` comes from the
Secret, never as a literal in the pod spec.  Neighbours: `kubernetes` (the
backend that sends these), `kubernetes_status` (reading pods back).
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping

from vacagent.backends.base import CreateRequest
from vacagent.errors import Permanent
from vacagent.schema import merge_documents

MANAGED_BY = "app.kubernetes.io/managed-by"
SITE, SPACE, MACHINETYPE, PROCESSORS = "vacagent.io/site", "vacagent.io/space", "vacagent.io/machinetype", "vacagent.io/processors"
QUEUE = "kueue.x-k8s.io/queue-name"
CONTAINER = "worker"
VOLUME = "vacagent"
SECRET_DIR = "/var/run/vacagent"  # user_data and token, read-only
TERMINATION_LOG = "/dev/termination-log"
BACKSTOP_SECONDS = 3600


def identity(site: str, space: str) -> dict[str, str]:
    """The labels that make a pod (or Secret) this site's, in this space."""
    return {MANAGED_BY: "vacagent", SITE: site, SPACE: space}


def selector(site: str, space: str) -> str:
    return ",".join(f"{k}={v}" for k, v in identity(site, space).items())


def image(root_image: str) -> str:
    return root_image[len("docker://"):] if root_image.startswith("docker://") else root_image


def _resources(extra: Mapping[str, Any], processors: int, mb_per_processor: int) -> dict[str, dict[str, str]]:
    amounts = {"cpu": str(processors), "memory": f"{mb_per_processor * processors}Mi"}
    disk = extra.get("disk_gb_per_processor")
    if isinstance(disk, (int, float)) and disk > 0:
        amounts["ephemeral-storage"] = str(int(disk * processors * 1_000_000_000))  # GB, as MJF's scratch_limit_bytes
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _command(extra: Mapping[str, Any]) -> list[str] | None:
    command = extra.get("container_command")
    if command is None:
        return None
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def labels(request: CreateRequest, site: str, space: str) -> dict[str, str]:
    mt = request.machinetype
    out = {**identity(site, space), MACHINETYPE: mt.name, PROCESSORS: str(mt.processors)}
    queue = mt.extra.get("kueue_queue_name")
    if queue:
        out[QUEUE] = str(queue)
    return out


def pod(request: CreateRequest, site: str, space: str) -> dict[str, Any]:
    """The Pod manifest of one machine.  Raises Permanent if its machinetype has no image."""
    mt = request.machinetype
    root_image = mt.extra.get("root_image")
    if not isinstance(root_image, str) or not root_image:
        raise Permanent(f"{mt.source}: machinetype {mt.name}: root_image: required for a pod (the container image)")
    env = [{"name": k, "value": v} for k, v in request.environment.items() if k != "VACAGENT_TOKEN"]
    env += [
        {"name": "VACAGENT_TOKEN", "valueFrom": {"secretKeyRef": {"name": request.name, "key": "token"}}},
        {"name": "VACAGENT_USER_DATA", "value": f"{SECRET_DIR}/user_data"},
        {"name": "VACAGENT_SITE", "value": site},
        {"name": "VACAGENT_SPACE", "value": space},
        {"name": "VACAGENT_MACHINE", "value": request.name},
        {"name": "VACAGENT_MACHINETYPE", "value": mt.name},
    ]
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image(root_image),
        "env": env,
        "resources": _resources(mt.extra, mt.processors, mt.mb_per_processor),
        "volumeMounts": [{"name": VOLUME, "mountPath": SECRET_DIR, "readOnly": True}],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    command = _command(mt.extra)
    if command:
        container["command"] = command
    container = merge_documents(container, mt.extra.get("container_overrides") or {}, extend_lists=True)
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # a worker needs no API access; pod_overrides may grant it
        # A backstop should vacagent be down for long: the kubelet ends the pod an hour after
        # vacagent would have deleted it (700 Exceeded max_wallclock_seconds).
        "activeDeadlineSeconds": mt.max_wallclock_seconds + BACKSTOP_SECONDS,
        "volumes": [{"name": VOLUME, "secret": {"secretName": request.name, "defaultMode": 0o440}}],
    }
    spec = merge_documents(spec, mt.extra.get("pod_overrides") or {}, extend_lists=True)
    spec.update(containers=[container], restartPolicy="Never")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": request.name, "labels": labels(request, site, space)},
        "spec": spec,
    }


def secret(request: CreateRequest, site: str, space: str, pod_uid: str) -> dict[str, Any]:
    """The machine's Secret, owned by its pod: the garbage collector deletes it with the pod."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": request.name,
            "labels": labels(request, site, space),
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": request.name, "uid": pod_uid}],
        },
        "stringData": {"user_data": request.user_data, "token": request.environment.get("VACAGENT_TOKEN", "")},
    }
