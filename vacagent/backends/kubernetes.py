"""The Kubernetes backend: a machine is a pod in one namespace of one cluster.

A space's `options` (docs/kubernetes.md): `namespace` (required),
`kubeconfig` (a path; absent: the in-cluster service account), `context`,
`request_timeout_seconds` (default 30), `page_size` (default 500).

- Listing: one label-selected listing of the site's pods in the space per
  cycle, paged with `limit`/`continue` (a 410 on an expired continue token
  restarts it once).  The Secrets are listed too, only when a pending pod's
  Secret was neither created nor seen by this process (after a restart):
  a pod whose Secret is missing never starts, and is reported failed.
- Create: the pod first, then its Secret owned by the pod, so the garbage
  collector deletes the Secret with the pod.  `409 AlreadyExists` with this
  machine's labels is success (same name, same intent).  A Secret that
  cannot be made takes its pod back.
- Delete: the pod (its Secret follows); 404 is success.

Every request goes through the official `kubernetes` client; responses are
read as plain JSON (`_preload_content=False`): the client's model classes
cost more than the rest of a cycle at 5,000 pods.  Pure neighbours:
`kubernetes_pods` (manifests), `kubernetes_status` (pod -> Machine),
`kubernetes_errors` (refusal -> typed error).
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import kubernetes.client
import kubernetes.config
import urllib3

from vacagent.backends import kubernetes_pods as pods
from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.backends.kubernetes_errors import classify
from vacagent.backends.kubernetes_status import to_machine
from vacagent.errors import ConfigError, Permanent, Temporary
from vacagent.model import NAME_RE, Machine

OPTIONS = {"namespace", "kubeconfig", "context", "request_timeout_seconds", "page_size"}
MAX_SECRET_BYTES = 1 << 20  # the API server's limit on one Secret


def _options(context: BackendContext) -> dict[str, Any]:
    """The space's options, checked: a bad one names the space and the key."""
    options = dict(context.options)

    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(f"space {context.space}: options.{key}: {reason}")

    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise fail(unknown[0], f"unknown option of the kubernetes backend (known: {', '.join(sorted(OPTIONS))})")
    namespace = options.get("namespace")
    if not isinstance(namespace, str) or not NAME_RE.match(namespace):
        raise fail("namespace", "required: the namespace to create pods in (a DNS label, e.g. vacagent)")
    for key in ("kubeconfig", "context"):
        if key in options and (not isinstance(options[key], str) or not options[key]):
            raise fail(key, "must be a non-empty string")
    if "kubeconfig" in options and not os.access(os.path.expanduser(options["kubeconfig"]), os.R_OK):
        raise fail("kubeconfig", f"{options['kubeconfig']}: cannot read")
    timeout = options.setdefault("request_timeout_seconds", 30)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise fail("request_timeout_seconds", f"{timeout!r}: must be a number of seconds above 0")
    page_size = options.setdefault("page_size", 500)
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 10_000:
        raise fail("page_size", f"{page_size!r}: must be an integer from 1 to 10000")
    return options


def _client(context: BackendContext, options: dict[str, Any]) -> kubernetes.client.CoreV1Api:
    configuration = kubernetes.client.Configuration()
    try:
        if "kubeconfig" in options:
            kubernetes.config.load_kube_config(
                config_file=os.path.expanduser(options["kubeconfig"]), context=options.get("context"),
                client_configuration=configuration, persist_config=False,
            )
        else:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as e:
        where = options.get("kubeconfig", "absent, and no in-cluster service account either")
        raise ConfigError(f"space {context.space}: options.kubeconfig: {where}: {e}") from e
    return kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))


