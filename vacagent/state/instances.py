"""The instance registry, and which instance should hold which space.

    instances/<id>.json   one per running daemon: host, pid, version, started, last_seen,
                          the spaces it runs (name -> settings fingerprint), the spaces it refuses

Each daemon refreshes its entry every tick; an entry not refreshed for
`lease_seconds` is dead, and any instance prunes it.  A daemon stopping on
SIGTERM first marks its entry `stopping` (others then plan without it),
and removes it once its leases are released.

`assign` is the pure fair-share decision every instance computes from the
same view: each live instance gets floor or ceil of spaces/instances;
instances keep what they hold up to their share (so a balanced site never
moves a space: no flapping), and the rest go to instances under their
share by rendezvous hashing, so instances that see the same registry agree
without talking.  Neighbours: `lease` (the claims), `coordinator`.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from vacagent.state import formats

DIRECTORY = "instances"


@dataclass(frozen=True)
class Instance:
    id: str
    host: str
    pid: int
    version: str
    started: float
    last_seen: float
    site: str = ""
    spaces: Mapping[str, str] = field(default_factory=dict)  # space -> fingerprint of its settings
    refused: tuple[str, ...] = ()  # spaces whose state this instance cannot read (too new)
    stopping: bool = False
    endpoint: str | None = None  # the URL its machine endpoint serves


# -- pure decisions ----------------------------------------------------------


def alive(instance: Instance, now: float, lease_seconds: float) -> bool:
    return now - instance.last_seen < lease_seconds


def live(instances: Iterable[Instance], now: float, lease_seconds: float) -> list[Instance]:
    """Instances that take part in sharing the spaces: alive and not stopping."""
    return sorted((i for i in instances if alive(i, now, lease_seconds) and not i.stopping), key=lambda i: i.id)


def mismatch(mine: Instance, others: Iterable[Instance]) -> str | None:
    """Why `mine` may not join the running instances (site or spaces differ), or None."""
    for other in sorted(others, key=lambda i: i.id):
        if other.id == mine.id:
            continue
        if other.site != mine.site:
            return f"instance {other.id} runs site {other.site!r}, this configuration site {mine.site!r}"
        only_here = sorted(set(mine.spaces) - set(other.spaces))
        only_there = sorted(set(other.spaces) - set(mine.spaces))
        changed = sorted(s for s in set(mine.spaces) & set(other.spaces) if mine.spaces[s] != other.spaces[s])
        if only_here or only_there or changed:
            parts = []
            if only_here:
                parts.append(f"only here: {', '.join(only_here)}")
            if only_there:
                parts.append(f"only there: {', '.join(only_there)}")
            if changed:
                parts.append(f"configured differently: {', '.join(changed)}")
            return (f"spaces differ from those of running instance {other.id} (host {other.host}): "
                    f"{'; '.join(parts)}; every instance must run the same spaces")
    return None


def rank(instance: str, space: str) -> int:
    """Rendezvous hash: how much `instance` is preferred for `space`."""
    return int.from_bytes(hashlib.sha256(f"{instance}\0{space}".encode()).digest()[:8], "big")


def assign(spaces: Iterable[str], instances: Iterable[str], holders: Mapping[str, str],
           refused: Mapping[str, Iterable[str]] | None = None) -> dict[str, str]:
    """Space -> the live instance that should hold it.

    `holders`: space -> current holder (only unexpired leases); `refused`:
    instance -> spaces it cannot run.  Shares are floor or ceil of
    spaces/instances, the larger ones going to instances already holding
    most; a holder keeps its spaces up to its share.
    """
    names = sorted(set(spaces))
    ids = sorted(set(instances))
    if not ids:
        return {}
    refused_by = {i: set((refused or {}).get(i, ())) for i in ids}

    def can(i: str, s: str) -> bool:
        return s not in refused_by[i]

    held = Counter(h for s, h in holders.items() if s in names and h in refused_by and can(h, s))
    base, extra = divmod(len(names), len(ids))
    by_load = sorted(ids, key=lambda i: (-held[i], i))
    share = {i: base + (1 if k < extra else 0) for k, i in enumerate(by_load)}
    target: dict[str, str] = {}
    load: Counter[str] = Counter()
    for i in ids:
        mine = sorted((s for s in names if holders.get(s) == i and can(i, s)), key=lambda s: -rank(i, s))
        for s in mine[: share[i]]:
            target[s] = i
            load[i] += 1
    for s in names:
        if s in target:
            continue
        eligible = [i for i in ids if can(i, s)]
        if not eligible:
            continue
        under = [i for i in eligible if load[i] < share[i]]
        if not under:
            least = min(load[i] for i in eligible)
            under = [i for i in eligible if load[i] == least]
        chosen = max(under, key=lambda i: rank(i, s))
        target[s] = chosen
        load[chosen] += 1
    return target


# -- files -----------------------------------------------------------------


class Registry:
    """The instances/ directory."""

    def __init__(self, state_dir: Path):
        self.root = state_dir / DIRECTORY

    def path(self, instance_id: str) -> Path:
        return self.root / f"{instance_id}.json"

    def write(self, instance: Instance) -> None:
        data = asdict(instance)
        data["spaces"] = dict(instance.spaces)
        data["refused"] = list(instance.refused)
        formats.write(self.path(instance.id), data)
        self.refresh(instance)  # mtime == last_seen: a later mtime can only come from refresh()

    def refresh(self, instance: Instance) -> None:
        """Mark the entry seen at `instance.last_seen` without writing a byte (the disk is full):
        its mtime, which readers take when it is later than the entry's own last_seen.
        FileNotFoundError if the entry was never written."""
        os.utime(self.path(instance.id), (instance.last_seen, instance.last_seen))

    def remove(self, instance_id: str) -> None:
        try:
            os.unlink(self.path(instance_id))
        except FileNotFoundError:
            pass

    def read(self) -> list[Instance]:
        """Every entry (alive or not); FormatTooNew for an entry a newer vacagent wrote is
        skipped: that instance is left out of this one's view, never misread."""
        found = []
        try:
            entries = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        for name in entries:
            if not name.endswith(".json") or name.startswith("."):
                continue
            try:
                data = formats.read(self.root / name)
                seen = max(float(data["last_seen"]), os.stat(self.root / name).st_mtime)  # mtime: refresh()
                found.append(Instance(
                    id=str(data["id"]), host=str(data["host"]), pid=int(data["pid"]), version=str(data["version"]),
                    started=float(data["started"]), last_seen=seen, site=str(data.get("site", "")),
                    spaces=dict(data.get("spaces", {})), refused=tuple(data.get("refused", ())),
                    stopping=bool(data.get("stopping", False)), endpoint=data.get("endpoint"),
                ))
            except (FileNotFoundError, formats.FormatTooNew):
                continue
            except (ValueError, KeyError, TypeError):
                continue  # damaged (by hand, or a torn copy): ignored, and pruned once old
        return found

    def prune(self, now: float, lease_seconds: float, keep: str) -> list[str]:
        """Remove the entries of dead instances, and unreadable entries not
        touched for `lease_seconds`; returns their ids."""
        readable = {i.id: i for i in self.read()}
        pruned = []
        try:
            entries = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        for name in entries:
            if not name.endswith(".json") or name.startswith("."):
                continue
            instance_id = name[:-5]
            if instance_id == keep:
                continue
            instance = readable.get(instance_id)
            if instance is not None:
                dead = not alive(instance, now, lease_seconds)
            else:
                try:
                    dead = now - os.stat(self.root / name).st_mtime >= lease_seconds
                except FileNotFoundError:
                    continue
            if dead:
                self.remove(instance_id)
                pruned.append(instance_id)
        return pruned
