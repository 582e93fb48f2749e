"""A Compute Engine emulator: the subset of the v1 REST API the GCE backend's client uses.

No usable GCE emulator exists, so this one serves, with the published JSON
shapes (compute#instance, compute#operation, compute#instanceAggregatedList,
compute#machineType, the error document):

- instances: insert (409 `alreadyExists` on a taken name; a repeated
  `requestId` returns the first operation, as GCE does for an hour), get,
  delete, and the aggregated list with `filter` (`labels.KEY = "VALUE"`
  terms, ANDed), `maxResults` and `pageToken` (empty zones carry the
  `NO_RESULTS_ON_PAGE` warning);
- zone operations: get, wait (returns when done or after a bounded time),
  list with an `operationType` filter; operations stay RUNNING for
  `op_seconds` before DONE, and an insert that fails (a stockout, a late
  quota refusal) ends DONE with `error.errors[].code`, creating nothing;
- machine types: get, from a small table of real sizes; an unknown machine
  type is refused (400 `invalid`), an unknown image too (404 `notFound`);
- authentication: every API request must carry a token issued by its
  OAuth2 endpoint (`/token`) or a JWT self-signed by a trusted service
  account key (what google-auth sends for service accounts), 401 otherwise;
- injected HTTP errors (`inject`: 403 quota, 429, 500, ...) or slow
  answers, insert
  operations that fail (`fail_next_insert`), preemption of a spot instance
  (`preempt`: TERMINATED plus a `compute.instances.preempted` operation),
  a guest shutting itself down (`shut_down`), any status (`set_status`),
  and requests counted by route (`requests`).

Neighbours: `gce_cloud` starts it once per test session; the GCE backend's
tests, the conformance driver and benchmarks/clouds.py use it.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone

from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

ZONES = ("europe-west2-a", "europe-west2-b", "europe-west2-c")
MACHINE_TYPES = {  # name: (guestCpus, memoryMb), as GCE publishes them
    "e2-small": (2, 2048), "e2-standard-2": (2, 8192), "e2-highcpu-4": (4, 4096),
    "n2-standard-4": (4, 16384), "n2-highmem-8": (8, 65536),
}
IMAGES = ("projects/debian-cloud/global/images/family/debian-12", "projects/cos-cloud/global/images/family/cos-stable")
P = "/compute/v1/projects/<project>"
URLS = Map([
    Rule(P + "/zones/<zone>/instances", endpoint="instances", methods=["GET", "POST"]),
    Rule(P + "/zones/<zone>/instances/<name>", endpoint="instance", methods=["GET", "DELETE"]),
    Rule(P + "/aggregated/instances", endpoint="aggregated", methods=["GET"]),
    Rule(P + "/zones/<zone>/operations", endpoint="operations", methods=["GET"]),
    Rule(P + "/zones/<zone>/operations/<op>", endpoint="operation", methods=["GET"]),
    Rule(P + "/zones/<zone>/operations/<op>/wait", endpoint="wait", methods=["POST"]),
    Rule(P + "/zones/<zone>/machineTypes/<machine_type>", endpoint="machine_type", methods=["GET"]),
    Rule("/token", endpoint="token", methods=["POST"]),
])
TERM = re.compile(r'([\w.-]+)\s*(=|!=)\s*"?([^")\s]*)"?')
WAIT_SECONDS = 2.0  # a wait answers after this long at most, still RUNNING (GCE: about 2 minutes)


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(t % 1 * 1000):03d}-00:00"


def _field(document: dict, path: str):
    for key in path.split("."):
        document = document.get(key) if isinstance(document, dict) else None
    return document


def matches(document: dict, expression: str | None) -> bool:
    """GCE's list filter, the subset used here: `field = "value"` and `field != "value"` terms, ANDed."""
    for field, op, value in TERM.findall(expression or ""):
        actual = _field(document, field)
        actual = "" if actual is None else str(actual)
        if (actual == value) != (op == "="):
            return False
    return True


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def response(self) -> Response:
        body = {"error": {"code": self.code, "message": self.message,
                          "errors": [{"message": self.message, "domain": "global", "reason": self.reason}]}}
        return Response(json.dumps(body), self.code, content_type="application/json")