class KubernetesBackend:
    max_user_data_bytes = MAX_SECRET_BYTES - 4096  # room for the token and the Secret's metadata

    def __init__(self, context: BackendContext):
        self.context = context
        options = _options(context)
        self.namespace: str = options["namespace"]
        self.timeout = float(options["request_timeout_seconds"])
        self.page_size: int = options["page_size"]
        self.api = _client(context, options)
        self.selector = pods.selector(context.site, context.space)
        self.where = f"space {context.space} (namespace {self.namespace})"
        self.requests_made = 0
        self._secret_seen: set[str] = set()  # pods whose Secret this process made or listed

    # -- requests --------------------------------------------------------

    def _call(self, doing: str, method: Callable[..., Any], *args: Any, tolerate: tuple[int, ...] = (),
              **kwargs: Any) -> Any:
        """One API request, its JSON answer parsed; None for a status in `tolerate`; other
        refusals become typed errors."""
        self.requests_made += 1
        try:
            response = method(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            data = response.data
        except kubernetes.client.ApiException as e:
            if e.status in tolerate:
                return None
            headers = e.headers or {}
            raise classify(e.status or 0, e.body, headers.get("Retry-After"), doing, self.where) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise Temporary(f"{doing}: {self.where}: no answer from the API server: {e}") from None
        except ValueError as e:  # the client checks a request against the API's schema before sending it
            raise Permanent(f"{doing}: {self.where}: not a valid request: {' '.join(str(e).split())[:300]}") from None
        try:
            return json.loads(data or b"{}")
        except ValueError as e:
            raise Temporary(f"{doing}: {self.where}: the API server's answer is not JSON: {e}") from None

    def _list_all(self, kind: str, method: Callable[..., Any]) -> list[dict[str, Any]]:
        """Every item of one label-selected listing, page by page; a 410 (continue token
        expired) restarts it once."""
        for last_attempt in (False, True):
            items: list[dict[str, Any]] = []
            token = None
            while True:
                page = self._call(f"listing {kind}", method, self.namespace, label_selector=self.selector,
                                  limit=self.page_size, _continue=token, tolerate=() if last_attempt else (410,))
                if page is None:
                    break  # expired: start again from the first page
                items.extend(page.get("items") or ())
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    return items
        raise AssertionError("unreachable: the last attempt raises on 410")

    # -- the protocol ----------------------------------------------------

    def list_machines(self) -> list[Machine]:
        listed = self._list_all("pods", self.api.list_namespaced_pod)
        names = {p["metadata"]["name"] for p in listed}
        self._secret_seen &= names
        unsure = {p["metadata"]["name"] for p in listed if (p.get("status") or {}).get("phase") == "Pending"
                  and not p["metadata"].get("deletionTimestamp")} - self._secret_seen
        if unsure:
            secrets = {s["metadata"]["name"] for s in self._list_all("secrets", self.api.list_namespaced_secret)}
            self._secret_seen |= secrets & names
            unsure -= secrets
        return [to_machine(p, p["metadata"]["name"] in unsure) for p in listed]

    def _existing(self, request: CreateRequest, doing: str) -> dict[str, Any]:
        """The pod of this name that a 409 says exists: ours only if it carries this machine's labels."""
        pod = self._call(doing, self.api.read_namespaced_pod, request.name, self.namespace)
        labels = pod["metadata"].get("labels") or {}
        wanted = pods.labels(request, self.context.site, self.context.space)
        if any(labels.get(k) != wanted[k] for k in (pods.SITE, pods.SPACE, pods.MACHINETYPE)):
            raise Permanent(f"{doing}: {self.where}: 409 AlreadyExists: a pod of that name exists "
                            "and is not this machine's")
        return pod

    def create_machine(self, request: CreateRequest) -> Machine:
        doing = f"creating pod {request.name}"
        manifest = pods.pod(request, self.context.site, self.context.space)
        pod = self._call(doing, self.api.create_namespaced_pod, self.namespace, manifest,
                         field_validation="Strict", tolerate=(409,))
        if pod is None:
            pod = self._existing(request, doing)
        if request.name not in self._secret_seen:
            try:
                self._create_secret(request, pod["metadata"]["uid"])
            except Exception:
                self._take_back(request.name)
                raise
            self._secret_seen.add(request.name)
        return to_machine(pod)

    def _create_secret(self, request: CreateRequest, uid: str) -> None:
        doing = f"creating secret {request.name}"
        made = self._call(doing, self.api.create_namespaced_secret, self.namespace,
                          pods.secret(request, self.context.site, self.context.space, uid), tolerate=(409,))
        if made is None:  # made before a crash, or another pod's (then it is not ours to use)
            metadata = self._call(doing, self.api.read_namespaced_secret, request.name, self.namespace)["metadata"]
            if not any(o.get("uid") == uid for o in metadata.get("ownerReferences") or ()):
                raise Permanent(f"{doing}: {self.where}: 409 AlreadyExists: a secret of that name exists "
                                "and is not this pod's")

    def _take_back(self, name: str) -> None:
        """A pod whose Secret could not be made is deleted at once (else a later listing reports it failed)."""
        try:
            self._call(f"deleting pod {name} (its secret could not be made)", self.api.delete_namespaced_pod,
                       name, self.namespace, tolerate=(404,))
        except Exception:  # noqa: BLE001 - the listing reports the pod as failed to start
            pass

    def delete_machine(self, machine: Machine) -> None:
        self._call(f"deleting pod {machine.name}", self.api.delete_namespaced_pod, machine.name, self.namespace,
                   tolerate=(404,))
