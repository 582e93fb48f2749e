"""JSON Schemas for the site configuration and for machinetype definitions,
and one helper that turns a schema violation into an operator's message.

The schemas check types and ranges; `config` and `definitions` add the few
checks a schema cannot express (paths, cross-field rules).  Reference:
docs/configuration.md and docs/definitions.md.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping

import jsonschema

SAFE_FILE = r"^(?!\.{1,2}$)[A-Za-z0-9._-]{1,64}$"
NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"

_seconds = {"type": "integer", "minimum": 0}
_positive = {"type": "integer", "minimum": 1}

# Keys of a machinetype the decision core interprets, with their types.
MACHINETYPE_PROPERTIES: dict[str, Any] = {
    "suffix": {"type": "string", "pattern": NAME},
    "processors": _positive,
    "min_processors": _positive,
    "max_processors": _positive,
    "target_share": {"type": "number", "minimum": 0},
    "backoff_seconds": _seconds,
    "max_backoff_seconds": _seconds,
    "fizzle_seconds": _seconds,
    "max_wallclock_seconds": _positive,
    "min_wallclock_seconds": _seconds,
    "heartbeat_file": {"type": "string", "pattern": SAFE_FILE},
    "heartbeat_seconds": _seconds,
    "max_starting_processors": _positive,
    "processors_limit": _positive,
    "mb_per_processor": _positive,
    "hs06_per_processor": {"type": "number", "exclusiveMinimum": 0},
    "disk_gb_per_processor": {"type": "number", "minimum": 0},
    "user_data": {"type": "string", "minLength": 1},
    "root_image": {"type": "string", "minLength": 1},
    "machine_model": {"type": "string"},
    "accounting_fqan": {"type": "string"},
    # Pods (docs/kubernetes.md): root_image is the container image.
    "container_command": {"oneOf": [{"type": "string", "minLength": 1},
                                    {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
    "pod_overrides": {"type": "object", "propertyNames": {"pattern": r"^[a-z][A-Za-z0-9]*$"}},
    "container_overrides": {"type": "object", "propertyNames": {"pattern": r"^[a-z][A-Za-z0-9]*$"}},
    "kueue_queue_name": {"type": "string", "maxLength": 63,
                         "pattern": r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"},
}

# Keys of the overrides that vacagent sets itself, and why (a definition that sets one is refused).
OWNED_OVERRIDES: dict[str, dict[str, str]] = {
    "pod_overrides": {
        "containers": "vacagent makes the container (root_image, container_command; container_overrides for the rest)",
        "restartPolicy": "always Never: a machine that ends is not restarted",
    },
    "container_overrides": {
        "name": "vacagent names the container",
        "image": "set by root_image",
        "command": "set by container_command",
    },
}

# Keys a machinetype must have in a space of this backend, and what they are.
BACKEND_REQUIRED: dict[str, dict[str, str]] = {
    "kubernetes": {"root_image": "the container image of the pod"},
}

# Keys whose mappings merge (site over pipe) instead of being replaced.
MERGED_KEYS = frozenset(OWNED_OVERRIDES)

# Keys we accept without interpreting them: the rest of the Vac/Vcycle
# vocabulary, and the keys cloud backends read.  Anything else is warned about.
PASSTHROUGH_KEYS = frozenset(
    {
        "cache_seconds", "cernvm_signing_dn", "image_signing_dn", "root_public_key",
        "cvmfs_repositories", "legacy_proxy", "user_data_proxy", "user_data_proxy_cert",
        "user_data_proxy_key", "log_machineoutputs", "log_joboutputs", "joboutputs_days",
        "remote_joboutputs_url", "remote_joboutputs_cert", "remote_joboutputs_key",
        "x509dn", "tmp_binding", "root_device", "scratch_device", "https_port",
        "flavor_name", "flavor_names", "network_uuid", "image_name", "container_image",
        "instance_type", "machine_type", "zone", "network", "subnet", "security_groups",
        "key_name", "service_account", "labels", "node_selector", "environment",
        "description", "comment",
    }
)

# Backend options that name files: relative to the configuration file that names them.
PATH_OPTIONS = frozenset({"kubeconfig"})

PATH_KEYS = frozenset(
    {"user_data", "root_image", "root_public_key", "user_data_proxy_cert", "user_data_proxy_key",
     "remote_joboutputs_cert", "remote_joboutputs_key"}
)

MACHINETYPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": MACHINETYPE_PROPERTIES,
    "patternProperties": {
        r"^user_data_option_[A-Za-z0-9_]+$": {"type": ["string", "number", "boolean"]},
        r"^user_data_file_[A-Za-z0-9_]+$": {"type": "string", "minLength": 1},
    },
}

PIPE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["machinetypes"],
    "properties": {
        "cache_seconds": _seconds,
        "machinetypes": {"type": "array", "items": {"type": "object"}},
    },
}

_overrides = {"type": "object"}

SPACE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["backend"],
    "additionalProperties": False,
    "properties": {
        "backend": {"type": "string", "pattern": r"^[a-z0-9_]+$"},
        "options": {"type": "object"},
        "processors_limit": _positive,
        "max_machines": _positive,
        "creation_budget_processors": _positive,
        "max_starting_seconds": _positive,
        "shutdown_grace_seconds": _seconds,
        "delete_retry_seconds": _positive,
        "intent_grace_seconds": _positive,
        "apel": {  # APEL accounting records (vacagent.apel, docs/accounting.md)
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "gocdb_sitename": {"type": "string", "minLength": 1},
                "outgoing": {"type": "string", "minLength": 1},
                "archive": {"type": "string", "minLength": 1},
            },
        },
        "pipes": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["source", "prefix"],
                "additionalProperties": False,
                "properties": {
                    "source": {"type": "string", "minLength": 1},
                    "prefix": {"type": "string", "pattern": NAME},
                    "target_share": {"type": "number", "minimum": 0},
                    "overrides": _overrides,
                    "suffix_overrides": {"type": "object", "additionalProperties": _overrides},
                },
            },
        },
        "machinetypes": {
            "type": "object",
            "propertyNames": {"pattern": NAME},
            "additionalProperties": {"type": "object"},
        },
    },
}

# The HTTP endpoint machines report to (vacagent.endpoint); no section, no endpoint.
ENDPOINT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "listen": {"type": "string", "minLength": 1},
        "port": {"type": "integer", "minimum": 0, "maximum": 65535},
        "public_url": {"type": "string", "pattern": r"^https?://[^/?#\s]+(/[^?#\s]*)?$"},
        "tls_cert": {"type": "string", "minLength": 1},
        "tls_key": {"type": "string", "minLength": 1},
        "max_message_bytes": _positive,
        "max_file_bytes": _positive,
        "max_joboutputs_bytes": _positive,
    },
}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "site": {"type": "string", "pattern": r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$"},
        "state_dir": {"type": "string", "minLength": 1},
        "cycle_seconds": {"type": "number", "exclusiveMinimum": 0},
        "finished_retention_days": {"type": "number", "minimum": 0},
        "decisions_max_bytes": _positive,
        "log_level": {"enum": ["debug", "info", "warning", "error"]},
        "log_format": {"enum": ["kv", "json"]},
        "endpoint": ENDPOINT_SCHEMA,
        "spaces": {
            "type": "object",
            "propertyNames": {"pattern": NAME},
            "additionalProperties": SPACE_SCHEMA,
        },
    },
}


def merge_documents(base: Mapping[str, Any], override: Mapping[str, Any],
                    extend_lists: bool = False) -> dict[str, Any]:
    """`override` merged into `base` (JSON documents): mappings merge key by key and `override`
    wins; a list in `override` replaces base's, or (`extend_lists`) is added after base's items."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_documents(out[key], value, extend_lists)
        elif extend_lists and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = [*out[key], *value]
        else:
            out[key] = value
    return out


def _where(path: Iterator[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def violations(instance: Any, schema: dict[str, Any]) -> list[tuple[str, str]]:
    """All schema violations as (key path, reason), deepest first, in a stable order."""
    validator = jsonschema.Draft202012Validator(schema)
    found = []
    for error in validator.iter_errors(instance):
        # Prefer the most specific message of a oneOf/anyOf.
        error = jsonschema.exceptions.best_match([error]) or error
        found.append((_where(error.absolute_path), error.message))
    return sorted(set(found))
