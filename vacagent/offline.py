"""`vacagent validate --offline`: check what can be checked on a host without network.

The configuration itself (`config.load`), every local pipe and every
machinetype it defines (`definitions.resolve_space`, as the daemon would),
the site's overrides of remote pipes (types and paths), and every local file
vacagent will read: user_data templates and `user_data_file_*`.  Nothing is
fetched and no cloud is contacted; what that leaves unchecked is listed:
remote pipes and templates, cloud credentials (credential files are only
looked for) and the clouds themselves.

Neighbours: `definitions` (the checks the daemon makes), `cli` (prints the report).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from vacagent import definitions
from vacagent.backends.registry import BACKENDS
from vacagent.config import Settings, SpaceSettings
from vacagent.errors import ConfigError
from vacagent.fetch import Fetched, Fetcher
from vacagent.schema import MACHINETYPE_SCHEMA, violations

# Backend options that name a file of credentials: looked for, never read.
CREDENTIAL_FILES = ("clouds_file", "credentials_file", "kubeconfig")


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)  # ok / warning / error lines, as `validate` prints
    unchecked: list[str] = field(default_factory=list)
    ok: bool = True

    def error(self, label: str, message: str) -> None:
        self.lines.append(f"{label}: error: {message}")
        self.ok = False


class LocalOnlyFetcher(Fetcher):
    """A Fetcher that reads local files and refuses every URL (nothing leaves the host)."""

    def get(self, location: str, now: float, max_age: float | None = None) -> Fetched:
        if "://" in location:
            raise ConfigError(f"{location}: not fetched (--offline)")
        return super().get(location, now, max_age)


def _files(label: str, name: str, definition: Mapping[str, Any], report: Report) -> None:
    for key, value in sorted(definition.items()):
        if not (key == "user_data" or key.startswith("user_data_file_")) or not isinstance(value, str):
            continue
        if "://" in value:
            report.unchecked.append(f"{label}: machinetype {name}: {key}: {value} (remote: not fetched)")
        elif not os.access(value, os.R_OK) or not Path(value).is_file():
            report.error(label, f"machinetype {name}: {key}: {value}: cannot read (no such file, or not readable)")


def _space(space: SpaceSettings, fetcher: Fetcher, now: float, report: Report) -> None:
    label = f"space {space.name}"
    if space.backend not in BACKENDS:
        report.error(label, f"{space.config_file}: spaces.{space.name}.backend: {space.backend!r} is unknown "
                            f"(known: {', '.join(sorted(BACKENDS))})")
    remote = [p for p in space.pipes if "://" in p.source]
    local = tuple(p for p in space.pipes if "://" not in p.source)
    resolved = definitions.resolve_space(replace(space, pipes=local), fetcher, now)
    for name in sorted(resolved.machinetypes):
        mt = resolved.machinetypes[name]
        report.lines.append(f"{label}: ok {name} (processors {mt.processors}, target_share {mt.target_share:g})")
        _files(label, name, resolved.definitions[name], report)
    report.lines += [f"{label}: warning: {w}" for w in resolved.warnings]
    for message in resolved.errors.values():
        report.error(label, message)
    for pipe in remote:
        report.unchecked.append(f"{label}: pipe {pipe.prefix}: {pipe.source} (remote: not fetched; its "
                                "machinetypes are checked when the pipe is)")
        layers = {"overrides": pipe.overrides, **{f"suffix_overrides.{s}": o for s, o in pipe.suffix_overrides.items()}}
        for where, layer in layers.items():
            for key, reason in violations(dict(layer), MACHINETYPE_SCHEMA):
                report.error(label, f"{pipe.config_file}: pipes.{pipe.prefix}.{where}.{key}: {reason}")
            _files(label, f"{pipe.prefix}-* ({where})", layer, report)
    _credentials(label, space, report)


def _credentials(label: str, space: SpaceSettings, report: Report) -> None:
    if space.backend in ("local", "fake"):
        return
    report.unchecked.append(f"{label}: the {space.backend} cloud itself: no request made (credentials, images, "
                            "flavors and quota are checked by `vacagent validate` on a host that reaches it)")
    for key in CREDENTIAL_FILES:
        value = space.options.get(key)
        if isinstance(value, str):
            state = "present" if os.access(value, os.R_OK) else "MISSING: the operator must provide it"
            report.unchecked.append(f"{label}: options.{key}: {value}: credentials, not read ({state})")


def check(settings: Settings, cache_dir: Path, now: float) -> Report:
    """Check `settings` without network; `cache_dir` is never written to (nothing is fetched)."""
    report = Report()
    fetcher = LocalOnlyFetcher(cache_dir)
    for space in settings.spaces.values():
        _space(space, fetcher, now, report)
    return report
