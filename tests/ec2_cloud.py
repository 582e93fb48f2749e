"""EC2 for tests and benchmarks: moto's server over real HTTP, with a WSGI layer in front.

One server per test session (`cloud()`), on 127.0.0.1 and a free port;
boto3 (the backend's real client) talks to it as to AWS.  Tests keep apart
by site name, not by resetting moto.

moto differs from AWS in ways the tests must not depend on (it pages by
reservation, not by instance: vacagent launches one instance per
reservation, so both agree; instances run at once).  Where AWS has a
behaviour moto lacks, the layer adds it:

- **ClientToken idempotency**: a RunInstances repeating a token gets the
  first call's reservation back (AWS's documented behaviour), not a
  second instance.
- **injected errors** (`inject`): the next `count` requests of an action
  answer with an EC2 error document and HTTP status, as AWS does for
  InsufficientInstanceCapacity (500), RequestLimitExceeded (503), quotas
  (400)...; or answer late (`delay`), so a test can kill a daemon while
  its request is in flight.
- **state changes moto never makes** (`set_state`): a spot reclaim
  (`Server.SpotInstanceTermination`), an instance that shut itself down
  (`Client.InstanceInitiatedShutdown`), a pending instance; written into
  moto's in-process model, which its DescribeInstances then reports.

moto's tag lookup scans every tag of the region for every instance it
filters (quadratic: a tag-filtered listing of 1,200 instances took minutes);
`_index_tags` gives it a lookup by resource id with the same results.

It also counts requests by action (`requests`), independently of the
backend's own count.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from urllib.parse import parse_qs, urlencode

os.environ.setdefault("MOTO_ENABLE_AMI_VALIDATION", "true")
os.environ.setdefault("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")

ACCOUNT = "123456789012"  # moto's default account
REGION = "eu-west-2"
IMAGE = "ami-03cf127a"  # one of moto's built-in images
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}
PROFILE = "vacagent-test"  # the backends use boto3's chain with this profile, from a credentials file of our own
_REGION_IN_AUTH = re.compile(r"Credential=[^/]+/\d+/([a-z0-9-]+)/ec2/")


def _error_document(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{message}</Message></Error></Errors><RequestID>{uuid.uuid4()}</RequestID></Response>").encode()


class FaultLayer:
    """WSGI middleware in front of moto: injected errors, ClientToken idempotency, request counts."""

    def __init__(self, inner):
        self.inner = inner
        self.lock = threading.Lock()
        self.token_lock = threading.Lock()
        self.faults: list[dict] = []
        self.tokens: dict[tuple[str, str], str] = {}  # (region, ClientToken) -> instance id
        self.requests: Counter = Counter()
        self.hidden: set[str] = set()  # instance ids the next listing (not a look-up by id) leaves out

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] != "POST" or environ.get("PATH_INFO", "/") != "/":
            return self.inner(environ, start_response)
        raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(raw)
        params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        action = params.get("Action", "")
        with self.lock:
            self.requests[action] += 1
            fault = next((f for f in self.faults if f["action"] == action and f["count"] > 0), None)
            if fault:
                fault["count"] -= 1
        if fault and fault.get("delay"):
            time.sleep(fault["delay"])  # a slow answer (the request is in flight meanwhile)
        if fault and fault.get("code"):
            start_response(f"{fault['status']} Injected", [("Content-Type", "text/xml")])
            return [_error_document(fault["code"], fault["message"])]
        if action == "RunInstances" and params.get("ClientToken"):
            return self._idempotent_run(environ, params, start_response)
        by_id = any(k.startswith("Filter.") and v == "instance-id" for k, v in params.items())
        if action == "DescribeInstances" and self.hidden and not by_id:
            return self._hiding(environ, start_response)
        return self.inner(environ, start_response)

    def _hiding(self, environ, start_response):
        """A listing that leaves out the hidden instances, as EC2's eventual consistency may (once)."""
        with self.lock:
            hidden, self.hidden = self.hidden, set()
        status, headers, body = self._call(environ)
        if status.startswith("200"):
            root = ET.fromstring(body)
            ET.register_namespace("", root.tag[1 : root.tag.index("}")])
            reservations = root.find("{*}reservationSet")
            for reservation in list(reservations):
                if {i.text for i in reservation.iter() if i.tag.endswith("}instanceId")} & hidden:
                    reservations.remove(reservation)
            body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def _call(self, environ, body: bytes | None = None) -> tuple[str, list, bytes]:
        if body is not None:
            environ = {**environ, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
        captured = {}

        def start(status, headers, exc_info=None):
            captured.update(status=status, headers=headers)

        chunks = b"".join(self.inner(environ, start))
        return captured["status"], captured["headers"], chunks

    def _idempotent_run(self, environ, params, start_response):
        match = _REGION_IN_AUTH.search(environ.get("HTTP_AUTHORIZATION", ""))
        key = (match.group(1) if match else "", params["ClientToken"])
        with self.token_lock:
            known = self.tokens.get(key)
            if known is None:
                status, headers, body = self._call(environ)
                if status.startswith("200"):
                    self.tokens[key] = ET.fromstring(body).find("{*}instancesSet/{*}item/{*}instanceId").text
            else:
                query = urlencode({"Action": "DescribeInstances", "Version": params.get("Version", "2016-11-15"),
                                   "InstanceId.1": known}).encode()
                status, headers, described = self._call(environ, query)
                body = self._as_run_response(described) if status.startswith("200") else described
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    @staticmethod
    def _as_run_response(described: bytes) -> bytes:
        """A DescribeInstances answer for one instance, as the RunInstances answer that made it."""
        root = ET.fromstring(described)
        ns = root.tag[: root.tag.index("}") + 1]
        ET.register_namespace("", ns[1:-1])
        reservation = root.find("{*}reservationSet/{*}item")
        out = ET.Element(f"{ns}RunInstancesResponse")
        ET.SubElement(out, f"{ns}requestId").text = str(uuid.uuid4())
        out.extend(list(reservation))
        return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(out)


def _index_tags() -> None:
    """moto: a resource's tags by its id, not by matching every tag in the region against it."""
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.models.tags import EC2_PREFIX_TO_RESOURCE
    from moto.ec2.utils import get_prefix

    def get_tags(self):
        if not self.id:
            return []
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
        return [{"resource_id": self.id, "key": key, "value": value, "resource_type": kind}
                for key, value in self.ec2_backend.tags.get(self.id, {}).items()]

    TaggedEC2Resource.get_tags = get_tags


class EC2Cloud:
    def __init__(self):
        from moto.server import ThreadedMotoServer

        _index_tags()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        # ThreadedMotoServer has no hook for middleware: wrap the app its werkzeug server calls.
        self.layer = FaultLayer(self.server._server.app)
        self.server._server.app = self.layer
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    @property
    def requests(self) -> Counter:
        return self.layer.requests

    def options(self, **extra) -> dict:
        """Space options for a backend on this cloud."""
        return {"region": REGION, "endpoint_url": self.endpoint, "profile": PROFILE, **extra}

    def client(self):
        """A plain boto3 client, for tests to act as someone else on the same cloud."""
        import boto3

        return boto3.client("ec2", region_name=REGION, endpoint_url=self.endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def inject(self, action: str, code: str | None, status: int = 400, count: int = 1, message: str = "injected",
               delay: float = 0.0) -> None:
        """The next `count` requests of `action` fail with `code` (None: succeed) after `delay` seconds."""
        with self.layer.lock:
            self.layer.faults.append({"action": action, "code": code, "status": status, "count": count,
                                      "message": message, "delay": delay})

    def clear_faults(self) -> None:
        with self.layer.lock:
            self.layer.faults.clear()
            self.layer.hidden.clear()

    def hide(self, instance_id: str) -> None:
        """The next listing of instances leaves this one out (a look-up by id still finds it)."""
        with self.layer.lock:
            self.layer.hidden.add(instance_id)

    def _instance(self, instance_id: str, region: str = REGION):
        from moto.ec2.models import ec2_backends

        return ec2_backends[ACCOUNT][region].get_instance(instance_id)

    def set_state(self, instance_id: str, state: str, reason: str = "", region: str = REGION) -> None:
        """Put an instance into a native state, with a state reason, as AWS would on its own."""
        from moto.ec2.models.instances import StateReason

        instance = self._instance(instance_id, region)
        instance._state.name, instance._state.code = state, STATE_CODES[state]
        instance.state_reason = StateReason(f"{reason}: set by the test cloud" if reason else "", reason)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        instance._reason = f"Service initiated ({stamp} GMT)" if state in ("terminated", "stopped") else ""

    def populate(self, site: str, space: str, n: int, instance_type: str = "t3.medium") -> None:
        """n instances of a site, one reservation each (as vacagent launches them), straight into moto's
        model: through HTTP, 1,200 launches would cost a minute of a test."""
        from moto import settings
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[ACCOUNT][REGION]
        # The image and type are known good: skip moto's validation scans, which cost more than the launch.
        validation = settings.ENABLE_AMI_VALIDATION, settings.EC2_ENABLE_INSTANCE_TYPE_VALIDATION
        settings.ENABLE_AMI_VALIDATION = settings.EC2_ENABLE_INSTANCE_TYPE_VALIDATION = False
        try:
            self._launch_many(backend, site, space, n, instance_type)
        finally:
            settings.ENABLE_AMI_VALIDATION, settings.EC2_ENABLE_INSTANCE_TYPE_VALIDATION = validation

    @staticmethod
    def _launch_many(backend, site: str, space: str, n: int, instance_type: str) -> None:
        for i in range(n):
            tags = {"vacagent:site": site, "vacagent:space": space, "vacagent:machinetype": "mt",
                    "Name": f"mt-p{i:05d}"}
            backend.run_instances(IMAGE, 1, "", [], instance_type=instance_type, is_instance_type_default=True,
                                  region_name=REGION, tags={"instance": tags}, client_token=f"p{i}")

    def forget(self, site: str) -> None:
        """Drop a site's instances from moto (moto's listing cost grows with every instance it holds)."""
        from moto.ec2.models import ec2_backends

        backend = ec2_backends[ACCOUNT][REGION]
        for rid, reservation in list(backend.reservations.items()):
            if any({"key": "vacagent:site", "value": site}.items() <= t.items() for i in reservation.instances
                   for t in i.get_tags()):
                del backend.reservations[rid]


_CLOUD: EC2Cloud | None = None
_START = threading.Lock()


def credentials_environment() -> dict[str, str]:
    """Environment that gives boto3 (here, or in a daemon we start) the test profile's fake keys."""
    directory = tempfile.mkdtemp(prefix="vacagent-ec2-")
    path = os.path.join(directory, "credentials")
    with open(path, "w") as f:
        f.write(f"[{PROFILE}]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    return {"AWS_SHARED_CREDENTIALS_FILE": path, "AWS_CONFIG_FILE": os.path.join(directory, "config")}


ENVIRONMENT: dict[str, str] = {}


def cloud() -> EC2Cloud:
    """The session's EC2 cloud, started on first use."""
    global _CLOUD
    with _START:
        if _CLOUD is None:
            ENVIRONMENT.update(credentials_environment())
            os.environ.update(ENVIRONMENT)
            _CLOUD = EC2Cloud()
        return _CLOUD
