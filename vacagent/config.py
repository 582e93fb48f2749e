"""Site configuration: YAML files -> frozen `Settings`, validated once.

Read order: the main file (`/etc/vacagent/vacagent.yaml`, or `--config FILE`),
then `conf.d/*.yaml` beside it in name order.  Top-level keys of a later file
override earlier ones; each space must be defined in exactly one file.
Relative paths (state_dir, pipe sources, inline user_data) are resolved
against the directory of the file that names them.

Every error names the file, the key and the reason.  Reference:
docs/configuration.md; a commented example: etc/vacagent.example.yaml.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from vacagent.apel import ApelSettings

from vacagent.backends.registry import REMOTE, REPORTS_QUOTA
from vacagent.errors import ConfigError
from vacagent.model import SpaceLimits
from vacagent.schema import CONFIG_SCHEMA, PATH_OPTIONS, violations

DEFAULT_CONFIG = Path("/etc/vacagent/vacagent.yaml")
DEFAULT_STATE_DIR = Path("/var/lib/vacagent")


@dataclass(frozen=True)
class PipeSettings:
    source: str  # absolute path or https URL
    prefix: str
    target_share: float | None = None  # split among the pipe's machinetypes by their own shares
    overrides: Mapping[str, Any] = field(default_factory=dict)  # for every machinetype of the pipe
    suffix_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    config_file: str = ""  # the file that named this pipe, for messages and relative paths


@dataclass(frozen=True)
class SpaceSettings:
    name: str
    backend: str
    options: Mapping[str, Any]
    limits: SpaceLimits
    pipes: tuple[PipeSettings, ...] = ()
    machinetypes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # inline definitions
    intent_grace_seconds: int = 300  # a created machine must be listed within this time
    apel: ApelSettings | None = None  # write APEL accounting records (no section: none)
    config_file: str = ""
    # processors_limit not set, for a backend that reads its cloud's quota (registry.REPORTS_QUOTA):
    # limits.processors_limit is then 0 here, and each cycle plans within the quota read.
    quota_from_cloud: bool = False


@dataclass(frozen=True)
class EndpointSettings:
    """The HTTP endpoint machines read their features from and report to."""

    listen: str = "127.0.0.1"  # address to bind; 0.0.0.0 or :: for every interface
    port: int = 8450  # 0: any free port (tests)
    public_url: str | None = None  # base URL machines use; default scheme://listen:port
    tls_cert: str | None = None  # PEM certificate chain; with tls_key, the endpoint speaks HTTPS
    tls_key: str | None = None
    max_message_bytes: int = 4096  # cap on a PUT of shutdown_message or the heartbeat file
    max_file_bytes: int = 1 << 20  # cap on a PUT of any other joboutputs file (logs)
    max_joboutputs_bytes: int = 16 << 20  # cap on all of one machine's joboutputs together
    max_joboutputs_files: int = 64  # cap on the number of files in one machine's joboutputs
    max_machine_requests: int = 64  # requests for one machine handled at once; more get 429
    max_connections: int = 4096  # open connections in all; lowered to the file limit minus a reserve
    max_connections_per_address: int = 64  # from one source address (a NAT'd site may need more)
    idle_timeout_seconds: float = 15.0  # a connection with no complete request for this long is closed
    body_timeout_seconds: float = 30.0  # a request body must arrive within this time, or 408
    config_file: str = ""

    def base_url(self, port: int | None = None) -> str | None:
        """The URL machines are given; `port` is the one actually bound (None: as configured)."""
        if self.public_url:
            return self.public_url
        port = self.port if port is None else port
        if port == 0:
            return None  # known only once the server has bound a port
        host = self.listen if self.listen not in ("0.0.0.0", "::") else socket.getfqdn()
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls_cert else 'http'}://{host}:{port}"


@dataclass(frozen=True)
class Settings:
    site: str
    state_dir: Path
    spaces: Mapping[str, SpaceSettings]
    cycle_seconds: float = 60.0
    finished_retention_days: float = 7.0
    decisions_max_bytes: int = 10_000_000
    log_level: str = "info"
    log_format: str = "kv"  # kv: key=value lines; json: one JSON object a line (vacagent.logs)
    files: tuple[str, ...] = ()
    endpoint: EndpointSettings | None = None  # None: no endpoint; machines get local paths
    # Several instances on one state directory (docs/operations.md): a space's lease not
    # renewed for lease_seconds may be claimed by another instance.  Default 3 x cycle_seconds.
    lease_seconds: float = 180.0
    instance_name: str | None = None  # host-local; default: host name + a random id per start


def fingerprint(space: SpaceSettings) -> str:
    """A digest of what a space is (backend, options, limits, machinetypes), without the
    file it came from: instances sharing a state directory must agree on it."""
    pipes = [(p.source, p.prefix, p.target_share, p.overrides, p.suffix_overrides) for p in space.pipes]
    what = [space.backend, space.options, asdict(space.limits), pipes, space.machinetypes,
            space.intent_grace_seconds]
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}:{where}: not valid YAML: {getattr(e, 'problem', e)}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: (top level): must be a mapping of keys, not {type(data).__name__}")
    problems = violations(data, CONFIG_SCHEMA)
    if problems:
        raise ConfigError("\n".join(f"{path}: {key}: {reason}" for key, reason in problems))
    return data


def config_files(main: Path) -> list[Path]:
    conf_d = main.parent / "conf.d"
    extra = sorted(conf_d.glob("*.yaml")) if conf_d.is_dir() else []
    return [main, *extra]


def resolve_location(location: str, base: Path) -> str:
    """A URL stays as it is; a relative path is taken relative to `base`."""
    if "://" in location:
        return location
    path = Path(location).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_paths(definition: Mapping[str, Any], base: Path) -> dict[str, Any]:
    out = dict(definition)
    for key, value in definition.items():
        if isinstance(value, str) and (key == "user_data" or key.startswith("user_data_file_")):
            out[key] = resolve_location(value, base)
    return out


def _apel(raw: Mapping[str, Any], base: Path) -> ApelSettings:
    directories = {key: str(base / raw[key]) for key in ("outgoing", "archive") if key in raw}
    return ApelSettings(gocdb_sitename=raw.get("gocdb_sitename"), **directories)


def _space(name: str, raw: Mapping[str, Any], path: Path) -> SpaceSettings:
    base = path.parent
    limit = raw.get("processors_limit")
    quota_from_cloud = limit is None and raw["backend"] in REPORTS_QUOTA
    if quota_from_cloud:
        limit = 0
    if limit is None:
        if raw["backend"] != "local":
            raise ConfigError(f"{path}: spaces.{name}.processors_limit: required for backend {raw['backend']!r}")
        limit = os.cpu_count() or 1
    limits = SpaceLimits(
        processors_limit=limit,
        max_machines=raw.get("max_machines"),
        creation_budget_processors=raw.get("creation_budget_processors"),
        max_starting_seconds=raw.get("max_starting_seconds", 3600),
        shutdown_grace_seconds=raw.get("shutdown_grace_seconds", 60),
        delete_retry_seconds=raw.get("delete_retry_seconds", 60),
    )
    pipes = []
    prefixes = set()
    for i, pipe in enumerate(raw.get("pipes", [])):
        if pipe["prefix"] in prefixes:
            raise ConfigError(f"{path}: spaces.{name}.pipes.{i}.prefix: {pipe['prefix']!r} used twice in this space")
        prefixes.add(pipe["prefix"])
        pipes.append(
            PipeSettings(
                source=resolve_location(pipe["source"], base),
                prefix=pipe["prefix"],
                target_share=pipe.get("target_share"),
                overrides=_resolve_paths(pipe.get("overrides", {}), base),
                suffix_overrides={
                    suffix: _resolve_paths(o, base) for suffix, o in pipe.get("suffix_overrides", {}).items()
                },
                config_file=str(path),
            )
        )
    inline = {mt: _resolve_paths(d, base) for mt, d in raw.get("machinetypes", {}).items()}
    if not pipes and not inline:
        raise ConfigError(f"{path}: spaces.{name}: no pipes and no machinetypes: nothing to run")
    return SpaceSettings(
        name=name,
        backend=raw["backend"],
        options={k: resolve_location(v, base) if k in PATH_OPTIONS and isinstance(v, str) else v
                 for k, v in raw.get("options", {}).items()},
        limits=limits,
        pipes=tuple(pipes),
        machinetypes=inline,
        intent_grace_seconds=raw.get("intent_grace_seconds", 300),
        apel=_apel(raw["apel"], base) if "apel" in raw else None,
        config_file=str(path),
        quota_from_cloud=quota_from_cloud,
    )


_ENDPOINT_LIMITS = ("max_joboutputs_files", "max_machine_requests", "max_connections",
                    "max_connections_per_address", "idle_timeout_seconds", "body_timeout_seconds")


def _endpoint(raw: Mapping[str, Any], path: Path) -> EndpointSettings:
    tls = {}
    for key, other in (("tls_cert", "tls_key"), ("tls_key", "tls_cert")):
        if key in raw and other not in raw:
            raise ConfigError(f"{path}: endpoint.{other}: required with endpoint.{key} (HTTPS needs both)")
        if key in raw:
            location = resolve_location(raw[key], path.parent)
            if not os.access(location, os.R_OK):
                raise ConfigError(f"{path}: endpoint.{key}: {location}: cannot read")
            tls[key] = location
    settings = EndpointSettings(
        listen=raw.get("listen", EndpointSettings.listen),
        port=raw.get("port", EndpointSettings.port),
        public_url=raw["public_url"].rstrip("/") if "public_url" in raw else None,
        max_message_bytes=raw.get("max_message_bytes", EndpointSettings.max_message_bytes),
        max_file_bytes=raw.get("max_file_bytes", EndpointSettings.max_file_bytes),
        max_joboutputs_bytes=raw.get("max_joboutputs_bytes", EndpointSettings.max_joboutputs_bytes),
        **{key: raw[key] for key in _ENDPOINT_LIMITS if key in raw},
        config_file=str(path),
        **tls,
    )
    if settings.max_file_bytes > settings.max_joboutputs_bytes:
        raise ConfigError(
            f"{path}: endpoint.max_file_bytes: {settings.max_file_bytes} is more than "
            f"endpoint.max_joboutputs_bytes {settings.max_joboutputs_bytes}"
        )
    return settings


def load(main: Path | str | None = None) -> Settings:
    """Load and validate the whole configuration, or raise ConfigError naming every problem found."""
    main = Path(main) if main is not None else Path(os.environ.get("VACAGENT_CONFIG", DEFAULT_CONFIG))
    if not main.exists():
        raise ConfigError(
            f"{main}: no such configuration file (give one with --config FILE; "
            "etc/vacagent.example.yaml in the source tree is a commented example)"
        )
    merged: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    spaces: dict[str, SpaceSettings] = {}
    problems: list[str] = []
    files = config_files(main)
    for path in files:
        try:
            data = _read_yaml(path)
        except ConfigError as e:
            problems.append(str(e))
            continue
        for key, value in data.items():
            if key == "spaces":
                continue
            merged[key] = value
            origin[key] = path
        for name, raw in (data.get("spaces") or {}).items():
            if name in spaces:
                problems.append(f"{path}: spaces.{name}: already defined in {spaces[name].config_file}")
                continue
            try:
                spaces[name] = _space(name, raw, path)
            except ConfigError as e:
                problems.append(str(e))
    if "site" not in merged:
        problems.append(f"{main}: site: required (a short name for this deployment, e.g. lab.example.org)")
    if not spaces and not problems:
        problems.append(f"{main}: spaces: no spaces defined: nothing to run")
    endpoint = None
    if "endpoint" in merged:
        try:
            endpoint = _endpoint(merged["endpoint"], origin["endpoint"])
        except ConfigError as e:
            problems.append(str(e))
    else:
        problems += [f"{s.config_file}: spaces.{s.name}.backend: {s.backend!r} runs machines on other hosts, "
                     f"which read their features and report through the endpoint: add an endpoint: section "
                     f"(listen, url; see etc/vacagent.example.yaml)" for s in spaces.values() if s.backend in REMOTE]
    if problems:
        raise ConfigError("\n".join(problems))
    cycle_seconds = float(merged.get("cycle_seconds", 60))
    lease_seconds = float(merged.get("lease_seconds", 3 * cycle_seconds))
    if lease_seconds < 2 * cycle_seconds:
        where = origin.get("lease_seconds", origin.get("cycle_seconds", main))
        raise ConfigError(
            f"{where}: lease_seconds: {lease_seconds:g} is less than twice cycle_seconds ({cycle_seconds:g}): "
            "a holder renews its leases every half cycle and must be able to miss one renewal"
        )
    state_dir = merged.get("state_dir")
    return Settings(
        site=merged["site"],
        state_dir=Path(resolve_location(state_dir, origin["state_dir"].parent)) if state_dir else DEFAULT_STATE_DIR,
        spaces=spaces,
        cycle_seconds=cycle_seconds,
        lease_seconds=lease_seconds,
        instance_name=merged.get("instance_name"),
        finished_retention_days=float(merged.get("finished_retention_days", 7)),
        decisions_max_bytes=int(merged.get("decisions_max_bytes", 10_000_000)),
        log_level=merged.get("log_level", "info"),
        log_format=merged.get("log_format", "kv"),
        files=tuple(str(p) for p in files),
        endpoint=endpoint,
    )


# Settings a running daemon cannot take on: its machines and records live
# under the old ones (state_dir, site), or were told where to report (the
# endpoint's address: moving it would strand every running machine's heartbeat).
RESTART_ONLY = ("site", "state_dir", "instance_name")  # and whether there is an endpoint at all
ENDPOINT_RESTART_ONLY = ("listen", "port", "public_url", "tls_cert", "tls_key")


def restart_needed(running: Settings, new: Settings) -> list[str]:
    """The keys that differ between `running` and `new` and need a restart to change."""
    keys = [k for k in RESTART_ONLY if getattr(running, k) != getattr(new, k)]
    if (running.endpoint is None) != (new.endpoint is None):
        keys.append("endpoint")
    elif running.endpoint is not None and new.endpoint is not None:
        keys += [f"endpoint.{k}" for k in ENDPOINT_RESTART_ONLY
                 if getattr(running.endpoint, k) != getattr(new.endpoint, k)]
    return keys
