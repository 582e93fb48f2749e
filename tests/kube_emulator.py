"""An emulator of the Kubernetes API (core/v1 pods and secrets), for the real `kubernetes` client.

No kube-apiserver can be installed on the test machines, and `kmock` (the
Kubernetes mock server on PyPI) lists without `labelSelector`, `limit` or
`continue`, answers `resourceVersion: "..."` and Status reasons of its own
("Object Not Found"), so neither can stand in for the API here.  This is
`../shared/testbeds/k8s/fake_kube.py` grown into what the kubernetes
backend meets in a real cluster:

- pods and secrets: create / get / list / delete in a namespace;
  `labelSelector` (=, ==, !=, exists, !exists, in, notin), `limit` and
  `continue` (tokens expire: `expire_continue_tokens()` -> 410 Expired),
  a `resourceVersion` on every object and list;
- `Status` bodies with the API's own `reason`, `code`, `message`, `details`;
- admission as the API server does it: name and label validation (422
  Invalid), strict field validation of the pod spec (400 BadRequest),
  RBAC (`deny(verb, resource)` -> 403 "cannot VERB resource"), a
  ResourceQuota on pods and cpu (403 "exceeded quota"), one-shot injected
  refusals (`inject`) with headers such as Retry-After;
- the garbage collector: a Secret whose Pod owner is gone is deleted;
- a kubelet the test drives: `run`, `wait_container` (ImagePullBackOff...),
  `terminate`, `evict`, `unschedulable`, `disrupt`; a pod whose secret
  volume is missing never starts (ContainerCreating), as on a real node;
  deletion with a grace period (`termination_seconds`).

`requests` counts the HTTP requests served, by (method, resource).
`serve()` runs it on 127.0.0.1 in a thread; `python tests/kube_emulator.py`
runs it in a process of its own (the end-to-end tests and the benchmark).
"""

from __future__ import annotations

import base64
import collections
import json
import re
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<resource>pods|secrets)(?:/(?P<name>[^/]+))?$")
VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-emulated", "gitCommit": "0",
           "gitTreeState": "clean", "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5",
           "compiler": "gc", "platform": "linux/amd64"}
KINDS = {"pods": "Pod", "secrets": "Secret"}
VERBS = {"GET": "get", "POST": "create", "DELETE": "delete"}
# Fields of core/v1 PodSpec: with fieldValidation=Strict anything else is refused (400).
POD_SPEC_FIELDS = frozenset({
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "containers", "dnsConfig",
    "dnsPolicy", "enableServiceLinks", "ephemeralContainers", "hostAliases", "hostIPC", "hostNetwork",
    "hostPID", "hostUsers", "hostname", "imagePullSecrets", "initContainers", "nodeName", "nodeSelector",
    "os", "overhead", "preemptionPolicy", "priority", "priorityClassName", "readinessGates",
    "resourceClaims", "resources", "restartPolicy", "runtimeClassName", "schedulerName", "schedulingGates",
    "securityContext", "serviceAccount", "serviceAccountName", "setHostnameAsFQDN", "shareProcessNamespace",
    "subdomain", "terminationGracePeriodSeconds", "tolerations", "topologySpreadConstraints", "volumes",
})
CONTINUE_EXPIRED = ("The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter, or use the continue token "
                    "in this response to retrieve the remainder of the results. Continuing with the provided "
                    "token results in an inconsistent list - objects that were created, modified, or deleted "
                    "between the time the first chunk was returned and now may show up in the list.")