class GCEEmulator:
    def __init__(self, op_seconds: float = 0.2):
        self.lock = threading.Lock()
        self.instances: dict[tuple[str, str, str], dict] = {}  # (project, zone, name) -> instance
        self.operations: dict[str, dict] = {}  # name -> operation (plus "_done_at", "_on_done")
        self.pending: dict[str, dict] = {}  # operations not DONE yet
        self.by_request_id: dict[str, str] = {}  # requestId -> operation name
        self.tokens: set[str] = set()  # access tokens issued by /token
        self.public_keys: list[str] = []  # service accounts whose self-signed JWTs are accepted
        self.op_seconds = op_seconds
        self.faults: list[dict] = []
        self.insert_failures: list[tuple[str, str]] = []  # (error code, message) for the next inserts
        self.requests: Counter = Counter()
        self.ids = itertools.count(4_000_000_000_000_000_000)

    # -- test controls ---------------------------------------------------

    def inject(self, endpoint: str, method: str, code: int | None, reason: str = "", message: str = "injected",
               count: int = 1, delay: float = 0.0) -> None:
        """The next `count` requests to a route fail with this HTTP error (code None: answer after `delay`)."""
        with self.lock:
            self.faults.append({"endpoint": endpoint, "method": method, "code": code, "reason": reason,
                                "message": message, "count": count, "delay": delay})

    def fail_next_insert(self, code: str, message: str) -> None:
        """The next insert is accepted, then its operation ends DONE with this error and makes nothing."""
        with self.lock:
            self.insert_failures.append((code, message))

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.insert_failures.clear()

    def _find(self, name: str) -> tuple[tuple[str, str, str], dict]:
        return next((key, i) for key, i in self.instances.items() if key[2] == name)

    def set_status(self, name: str, status: str) -> None:
        with self.lock:
            _, instance = self._find(name)
            instance["status"] = status
            if status == "TERMINATED":
                instance["lastStopTimestamp"] = stamp(time.time())

    def shut_down(self, name: str) -> None:
        """The guest powered itself off: TERMINATED, as GCE shows it."""
        self.set_status(name, "TERMINATED")

    def preempt(self, name: str) -> None:
        """GCE reclaims a spot VM: it stops (TERMINATED) and a `compute.instances.preempted` operation records why."""
        self.set_status(name, "TERMINATED")
        with self.lock:
            (project, zone, _), instance = self._find(name)
            op = self._operation(project, zone, "compute.instances.preempted", instance, done=True)
            op["user"] = "system"

    def put(self, project: str, zone: str, name: str, labels: dict[str, str]) -> None:
        """A running VM, as if someone had made it."""
        body = {"name": name, "labels": dict(labels), "machineType": f"zones/{zone}/machineTypes/e2-standard-2"}
        with self.lock:
            self.instances[(project, zone, name)] = self._instance(project, zone, body, time.time())

    def populate(self, project: str, zone: str, n: int, labels: dict[str, str], prefix: str = "mt-p") -> None:
        for i in range(n):
            self.put(project, zone, f"{prefix}{i:05d}", labels)

    # -- shapes ----------------------------------------------------------

    def _base(self, project: str, zone: str) -> str:
        return f"{self.host}compute/v1/projects/{project}/zones/{zone}"

    def _instance(self, project: str, zone: str, body: dict, now: float) -> dict:
        base = self._base(project, zone)
        machine_type = body.get("machineType", "").rsplit("/", 1)[-1]
        return {
            **body,
            "kind": "compute#instance",
            "id": str(next(self.ids)),
            "zone": base,
            "machineType": f"{base}/machineTypes/{machine_type}",
            "status": "RUNNING",
            "creationTimestamp": stamp(now),
            "lastStartTimestamp": stamp(now),
            "selfLink": f"{base}/instances/{body['name']}",
            "metadata": {"kind": "compute#metadata", "fingerprint": uuid.uuid4().hex[:12],
                         **body.get("metadata", {})},
        }

    def _operation(self, project: str, zone: str, kind: str, instance: dict, done: bool = False) -> dict:
        name = f"operation-{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}"
        now = time.time()
        op = {
            "kind": "compute#operation", "id": str(next(self.ids)), "name": name, "operationType": kind,
            "zone": self._base(project, zone), "targetLink": instance["selfLink"], "targetId": instance["id"],
            "status": "DONE" if done else "RUNNING", "progress": 100 if done else 0,
            "insertTime": stamp(now), "startTime": stamp(now), "user": "vacagent@example.iam.gserviceaccount.com",
            "selfLink": f"{self._base(project, zone)}/operations/{name}",
            "_done_at": now if done else now + self.op_seconds,
        }
        self.operations[name] = op
        if not done:
            self.pending[name] = op
        return op

    def _settle(self, op: dict) -> dict:
        """An operation as of now: RUNNING until its time, then DONE (and its effect happens)."""
        if op["status"] != "DONE" and time.time() >= op["_done_at"]:
            op.update(status="DONE", progress=100, endTime=stamp(time.time()))
            effect = op.pop("_on_done", None)
            if effect:
                effect(op)
        return {k: v for k, v in op.items() if not k.startswith("_")}

    def _settle_all(self) -> None:
        """Operations finish in time whether or not anyone asks about them (deletions complete)."""
        for name in [n for n, op in self.pending.items() if time.time() >= op["_done_at"]]:
            self._settle(self.pending.pop(name))

    # -- WSGI ------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        self.host = request.host_url
        try:
            endpoint, args = URLS.bind_to_environ(environ).match()
        except Exception:  # noqa: BLE001 - any routing miss is a 404, as GCE answers
            error = ApiError(404, "notFound", f"The requested URL {request.path} was not found")
            return error.response()(environ, start_response)
        try:
            with self.lock:
                self._settle_all()
                self.requests[endpoint] += 1
                delay = 0.0
                if endpoint != "token":
                    self._authorize(request)
                    delay = self._fault(endpoint, request.method)
                if endpoint == "wait":
                    op = self.operations.get(args["op"])
                    deadline = min(op["_done_at"], time.time() + WAIT_SECONDS) if op else 0
            time.sleep(delay)  # a slow answer: the request is in flight meanwhile
            if endpoint == "wait" and op is not None:
                time.sleep(max(0.0, deadline - time.time()))  # not under the lock: others go on meanwhile
            with self.lock:
                body = getattr(self, "h_" + endpoint)(request, **args)
            response = Response(json.dumps(body), content_type="application/json")
        except ApiError as e:
            response = e.response()
        return response(environ, start_response)

    def trust(self, public_key_pem: str) -> None:
        """Accept self-signed JWTs of the service account with this key (as google-auth sends them)."""
        self.public_keys.append(public_key_pem)

    def _authorize(self, request: Request) -> None:
        from google.auth import jwt

        header = request.headers.get("Authorization", "")
        token = header[7:] if header.startswith("Bearer ") else ""
        if token in self.tokens:
            return
        for key in self.public_keys:
            try:
                jwt.decode(token, certs=key, verify=True)
                return
            except ValueError:
                continue
        raise ApiError(401, "authError", "Request is missing required authentication credential.")

    def _fault(self, endpoint: str, method: str) -> float:
        """Raise an injected error, or return how long to hold an injected slow answer."""
        for f in self.faults:
            if f["endpoint"] == endpoint and f["method"] == method and f["count"] > 0:
                f["count"] -= 1
                if f["code"]:
                    raise ApiError(f["code"], f["reason"], f["message"])
                return f["delay"]
        return 0.0

    # -- handlers (called under the lock) --------------------------------

    def h_token(self, request: Request) -> dict:
        token = uuid.uuid4().hex
        self.tokens.add(token)
        return {"access_token": token, "token_type": "Bearer", "expires_in": 3600}

    def h_instances(self, request: Request, project: str, zone: str) -> dict:
        if zone not in ZONES:
            raise ApiError(404, "notFound", f"The resource 'projects/{project}/zones/{zone}' was not found")
        if request.method == "GET":
            items = [i for (p, z, _), i in sorted(self.instances.items())
                     if (p, z) == (project, zone) and matches(i, request.args.get("filter"))]
            return {"kind": "compute#instanceList", "items": items}
        request_id = request.args.get("requestId")
        if request_id and request_id in self.by_request_id:
            return self._settle(self.operations[self.by_request_id[request_id]])
        body = request.get_json(force=True)
        name = body["name"]
        if (project, zone, name) in self.instances:
            raise ApiError(409, "alreadyExists", f"The resource 'projects/{project}/zones/{zone}/instances/{name}' already exists")
        machine_type = body.get("machineType", "").rsplit("/", 1)[-1]
        if machine_type not in MACHINE_TYPES:
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.machineType': '{body.get('machineType')}'. "
                                           f"Machine type with name '{machine_type}' does not exist in zone '{zone}'.")
        image = next((d.get("initializeParams", {}).get("sourceImage") for d in body.get("disks", []) if d.get("boot")), None)
        if image not in IMAGES:
            raise ApiError(404, "notFound", f"The resource '{image}' was not found")
        instance = self._instance(project, zone, body, time.time())
        instance["status"] = "PROVISIONING"
        op = self._operation(project, zone, "insert", instance)
        failure = self.insert_failures.pop(0) if self.insert_failures else None
        if failure is None:
            self.instances[(project, zone, name)] = instance

            def boot(_: dict) -> None:
                if instance["status"] == "PROVISIONING":  # unless it was stopped or preempted meanwhile
                    instance.update(status="RUNNING", lastStartTimestamp=stamp(time.time()))
            op["_on_done"] = boot
        else:
            code, message = failure

            def fail(done: dict) -> None:
                done.update(error={"errors": [{"code": code, "message": message}]},
                            httpErrorStatusCode=503 if "EXHAUSTED" in code else 403,
                            httpErrorMessage="SERVICE UNAVAILABLE" if "EXHAUSTED" in code else "FORBIDDEN")
            op["_on_done"] = fail
        if request_id:
            self.by_request_id[request_id] = op["name"]
        return self._settle(op)

    def h_instance(self, request: Request, project: str, zone: str, name: str) -> dict:
        instance = self.instances.get((project, zone, name))
        if instance is None:
            raise ApiError(404, "notFound", f"The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found")
        if request.method == "GET":
            return instance
        instance["status"] = "STOPPING"
        op = self._operation(project, zone, "delete", instance)
        op["_on_done"] = lambda _: self.instances.pop((project, zone, name), None)
        return self._settle(op)

    def h_aggregated(self, request: Request, project: str) -> dict:
        flat = [(z, i) for (p, z, _), i in sorted(self.instances.items())
                if p == project and matches(i, request.args.get("filter"))]
        start = int(request.args.get("pageToken") or 0)
        size = min(int(request.args.get("maxResults") or 500), 500)
        page = flat[start:start + size]
        items = {f"zones/{z}": {"warning": {"code": "NO_RESULTS_ON_PAGE", "data": [{"key": "scope", "value": f"zones/{z}"}],
                                            "message": f"There are no results for scope 'zones/{z}' on this page."}}
                 for z in ZONES}
        for z, instance in page:
            items[f"zones/{z}"].pop("warning", None)
            items[f"zones/{z}"].setdefault("instances", []).append(instance)
        body = {"kind": "compute#instanceAggregatedList", "id": f"projects/{project}/aggregated/instances",
                "items": items, "selfLink": f"{self.host}compute/v1/projects/{project}/aggregated/instances"}
        if start + size < len(flat):
            body["nextPageToken"] = str(start + size)
        return body

    def _known_operation(self, project: str, zone: str, op: str) -> dict:
        found = self.operations.get(op)
        if found is None or not found["zone"].endswith(f"/projects/{project}/zones/{zone}"):
            raise ApiError(404, "notFound", f"The resource 'projects/{project}/zones/{zone}/operations/{op}' was not found")
        return self._settle(found)

    def h_operation(self, request: Request, project: str, zone: str, op: str) -> dict:
        return self._known_operation(project, zone, op)

    def h_wait(self, request: Request, project: str, zone: str, op: str) -> dict:
        return self._known_operation(project, zone, op)

    def h_operations(self, request: Request, project: str, zone: str) -> dict:
        items = [self._settle(o) for o in list(self.operations.values())
                 if o["zone"].endswith(f"/projects/{project}/zones/{zone}")]
        items = [o for o in items if matches(o, request.args.get("filter"))]
        return {"kind": "compute#operationList", "items": items,
                "selfLink": f"{self._base(project, zone)}/operations"}

    def h_machine_type(self, request: Request, project: str, zone: str, machine_type: str) -> dict:
        if machine_type not in MACHINE_TYPES:
            raise ApiError(404, "notFound", f"The resource 'projects/{project}/zones/{zone}/machineTypes/{machine_type}' was not found")
        cpus, memory = MACHINE_TYPES[machine_type]
        return {"kind": "compute#machineType", "id": str(abs(hash(machine_type)) % 10**12), "name": machine_type,
                "guestCpus": cpus, "memoryMb": memory, "zone": zone, "isSharedCpu": False,
                "selfLink": f"{self._base(project, zone)}/machineTypes/{machine_type}"}


def serve(emulator: GCEEmulator):
    """Serve on 127.0.0.1, a free port, in a daemon thread; returns the werkzeug server."""
    server = make_server("127.0.0.1", 0, emulator, threaded=True)
    emulator.host = f"http://127.0.0.1:{server.server_address[1]}/"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
