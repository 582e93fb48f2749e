"""Machinetype definitions: vacuum pipes and inline definitions -> `MachineType`.

A vacuum pipe is the JSON document a project publishes,
`{"cache_seconds": N, "machinetypes": [{"suffix": ..., ...}]}`, read as-is
from a local file or an https URL (cached, see `fetch`).  Each entry becomes
the machinetype `PREFIX-SUFFIX`.  The site's overrides win over the pipe:
first the pipe's `overrides`, then its `suffix_overrides[SUFFIX]`; a pipe
`target_share` is split among the pipe's machinetypes in proportion to their
own shares (as Vcycle does).

One bad entry never stops the others: `resolve_space` returns the good
machinetypes, an error per bad one (naming file, machinetype, key and
reason) and warnings (unknown keys, a stale cached pipe).  Reference:
docs/definitions.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urljoin

from vacagent.config import PipeSettings, SpaceSettings, resolve_location
from vacagent.errors import ConfigError
from vacagent.fetch import Fetcher
from vacagent.model import NAME_RE, MachineType
from vacagent.schema import (
    BACKEND_REQUIRED,
    MACHINETYPE_PROPERTIES,
    MACHINETYPE_SCHEMA,
    MERGED_KEYS,
    OWNED_OVERRIDES,
    PASSTHROUGH_KEYS,
    PATH_KEYS,
    PIPE_SCHEMA,
    merge_documents,
    violations,
)

DEFAULT_CACHE_SECONDS = 3600
MAX_DEPTH = 16  # a pipe is a list of flat objects: 4 levels is plenty, thousands is an attack

# MachineType fields read straight from the definition key of the same name.
_CORE = (
    "target_share", "backoff_seconds", "max_backoff_seconds", "fizzle_seconds",
    "max_wallclock_seconds", "min_wallclock_seconds", "heartbeat_file", "heartbeat_seconds",
    "max_starting_processors", "processors_limit", "mb_per_processor", "user_data",
)


@dataclass(frozen=True)
class Resolved:
    machinetypes: Mapping[str, MachineType] = field(default_factory=dict)
    definitions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # effective, as stored
    errors: Mapping[str, str] = field(default_factory=dict)  # machinetype (or pipe) -> message
    warnings: tuple[str, ...] = ()


def _known(key: str) -> bool:
    return (
        key in MACHINETYPE_PROPERTIES
        or key in PASSTHROUGH_KEYS
        or key.startswith("user_data_option_")
        or key.startswith("user_data_file_")
    )


def _unsafe_path(value: str) -> bool:
    if "://" in value:
        value = value.split("://", 1)[1]
    parts = value.replace("\\", "/").split("/")
    return ".." in parts


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _escapes_remote(key: str, value: str) -> bool:
    """Would this value, from a remote pipe, reach outside the web?  The keys vacagent reads
    must be https URLs; the others may be plain names but never paths or other schemes."""
    if key == "user_data" or key.startswith("user_data_file_"):
        return not value.startswith("https://")
    scheme = value.split(":", 1)[0] if ":" in value else ""
    return value.startswith(("/", "~", "\\")) or (scheme.isalpha() and scheme.lower() != "https")


def build(name: str, definition: Mapping[str, Any], origins: Mapping[str, str], backend: str = "") -> MachineType:
    """Validate one effective definition and build its MachineType.

    `origins` maps each key to the file it came from, so that an error names
    the file the operator must edit; `backend` (the space's) adds the keys
    that backend requires.  Raises ConfigError.
    """

    def fail(key: str, reason: str) -> ConfigError:
        where = origins.get(key) or origins.get("suffix") or next(iter(origins.values()), "?")  # a missing key: its entry's file
        return ConfigError(f"{where}: machinetype {name}: {key}: {reason}")

    if not NAME_RE.match(name):
        raise fail("suffix", f"machinetype name {name!r} must be lowercase letters, digits and hyphens (max 63)")
    problems = violations(dict(definition), MACHINETYPE_SCHEMA)
    if problems:
        key, reason = problems[0]
        raise fail(key.split(".")[0], reason)
    for key, value in definition.items():
        if not _finite(value):
            raise fail(key, "NaN and Infinity are not numbers vacagent accepts")
        is_path = key in PATH_KEYS or key.startswith("user_data_file_")
        if is_path and isinstance(value, str) and _unsafe_path(value):
            raise fail(key, f"{value!r} climbs out of its directory ('..' is not allowed)")
        if is_path and isinstance(value, str) and "://" in origins.get(key, "") and _escapes_remote(key, value):
            raise fail(key, f"{value!r}: a pipe fetched from a URL may name only https:// URLs "
                            "(relative references resolve against the pipe's URL)")
    for key, owned in OWNED_OVERRIDES.items():
        for inner in sorted(set(definition.get(key) or {}) & set(owned)):
            raise fail(key, f"{inner}: cannot be overridden: {owned[inner]}")
    for key, what in BACKEND_REQUIRED.get(backend, {}).items():
        if key not in definition:
            raise fail(key, f"required in a {backend} space ({what})")
    lo, hi = definition.get("min_processors"), definition.get("max_processors")
    if lo is not None and hi is not None and lo > hi:
        raise fail("min_processors", f"{lo} is more than max_processors {hi}")
    lo, hi = definition.get("min_wallclock_seconds"), definition.get("max_wallclock_seconds")
    if lo is not None and hi is not None and lo > hi:
        raise fail("min_wallclock_seconds", f"{lo} is more than max_wallclock_seconds {hi}")
    processors = definition.get("processors") or definition.get("max_processors") or definition.get("min_processors") or 1
    core = {key: definition[key] for key in _CORE if key in definition}
    extra = {k: v for k, v in definition.items() if k not in core and k not in ("processors", "suffix")}
    return MachineType(
        name=name,
        processors=int(processors),
        source=origins.get("suffix", next(iter(origins.values()), "")),
        extra=extra,
        **core,
    )


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _depth(doc: Any) -> int:
    """How deeply `doc` nests, counted without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return deepest


def parse_json(text: str, source: str) -> Any:
    """A pipe's JSON: NaN and Infinity refused, nesting at most MAX_DEPTH; ConfigError names the source."""
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ConfigError(f"{source}: not valid JSON: nested more than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise ConfigError(f"{source}: not valid JSON: {e}") from e
    if _depth(doc) > MAX_DEPTH:
        raise ConfigError(f"{source}: not valid JSON: nested more than {MAX_DEPTH} levels")
    return doc


def _pipe_entries(pipe: PipeSettings, fetcher: Fetcher, now: float) -> tuple[list[dict], list[str], int]:
    fetched = fetcher.get(pipe.source, now)
    warnings = [fetched.warning] if fetched.warning else []
    doc = parse_json(fetched.text, pipe.source)
    problems = violations(doc, PIPE_SCHEMA)
    if problems:
        key, reason = problems[0]
        raise ConfigError(f"{pipe.source}: {key}: {reason}")
    cache_seconds = doc.get("cache_seconds", DEFAULT_CACHE_SECONDS)
    for key in doc:
        if key not in ("cache_seconds", "machinetypes"):
            warnings.append(f"{pipe.source}: {key}: unknown top-level key, ignored")
    return doc["machinetypes"], warnings, cache_seconds


def _relative_to(location: str, value: str) -> str:
    """Resolve a location named inside a pipe against the pipe's own location."""
    if "://" in value or value.startswith("/"):
        return value
    if "://" in location:
        return urljoin(location, value)
    return resolve_location(value, Path(location).parent)


@dataclass
class _Entry:
    """One machinetype being assembled: its definition and where each key came from."""

    name: str
    definition: dict[str, Any]
    origins: dict[str, str]


def _location_key(key: str) -> bool:
    return key in ("user_data", "demand_url") or key.startswith("user_data_file_")


def _merge_pipe(pipe: PipeSettings, entries: list[dict], taken: set[str],
                errors: dict[str, str]) -> list[_Entry]:
    """The pipe's entries with the site's overrides applied, and its share split."""
    merged: list[_Entry] = []
    for i, entry in enumerate(entries):
        suffix = entry.get("suffix")
        if not isinstance(suffix, str) or not suffix:
            errors[f"{pipe.prefix}-#{i}"] = f"{pipe.source}: machinetypes.{i}: suffix: required string is missing"
            continue
        name = f"{pipe.prefix}-{suffix}"
        if name in taken:
            errors[f"{name}#{i}"] = f"{pipe.source}: machinetype {name}: suffix: {suffix!r} gives a name already in use"
            continue
        taken.add(name)
        definition = {k: _relative_to(pipe.source, v) if isinstance(v, str) and _location_key(k) else v
                      for k, v in entry.items()}
        origins = {k: pipe.source for k in definition}
        for layer in (pipe.overrides, pipe.suffix_overrides.get(suffix, {})):
            definition.update({k: merge_documents(definition[k], v)
                               if k in MERGED_KEYS and isinstance(v, Mapping) and isinstance(definition.get(k), Mapping)
                               else v for k, v in layer.items()})
            origins.update({k: pipe.config_file for k in layer})
        merged.append(_Entry(name, definition, origins))
    if pipe.target_share is not None:
        shares = [e.definition.get("target_share", 1.0) for e in merged]
        total = sum(s for s in shares if isinstance(s, (int, float)) and s > 0)
        for e, share in zip(merged, shares, strict=True):
            if isinstance(share, (int, float)) and total > 0:
                e.definition["target_share"] = pipe.target_share * max(share, 0) / total
                e.origins["target_share"] = pipe.config_file
    return merged


def resolve_space(space: SpaceSettings, fetcher: Fetcher, now: float) -> Resolved:
    machinetypes: dict[str, MachineType] = {}
    definitions: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    warnings: list[str] = []
    taken: set[str] = set()

    def add(e: _Entry) -> None:
        for key in e.definition:
            if not _known(key):
                warnings.append(f"{e.origins.get(key, '?')}: machinetype {e.name}: {key}: unknown key, ignored")
        try:
            machinetypes[e.name] = build(e.name, e.definition, e.origins, space.backend)
            definitions[e.name] = e.definition
        except ConfigError as error:
            errors[e.name] = str(error)

    for pipe in space.pipes:
        try:
            entries, pipe_warnings, cache_seconds = _pipe_entries(pipe, fetcher, now)
        except ConfigError as e:
            errors[f"pipe {pipe.prefix}"] = str(e)
            continue
        warnings.extend(pipe_warnings)
        fetcher.remember_max_age(pipe.source, cache_seconds)
        merged = _merge_pipe(pipe, entries, taken, errors)
        for entry in merged:
            add(entry)
        suffixes = {e.definition.get("suffix") for e in merged}
        for suffix in sorted(set(pipe.suffix_overrides) - suffixes):
            warnings.append(f"{pipe.config_file}: suffix_overrides.{suffix}: the pipe {pipe.source} has no such suffix")

    for name, inline in space.machinetypes.items():
        if name in taken:
            errors[name] = f"{space.config_file}: spaces.{space.name}.machinetypes.{name}: also defined by a pipe"
            machinetypes.pop(name, None)
            continue
        add(_Entry(name, dict(inline), {k: space.config_file for k in inline}))

    return Resolved(machinetypes, definitions, errors, tuple(warnings))
