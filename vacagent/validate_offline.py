"""`vacagent validate --offline`: check everything that can be checked on a host without network.

The configuration (schema, paths, limits), each space's backend name, every
local vacuum pipe (read and every machinetype in it built), every
machinetype's local user_data template and user_data_file_X files (read,
and the template rendered), the endpoint's TLS files.  Remote pipes and
templates are not fetched, and no cloud is contacted (credentials, images,
flavors, quotas): the report lists each thing it did not check.
Neighbours: `config`, `definitions`, `userdata`, `cli` (plain `validate`
fetches pipes).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from vacagent import config, definitions, userdata
from vacagent.backends.registry import BACKENDS
from vacagent.errors import ConfigError
from vacagent.fetch import Fetched, Fetcher


def remote(location: str) -> bool:
    return location.startswith(("http://", "https://"))


class Unchecked(Exception):
    """A remote location, not fetched offline."""


class LocalFetcher(Fetcher):
    """Reads local files only; a remote location raises `Unchecked`."""

    def get(self, location: str, now: float, max_age: float | None = None) -> Fetched:
        if remote(location):
            raise Unchecked(location)
        return super().get(location, now, max_age)


def validate(path: Path | None, now: float) -> tuple[bool, list[str]]:
    """(valid, report lines)."""
    try:
        settings = config.load(path)
    except ConfigError as e:
        return False, [f"error: {e}"]
    lines: list[str] = []
    ok = True
    endpoint = settings.endpoint
    for key in ("tls_cert", "tls_key"):
        value = getattr(endpoint, key, None) if endpoint else None
        if value and not Path(value).is_file():
            lines.append(f"error: {endpoint.config_file}: endpoint.{key}: {value}: no such file")
            ok = False
    unchecked: set[str] = set()
    with tempfile.TemporaryDirectory() as cache:
        fetcher = LocalFetcher(Path(cache))
        for space in settings.spaces.values():
            problems = list(_space(space, fetcher, now, unchecked))
            ok = ok and not any(p.startswith("error") for p in problems)
            lines += problems
    for location in sorted(unchecked):
        lines.append(f"not checked: {location} (remote: not fetched offline)")
    lines.append("not checked: the clouds (credentials, images, flavors, quotas): no cloud is contacted offline")
    lines.append(f"configuration {'valid' if ok else 'INVALID'} (offline): {', '.join(settings.files)}")
    return ok, lines


def _space(space: config.SpaceSettings, fetcher: LocalFetcher, now: float, unchecked: set[str]) -> Iterator[str]:
    label = f"space {space.name}"
    if space.backend not in BACKENDS:
        yield (f"error: {space.config_file}: spaces.{space.name}.backend: {space.backend!r} is unknown "
               f"(known: {', '.join(sorted(BACKENDS))})")
    local = tuple(p for p in space.pipes if not remote(p.source))
    unchecked.update(p.source for p in space.pipes if remote(p.source))
    resolved = definitions.resolve_space(replace(space, pipes=local), fetcher, now)
    for warning in resolved.warnings:
        yield f"{label}: warning: {warning}"
    for message in resolved.errors.values():
        yield f"{label}: error: {message}"
    for name in sorted(resolved.machinetypes):
        mt = resolved.machinetypes[name]
        try:
            template = userdata.load_template(mt, fetcher, now)
            values = userdata.substitutions(mt, fetcher, now)
            userdata.render(template, values)
        except Unchecked as e:
            unchecked.add(str(e))
            yield f"{label}: ok {name} (user_data or a user_data_file not checked: remote)"
        except (ConfigError, OSError) as e:
            yield f"{label}: error: machinetype {name}: {e}"
        else:
            yield f"{label}: ok {name} (processors {mt.processors}, target_share {mt.target_share:g}, user_data read)"
