"""The OpenStack backend: servers in one project and region, through openstacksdk.

Options (the space's `options:`; docs/backends/openstack.md has the reference):
`cloud` (a name in clouds.yaml; `clouds_file` names the file) or `auth` (auth_url plus an application
credential id/secret, or username/password/project), `region`, `network`
(a name, an id, `auto` or `none`), `security_groups`, `key_name`,
`availability_zones` (machines are spread across them), `flavor_names` (the
space's default candidates), `page_size`, `timeout_seconds`.

- List: `GET /servers/detail?tags=<site>,<space>` in pages of `page_size`
  (limit/marker, following Nova's `next` links); metadata is checked on the
  client (Nova refuses a metadata filter).  `nova.to_machine` translates.
- Create: image (`root_image`, a Glance name or id; a URL is refused),
  flavor (`nova.choose_flavor`), base64 user_data, tags and metadata naming
  site, space and machinetype.  A name already created is returned, not
  created again: the backend remembers the names of its last listing and of
  its creates since, and asks Nova by name when it has not listed yet.
- Delete: `DELETE /servers/<id>`; 404 is success.
- `quota()`: the project's `GET /limits`, read by the cycle once per cycle
  when the space sets no `processors_limit` (backends/base.py: QuotaReporting).

The keystone token lives in the SDK's session, in memory: no clouds.yaml
auth cache, no keyring, and nothing here logs a request or a header.
keystoneauth re-authenticates once on a 401; a second 401 is a ConfigError.

Neighbours: `nova` (the pure translation), `base` (the protocol).
"""

from __future__ import annotations

import base64
import re
from typing import Any, Mapping

import keystoneauth1.exceptions
import openstack
import openstack.config
import openstack.connection
import openstack.exceptions

from vacagent import errors
from vacagent.backends import nova
from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.model import Machine, MachineState, Quota

MICROVERSION = "2.52"  # tags at create and in filters (2.52), networks none/auto (2.37), flavor in servers (2.47)
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
NOVA_USER_DATA_BYTES = 65535  # Nova's limit on the base64 text
OPTIONS = frozenset({"cloud", "clouds_file", "auth", "region", "network", "security_groups", "key_name",
                     "availability_zones", "flavor_names", "page_size", "timeout_seconds"})


def connect(options: Mapping[str, Any], space: str):
    """An SDK connection from the space's options (no network traffic yet)."""
    common: dict[str, Any] = dict(compute_api_version=MICROVERSION,
                  api_timeout=float(options.get("timeout_seconds", 60)),
                  # Retries are the cycle's business: a failure here is an input, not a wait.
                  connect_retries=0, status_code_retries=0)
    if options.get("region"):
        common["region_name"] = options["region"]
    if "cloud" in options:
        try:
            # Only the named file, or the SDK's usual places (./, ~/.config/openstack/, /etc/openstack/).
            files = [str(options["clouds_file"])] if options.get("clouds_file") else None
            config = openstack.config.OpenStackConfig(config_files=files, load_envvars=False)
            region = config.get_one(cloud=options["cloud"], **common)
        except openstack.exceptions.ConfigException as e:
            raise errors.ConfigError(f"space {space}: options.cloud: {e}") from e
        return openstack.connection.Connection(config=region)
    if "auth" not in options:
        raise errors.ConfigError(f"space {space}: options: set `cloud` (a name in clouds.yaml) or `auth`")
    auth = dict(options["auth"])
    auth_type = auth.pop("auth_type", "v3applicationcredential" if "application_credential_id" in auth
                         or "application_credential_secret" in auth else "password")
    return openstack.connect(auth=auth, auth_type=auth_type, load_yaml_config=False, load_envvars=False, **common)