def stamp(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def millicores(quantity: Any) -> int:
    text = str(quantity)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def selector_matches(labels: dict[str, str], selector: str | None) -> bool:
    """The API server's label selector, on one object's labels."""
    for term in re.findall(r"[^,(]+(?:\([^)]*\))?", selector or ""):
        term = term.strip()
        set_op = re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", term)
        if set_op:
            key, op, values = set_op.groups()
            inside = labels.get(key) in {v.strip() for v in values.split(",")}
            if inside != (op == "in"):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term and term not in labels:
            return False
    return True


class ApiError(Exception):
    """An answer of the API server other than success: becomes a Status body."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details, self.headers = details, headers or {}

    def body(self) -> dict[str, Any]:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            status["details"] = self.details
        return status


def not_found(resource: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource})


def quota_exceeded(name: str, quota: str = "compute-resources", requested: str = "pods=1",
                   used: str = "pods=10", limited: str = "pods=10") -> ApiError:
    return ApiError(403, "Forbidden", f'pods "{name}" is forbidden: exceeded quota: {quota}, '
                    f"requested: {requested}, used: {used}, limited: {limited}", {"name": name, "kind": "pods"})


def must_specify(name: str, quota: str = "compute-resources", what: str = "limits.memory") -> ApiError:
    return ApiError(403, "Forbidden", f'pods "{name}" is forbidden: failed quota: {quota}: must specify {what}',
                    {"name": name, "kind": "pods"})


def rbac_denied(verb: str, resource: str, namespace: str, user: str = "system:serviceaccount:vac:vacagent") -> ApiError:
    return ApiError(403, "Forbidden", f'{resource} is forbidden: User "{user}" cannot {verb} resource '
                    f'"{resource}" in API group "" in the namespace "{namespace}"', {"kind": resource})


class KubeEmulator:
    """The API server's state and the kubelet's test controls.  Thread-safe: one lock."""

    def __init__(self, termination_seconds: float = 0.0):
        self.lock = threading.RLock()
        self.objects: dict[str, dict[tuple[str, str], dict]] = {"pods": {}, "secrets": {}}
        self.rv = 1000
        self.epoch = 0  # continue tokens carry the epoch they were issued in
        self.termination_seconds = termination_seconds
        self.requests: collections.Counter = collections.Counter()  # (method, resource) -> count
        self.denied: set[tuple[str, str]] = set()  # (verb, resource) RBAC refuses
        self.pods_quota: int | None = None
        self.cpu_quota_millicores: int | None = None
        self._injected: list[tuple[str, str, ApiError]] = []  # (method, resource, error), one-shot
        self.terminating: dict[tuple[str, str], float] = {}  # pod -> when its termination ends (monotonic)

    # -- test controls: the API server ----------------------------------

    def inject(self, method: str, resource: str, error: ApiError) -> None:
        """The next `method` request on `resource` fails with `error`, once."""
        with self.lock:
            self._injected.append((method.upper(), resource, error))

    def deny(self, verb: str, resource: str) -> None:
        with self.lock:
            self.denied.add((verb, resource))

    def expire_continue_tokens(self) -> None:
        """Every continue token issued so far is now too old (as after etcd compaction)."""
        with self.lock:
            self.epoch += 1

    def get(self, resource: str, ns: str, name: str) -> dict | None:
        with self.lock:
            self._finish_terminations()
            return self.objects[resource].get((ns, name))

    def names(self, resource: str, ns: str | None = None) -> set[str]:
        with self.lock:
            self._finish_terminations()
            return {n for (space, n) in self.objects[resource] if ns is None or space == ns}

    def put(self, resource: str, ns: str, obj: dict) -> dict:
        """Store an object directly (no request counted): populating, for tests and benchmarks."""
        with self.lock:
            return self._store(resource, ns, obj)

    # -- test controls: the kubelet and the scheduler --------------------

    def _update(self, ns: str, name: str, **status: Any) -> dict:
        with self.lock:
            pod = self.objects["pods"][(ns, name)]
            pod["status"].update(status)
            self._bump(pod)
            return pod

    def _container(self, pod: dict, state: dict, **extra: Any) -> list[dict]:
        containers = pod["spec"]["containers"]
        pulled = "waiting" not in state
        return [{"name": c["name"], "image": c.get("image", ""), "imageID": f"{c.get('image', '')}@sha256:0" if pulled
                 else "", "ready": "running" in state, "started": "running" in state, "restartCount": 0,
                 "lastState": {}, "state": state, **extra} for c in containers]

    def secrets_present(self, ns: str, name: str) -> bool:
        pod = self.objects["pods"][(ns, name)]
        wanted = [v["secret"]["secretName"] for v in pod["spec"].get("volumes", []) if "secret" in v
                  and not v["secret"].get("optional")]
        return all((ns, s) in self.objects["secrets"] for s in wanted)

    def run(self, ns: str, name: str) -> bool:
        """Schedule and start the pod; False (it stays ContainerCreating) if a secret volume is missing."""
        with self.lock:
            pod = self.objects["pods"][(ns, name)]
            conditions = [{"type": "PodScheduled", "status": "True"}]
            if not self.secrets_present(ns, name):
                waiting = {"waiting": {"reason": "ContainerCreating"}}
                self._update(ns, name, phase="Pending", conditions=conditions,
                             containerStatuses=self._container(pod, waiting))
                return False
            running = {"running": {"startedAt": stamp()}}
            self._update(ns, name, phase="Running", podIP="10.0.0.5", startTime=stamp(),
                         conditions=conditions + [{"type": "Ready", "status": "True"}],
                         containerStatuses=self._container(pod, running))
            return True

    def start_pending(self, ns: str) -> list[str]:
        """The kubelet's round: start every pending pod that is scheduled or new, and not stuck on
        its image (as a kubelet retries a missing volume); the names of those now running."""
        def startable(pod: dict) -> bool:
            status = pod["status"]
            waiting = [c["state"]["waiting"].get("reason") for c in status.get("containerStatuses", [])
                       if "waiting" in c["state"]]
            unscheduled = any(c["type"] == "PodScheduled" and c["status"] == "False" for c in status.get("conditions", []))
            return (status.get("phase") == "Pending" and "deletionTimestamp" not in pod["metadata"]
                    and not unscheduled and all(reason == "ContainerCreating" for reason in waiting))

        with self.lock:
            fresh = [name for (space, name), pod in self.objects["pods"].items() if space == ns and startable(pod)]
            return [name for name in fresh if self.run(ns, name)]

    def wait_container(self, ns: str, name: str, reason: str, message: str = "") -> None:
        """The container cannot start: ImagePullBackOff, ErrImagePull, CreateContainerConfigError..."""
        with self.lock:
            pod = self.objects["pods"][(ns, name)]
            waiting = {"waiting": {"reason": reason, "message": message or f"{reason} for {name}"}}
            self._update(ns, name, phase="Pending", conditions=[{"type": "PodScheduled", "status": "True"}],
                         containerStatuses=self._container(pod, waiting))

    def terminate(self, ns: str, name: str, exit_code: int = 0, message: str | None = None,
                  reason: str | None = None) -> None:
        """The container exits: the pod Succeeded (exit 0) or Failed, with its termination message."""
        with self.lock:
            pod = self.objects["pods"][(ns, name)]
            state = {"terminated": {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0
                                                                                  else "Error"),
                                    "startedAt": pod["status"].get("startTime") or stamp(), "finishedAt": stamp()}}
            if message is not None:
                state["terminated"]["message"] = message
            self._update(ns, name, phase="Succeeded" if exit_code == 0 else "Failed",
                         containerStatuses=self._container(pod, state))

    def evict(self, ns: str, name: str) -> None:
        """The kubelet evicts the pod (node pressure): Failed, reason Evicted."""
        with self.lock:
            pod = self.objects["pods"][(ns, name)]
            state = {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": stamp()}}
            self._update(ns, name, phase="Failed", reason="Evicted",
                         message="The node was low on resource: memory.",
                         conditions=[{"type": "DisruptionTarget", "status": "True",
                                      "reason": "TerminationByKubelet"}],
                         containerStatuses=self._container(pod, state))

    def disrupt(self, ns: str, name: str, reason: str = "PreemptionByScheduler") -> None:
        """The scheduler preempts the pod: a DisruptionTarget condition, then deletion."""
        with self.lock:
            pod = self.objects["pods"][(ns, name)]
            pod["status"].setdefault("conditions", []).append(
                {"type": "DisruptionTarget", "status": "True", "reason": reason})
            self._delete_pod(pod)

    def unschedulable(self, ns: str, name: str) -> None:
        message = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available."
        self._update(ns, name, phase="Pending", conditions=[
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}])

    # -- the store -------------------------------------------------------

    def _bump(self, obj: dict) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def _store(self, resource: str, ns: str, obj: dict) -> dict:
        md = obj.setdefault("metadata", {})
        md.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=stamp())
        obj.update(apiVersion="v1", kind=KINDS[resource])
        if resource == "pods":
            obj.setdefault("status", {"phase": "Pending", "qosClass": "Guaranteed"})
        self._bump(obj)
        self.objects[resource][(ns, md["name"])] = obj
        if resource == "secrets":
            self._collect_garbage([obj])
        return obj

    def _delete_pod(self, pod: dict) -> None:
        md = pod["metadata"]
        if "deletionTimestamp" not in md:
            md["deletionTimestamp"] = stamp()
            md["deletionGracePeriodSeconds"] = int(self.termination_seconds)
            self.terminating[(md["namespace"], md["name"])] = time.monotonic() + self.termination_seconds
            self._bump(pod)
        self._finish_terminations()

    def _finish_terminations(self) -> None:
        now = time.monotonic()
        done = [key for key, at in self.terminating.items() if at <= now]
        for key in done:
            del self.terminating[key]
            del self.objects["pods"][key]
        if done:
            self._collect_garbage()

    def _collect_garbage(self, candidates: list[dict] | None = None) -> None:
        """The garbage collector: a dependent (of `candidates`, default all) whose Pod owner no longer exists goes."""
        uids = {pod["metadata"]["uid"] for pod in self.objects["pods"].values()}
        secrets = self.objects["secrets"]
        for secret in list(secrets.values()) if candidates is None else candidates:
            md = secret["metadata"]
            if any(o.get("kind") == "Pod" and o.get("uid") not in uids for o in md.get("ownerReferences", [])):
                del secrets[(md["namespace"], md["name"])]

    # -- admission -------------------------------------------------------

    def _validate(self, resource: str, ns: str, obj: dict, strict: bool) -> None:
        md = obj.get("metadata") or {}
        name = md.get("name", "")
        kind = KINDS[resource]
        invalid = []
        if not name or len(name) > 253 or not DNS1123.match(name):
            invalid.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 subdomain must consist of "
                           "lower case alphanumeric characters, '-' or '.'")
        for key, value in (md.get("labels") or {}).items():
            if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
                invalid.append(f"metadata.labels: Invalid value: {value!r}: a valid label must be an empty string "
                               "or consist of alphanumeric characters, '-', '_' or '.'")
        if resource == "pods":
            spec = obj.get("spec") or {}
            unknown = sorted(set(spec) - POD_SPEC_FIELDS)
            if strict and unknown:
                raise ApiError(400, "BadRequest", "; ".join(f'strict decoding error: unknown field "spec.{f}"'
                                                            for f in unknown))
            containers = spec.get("containers") or []
            if not containers:
                invalid.append("spec.containers: Required value")
            for i, c in enumerate(containers):
                if not c.get("image"):
                    invalid.append(f"spec.containers[{i}].image: Required value")
            if spec.get("restartPolicy", "Always") not in ("Always", "OnFailure", "Never"):
                invalid.append(f"spec.restartPolicy: Unsupported value: {spec['restartPolicy']!r}")
        if invalid:
            raise ApiError(422, "Invalid", f'{kind} "{name}" is invalid: ' + ", ".join(invalid),
                           {"name": name, "kind": kind})
        if resource == "pods":
            self._admit_quota(ns, name, obj["spec"])

    def _admit_quota(self, ns: str, name: str, spec: dict) -> None:
        live = [p for (space, _), p in self.objects["pods"].items()
                if space == ns and p["status"].get("phase") not in ("Succeeded", "Failed")]
        if self.pods_quota is not None and len(live) + 1 > self.pods_quota:
            raise quota_exceeded(name, used=f"pods={len(live)}", limited=f"pods={self.pods_quota}")
        if self.cpu_quota_millicores is not None:
            def cpu(s: dict) -> int:
                return sum(millicores(c.get("resources", {}).get("requests", {}).get("cpu", 0)) for c in s["containers"])
            if any("cpu" not in c.get("resources", {}).get("requests", {}) for c in spec["containers"]):
                raise must_specify(name, what="requests.cpu")
            used, wanted = sum(cpu(p["spec"]) for p in live), cpu(spec)
            if used + wanted > self.cpu_quota_millicores:
                raise quota_exceeded(name, requested=f"requests.cpu={wanted}m", used=f"requests.cpu={used}m",
                                     limited=f"requests.cpu={self.cpu_quota_millicores}m")

    # -- requests --------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, bytes, dict]:
        """(status, JSON body, headers) for one request; serialized under the lock (objects change)."""
        with self.lock:
            status, payload, headers = self._answer(method, path, query, body)
            return status, json.dumps(payload).encode(), headers

    def _answer(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, dict, dict]:
        if path == "/version":
            return 200, VERSION, {}
        match = PATH.match(path)
        if not match:
            return 404, ApiError(404, "NotFound", "the server could not find the requested resource").body(), {}
        ns, resource, name = match["ns"], match["resource"], match["name"]
        self.requests[(method, resource)] += 1
        try:
            verb = "list" if method == "GET" and name is None else VERBS.get(method, method.lower())
            if (verb, resource) in self.denied:
                raise rbac_denied(verb, resource, ns)
            for i, (m, r, error) in enumerate(self._injected):
                if (m, r) == (method, resource):
                    del self._injected[i]
                    raise error
            self._finish_terminations()
            if method == "POST" and name is None:
                return 201, self._create(resource, ns, json.loads(body or b"{}"),
                                         query.get("fieldValidation") == "Strict"), {}
            if method == "GET" and name is None:
                return 200, self._list(resource, ns, query), {}
            if method == "GET":
                obj = self.objects[resource].get((ns, name))
                if obj is None:
                    raise not_found(resource, name)
                return 200, obj, {}
            if method == "DELETE" and name is not None:
                return 200, self._delete(resource, ns, name), {}
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {resource}")
        except ApiError as e:
            return e.code, e.body(), e.headers

    def _create(self, resource: str, ns: str, obj: dict, strict: bool) -> dict:
        self._validate(resource, ns, obj, strict)
        name = obj["metadata"]["name"]
        if (ns, name) in self.objects[resource]:
            raise ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists',
                           {"name": name, "kind": resource})
        if resource == "secrets" and "stringData" in obj:
            data = obj.setdefault("data", {})
            for key, value in obj.pop("stringData").items():
                data[key] = base64.b64encode(value.encode()).decode()
        return self._store(resource, ns, obj)

    def _delete(self, resource: str, ns: str, name: str) -> dict:
        obj = self.objects[resource].get((ns, name))
        if obj is None:
            raise not_found(resource, name)
        if resource == "pods":
            self._delete_pod(obj)
        else:
            del self.objects[resource][(ns, name)]
            self._bump(obj)
        return obj

    def _list(self, resource: str, ns: str, query: dict[str, str]) -> dict:
        items = [obj for (space, _), obj in sorted(self.objects[resource].items())
                 if space == ns and selector_matches(obj["metadata"].get("labels") or {}, query.get("labelSelector"))]
        start = 0
        if query.get("continue"):
            epoch, after = json.loads(base64.urlsafe_b64decode(query["continue"]))
            if epoch != self.epoch:
                raise ApiError(410, "Expired", CONTINUE_EXPIRED)
            start = next((i for i, obj in enumerate(items) if obj["metadata"]["name"] > after), len(items))
        limit = int(query.get("limit") or 0) or len(items) or 1
        page = items[start:start + limit]
        meta: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if start + limit < len(items):
            token = json.dumps([self.epoch, page[-1]["metadata"]["name"]]).encode()
            meta.update({"continue": base64.urlsafe_b64encode(token).decode(),
                         "remainingItemCount": len(items) - start - limit})
        return {"kind": f"{KINDS[resource]}List", "apiVersion": "v1", "metadata": meta,
                "items": page}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
    emulator: KubeEmulator

    def _serve(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, data, headers = self.emulator.handle(self.command, url.path, query, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def serve(emulator: KubeEmulator, port: int = 0) -> ThreadingHTTPServer:
    """Serve `emulator` on 127.0.0.1:port (0: any free port) in a daemon thread."""
    handler = type("Handler", (_Handler,), {"emulator": emulator})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), name="kube-emulator", daemon=True).start()
    return server


def kubeconfig(url: str, namespace: str = "default") -> dict:
    """A kubeconfig document naming the emulator (write it as YAML or JSON)."""
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "vacagent", "user": {"token": "emulator-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "vacagent",
                                                       "namespace": namespace}}],
    }


if __name__ == "__main__":
    srv = serve(KubeEmulator(), int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(f"http://127.0.0.1:{srv.server_address[1]}", flush=True)
    threading.Event().wait()
