"""Backend name -> module, imported only when a space uses it.

A cloud SDK is imported by its backend module alone, so a site that runs
only local machines never needs boto3 or openstacksdk installed.
"""

from __future__ import annotations

import importlib

from vacagent.backends.base import Backend, BackendContext
from vacagent.errors import ConfigError

BACKENDS: dict[str, tuple[str, str, str]] = {
    # name: (module, class, pip extra that provides its SDK)
    "local": ("vacagent.backends.local", "LocalBackend", ""),
    "fake": ("vacagent.backends.fake", "FakeBackend", ""),
    "kubernetes": ("vacagent.backends.kubernetes", "KubernetesBackend", "kubernetes"),
    "ec2": ("vacagent.backends.ec2", "EC2Backend", "ec2"),
    "gce": ("vacagent.backends.gce", "GCEBackend", "gce"),

    "openstack": ("vacagent.backends.openstack", "OpenStackBackend", "openstack"),
}

# Backends whose machines run on other hosts: they read their features and report through the
# endpoint's URLs, never the daemon's local paths, so their spaces need an `endpoint:`.
REMOTE = frozenset({"kubernetes", "ec2", "gce", "openstack"})

# Backends with a `quota()` (base.QuotaReporting): their spaces may leave processors_limit unset.
REPORTS_QUOTA = frozenset({"openstack"})


def create(name: str, context: BackendContext) -> Backend:
    try:
        module_name, class_name, extra = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"space {context.space}: backend {name!r} is unknown (known: {known})") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        hint = f" (pip install 'vacagent[{extra}]')" if extra else ""
        raise ConfigError(f"space {context.space}: backend {name!r} cannot be loaded: {e}{hint}") from e
    return getattr(module, class_name)(context)