class OpenStackBackend:
    def __init__(self, context: BackendContext):
        options = context.options
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            raise errors.ConfigError(f"space {context.space}: options.{unknown[0]}: not an option of the openstack "
                                     f"backend (known: {', '.join(sorted(OPTIONS))})")
        self.context = context
        self.site, self.space = context.site, context.space
        self.page_size = int(options.get("page_size", 500))
        self.network = str(options.get("network", "auto"))
        self.security_groups = list(options.get("security_groups", []))
        self.key_name = options.get("key_name")
        self.zones = list(options.get("availability_zones", []))
        self.flavor_names = list(options.get("flavor_names", []))
        # Nova takes at most 65535 base64 characters of user_data.
        self.max_user_data_bytes = NOVA_USER_DATA_BYTES // 4 * 3
        self.requests_made = 0  # listing pages and mutations (the protocol's count)
        self.lookups_made = 0  # flavors, images, networks, limits, by-name lookups
        self.conn = connect(options, self.space)
        self._flavors: dict[str, Mapping[str, Any]] = {}
        self._images: dict[str, str] = {}
        self._network_ids: dict[str, str] = {}
        self._known: dict[str, Machine] | None = None  # last listing + creates since; None before a listing
        self._zones_of: dict[str, str] = {}  # machine name -> its availability zone

    # -- HTTP --------------------------------------------------------------

    def _call(self, service: str, method: str, url: str, action: str, counted: bool = True, **kw):
        """One request through the SDK's authenticated session; returns (status, body, response)."""
        if counted:
            self.requests_made += 1
        else:
            self.lookups_made += 1
        if service == "compute":
            kw.setdefault("microversion", MICROVERSION)
        try:
            # The first use of a service authenticates and reads the catalog: inside the try.
            response = getattr(self.conn, service).request(url, method, raise_exc=False, **kw)
        except keystoneauth1.exceptions.Unauthorized as e:
            raise errors.ConfigError(f"{action}: the cloud refused the space's credentials: {e}") from e
        except (keystoneauth1.exceptions.ConnectionError, keystoneauth1.exceptions.RequestTimeout) as e:
            raise errors.Temporary(f"{action}: {type(e).__name__}: {e}", delay=30) from e
        except keystoneauth1.exceptions.EndpointNotFound as e:
            raise errors.ConfigError(f"space {self.space}: {action}: no {service} endpoint in the catalog "
                                     f"(region?): {e}") from e
        except keystoneauth1.exceptions.ClientException as e:
            raise errors.Temporary(f"{action}: {type(e).__name__}: {e}", delay=30) from e
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {"message": response.text[:300]}
        return response.status_code, body, response

    def _fail(self, action: str, status: int, body: Any, response) -> errors.VacagentError:
        return nova.error_for(action, status, nova.error_text(body), response.headers.get("Retry-After"))

    # -- listing -----------------------------------------------------------

    def _servers(self, action: str, counted: bool = True, **filters: str) -> list[dict]:
        # Paged by uuid, a key unique across Nova's cells and its build requests: under the default
        # order (created_at, then each cell's own row id) a server that leaves the build requests for
        # its cell between two pages is listed twice and another is skipped (seen on a real Nova).
        params: dict[str, Any] = {"tags": ",".join(nova.tags(self.site, self.space)), "limit": self.page_size,
                                  "sort_key": "uuid", "sort_dir": "asc", **filters}
        servers: dict[str, dict] = {}
        while True:
            status, body, response = self._call("compute", "GET", "/servers/detail", action, counted, params=params)
            if status != 200:
                raise self._fail(action, status, body, response)
            page = body.get("servers", [])
            servers.update((s["id"], s) for s in page)
            if not page or not any(link.get("rel") == "next" for link in body.get("servers_links", [])):
                return list(servers.values())
            params = {**params, "marker": page[-1]["id"]}

    def list_machines(self) -> list[Machine]:
        ours = [s for s in self._servers(f"listing space {self.space}") if nova.is_ours(s, self.site, self.space)]
        machines = [nova.to_machine(s) for s in ours]
        self._known = {m.name: m for m in machines}
        self._zones_of = {s["name"]: s.get("OS-EXT-AZ:availability_zone") or "" for s in ours}
        return machines

    def look_up(self, machines: list[Machine]) -> list[Machine]:
        """GET each server the listing left out (base.LookingUp): 404 is gone; Nova can leave a live
        server out of a tag-filtered listing while it moves between cells and build requests."""
        found = []
        for machine in machines:
            if not machine.backend_id:
                continue
            action = f"looking up machine {machine.name}"
            status, body, response = self._call("compute", "GET", f"/servers/{machine.backend_id}", action)
            if status == 404:
                continue
            if status != 200:
                raise self._fail(action, status, body, response)
            server = body.get("server", {})
            if nova.is_ours(server, self.site, self.space) and server.get("name") == machine.name:
                found.append(nova.to_machine(server))
        if self._known is not None:
            self._known.update((m.name, m) for m in found)
        return found

    # -- catalogue lookups (cached for the backend's life) -----------------

    def _flavor_table(self, refresh: bool = False) -> dict[str, Mapping[str, Any]]:
        if refresh or not self._flavors:
            action = f"space {self.space}: listing flavors"
            status, body, response = self._call("compute", "GET", "/flavors/detail", action, False,
                                                params={"is_public": "None"})
            if status != 200:
                raise self._fail(action, status, body, response)
            self._flavors = {f["name"]: f for f in body.get("flavors", [])}
            self._flavors.update({f["id"]: f for f in body.get("flavors", [])})
        return self._flavors

    def flavor_for(self, request_mt) -> Mapping[str, Any]:
        candidates = nova.flavor_candidates(request_mt, self.flavor_names)
        table = self._flavor_table()
        if any(name not in table for name in candidates):
            table = self._flavor_table(refresh=True)
        return nova.choose_flavor(request_mt, candidates, table)

    def image_id(self, machinetype) -> str:
        image = machinetype.extra.get("root_image") or machinetype.extra.get("image_name")
        if not image:
            raise errors.Permanent(f"machinetype {machinetype.name}: root_image: not set (a Glance image name or id)")
        image = str(image)
        if "://" in image:
            raise errors.Permanent(f"machinetype {machinetype.name}: root_image: {image!r} is a URL; the OpenStack "
                                   f"backend boots only images registered in Glance: upload it and give its name or id")
        if image in self._images:
            return self._images[image]
        action = f"space {self.space}: finding image {image!r}"
        query = {"id": image} if UUID_RE.match(image) else {"name": image}
        status, body, response = self._call("image", "GET", "/images", action, False,
                                            params={**query, "status": "active"})
        if status != 200:
            raise self._fail(action, status, body, response)
        found = body.get("images", [])
        if not found:
            raise errors.Permanent(f"machinetype {machinetype.name}: root_image: no active image {image!r} in Glance")
        if len(found) > 1:
            raise errors.Permanent(f"machinetype {machinetype.name}: root_image: {len(found)} images are named "
                                   f"{image!r}: give its id")
        self._images[image] = found[0]["id"]
        return found[0]["id"]

    def _networks(self) -> str | list[dict[str, str]]:
        if self.network in ("auto", "none"):
            return self.network
        if UUID_RE.match(self.network):
            return [{"uuid": self.network}]
        if self.network not in self._network_ids:
            action = f"space {self.space}: finding network {self.network!r}"
            status, body, response = self._call("network", "GET", "/networks", action, False,
                                                params={"name": self.network})
            if status != 200:
                raise self._fail(action, status, body, response)
            found = body.get("networks", [])
            if len(found) != 1:
                raise errors.Permanent(f"space {self.space}: options.network: {len(found)} networks named "
                                       f"{self.network!r} (need exactly one; or give its id)")
            self._network_ids[self.network] = found[0]["id"]
        return [{"uuid": self._network_ids[self.network]}]

    # -- create and delete -------------------------------------------------

    def _existing(self, name: str) -> Machine | None:
        if self._known is None:
            found = [s for s in self._servers(f"looking up machine {name}", counted=False, name=f"^{re.escape(name)}$")
                     if nova.is_ours(s, self.site, self.space) and s.get("name") == name]
            return nova.to_machine(found[0]) if found else None
        known = self._known.get(name)
        return known if known is not None and known.state is not MachineState.GONE else None

    def create_machine(self, request: CreateRequest) -> Machine:
        action = f"creating machine {request.name}"
        existing = self._existing(request.name)
        if existing is not None:
            return existing
        mt = request.machinetype
        flavor = self.flavor_for(mt)
        server: dict[str, Any] = {
            "name": request.name,
            "imageRef": self.image_id(mt),
            "flavorRef": flavor["id"],
            "networks": self._networks(),
            "user_data": base64.b64encode(request.user_data.encode()).decode(),
            "metadata": nova.metadata(self.site, self.space, mt.name),
            "tags": nova.tags(self.site, self.space, mt.name),
        }
        if self.security_groups:
            server["security_groups"] = [{"name": g} for g in self.security_groups]
        if self.key_name:
            server["key_name"] = self.key_name
        zone = nova.choose_zone(self.zones, self._zones_of.values())
        if zone:
            server["availability_zone"] = zone
        status, body, response = self._call("compute", "POST", "/servers", action, json={"server": server})
        if status in (409, 400) and "already exists" in nova.error_text(body):
            return self._adopt_existing(request, action, nova.error_text(body))
        if status != 202:
            raise self._fail(action, status, body, response)
        machine = Machine(request.name, mt.name, MachineState.STARTING, body["server"]["id"], int(flavor["vcpus"]))
        if self._known is not None:
            self._known[request.name] = machine
        if zone:
            self._zones_of[request.name] = zone
        return machine

    def _adopt_existing(self, request: CreateRequest, action: str, said: str) -> Machine:
        """The cloud says the name is taken: it is this machine only if the server carries its marks."""
        status, body, response = self._call("compute", "GET", "/servers/detail", action, False,
                                            params={"name": f"^{re.escape(request.name)}$"})
        if status != 200:
            raise self._fail(action, status, body, response)
        marks = set(nova.tags(self.site, self.space, request.machinetype.name))
        for server in body.get("servers", []):
            if server.get("name") == request.name and marks <= set(server.get("tags") or ()) \
                    and nova.is_ours(server, self.site, self.space):
                return nova.to_machine(server)
        raise errors.Permanent(f"{action}: {said}; the server of that name is not this machine "
                               f"(it lacks the tags {sorted(marks)})")

    def delete_machine(self, machine: Machine) -> None:
        action = f"deleting machine {machine.name}"
        server_id = machine.backend_id
        if not server_id:
            existing = self._existing(machine.name)
            if existing is None:
                return
            server_id = existing.backend_id
        status, body, response = self._call("compute", "DELETE", f"/servers/{server_id}", action)
        if status == 404 or status in (202, 204):
            return
        raise self._fail(action, status, body, response)

    # -- quota (backends/base.py: QuotaReporting) --------------------------

    def quota(self) -> Quota:
        """What this site may use in the project: its limits less what other servers use."""
        action = f"space {self.space}: reading compute limits"
        status, body, response = self._call("compute", "GET", "/limits", action, False)
        if status != 200:
            raise self._fail(action, status, body, response)
        absolute = body.get("limits", {}).get("absolute", {})
        mine = list((self._known or {}).values())

        def room(limit_key: str, used_key: str, ours: int) -> int | None:
            limit = absolute.get(limit_key, -1)
            if limit is None or limit < 0:
                return None  # -1: unlimited; the configuration alone limits
            others = max(0, int(absolute.get(used_key, 0)) - ours)
            return max(0, int(limit) - others)

        return Quota(processors=room("maxTotalCores", "totalCoresUsed", sum(m.processors for m in mine)),
                     machines=room("maxTotalInstances", "totalInstancesUsed", len(mine)))

    # -- vacagent validate --online ----------------------------------------

    def check(self, machinetypes) -> list[str]:
        """Problems found by asking the cloud: does it answer, do the named images and flavors exist?"""
        problems = []
        try:
            self._flavor_table(refresh=True)
            self._networks()
        except errors.VacagentError as e:
            return [str(e)]
        for mt in machinetypes:
            for check in (self.image_id, self.flavor_for):
                try:
                    check(mt)
                except errors.VacagentError as e:
                    problems.append(f"space {self.space}: {e}")
        return problems
