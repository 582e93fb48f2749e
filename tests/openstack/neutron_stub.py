"""The smallest neutron that nova accepts for servers booted with `networks='none'`.

Nova asks neutron for a server's ports and security groups even when the
server has no network; this answers those lists (empty, plus the project's
`default` security group) and 404s the rest.  Run by controlplane.py in the
services' venv: `python neutron_stub.py PORT`.  Replaces real neutron, which
would add ~1 GB of packages and a minute of migrations for nothing the
tests use.
"""

import json
import sys

from werkzeug.serving import run_simple
from werkzeug.wrappers import Request, Response

DEFAULT_GROUP = {"id": "00000000-0000-4000-8000-000000000001", "name": "default", "security_group_rules": []}
LISTS = {"ports": [], "networks": [], "subnets": [], "floatingips": [], "extensions": [],
         "security-groups": [DEFAULT_GROUP]}


def _json(body, status=200):
    return Response(json.dumps(body), status, content_type="application/json")


@Request.application
def app(request):
    resource = request.path.rstrip("/").split("/")[-1].removesuffix(".json")
    if request.method == "GET" and resource in LISTS:
        items = LISTS[resource]
        if resource == "security-groups" and request.args.get("name") not in (None, "default"):
            items = []
        return _json({resource.replace("-", "_"): items})
    if request.path.rstrip("/") in ("", "/v2.0"):
        return _json({"resources": []})
    return _json({"NeutronError": {"type": "HTTPNotFound", "message": "not in the stub", "detail": ""}}, 404)


if __name__ == "__main__":
    run_simple("127.0.0.1", int(sys.argv[1]), app, threaded=True)
