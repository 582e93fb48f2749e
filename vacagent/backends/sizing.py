"""Choosing a cloud machine size for a machinetype: the first candidate that fits.  Pure.

EC2 instance types and GCE machine types are both a name with a vCPU count
and memory.  A site lists candidates in the space's options (a machinetype
may name its own); the backend looks up their sizes once and takes the
first whose vCPUs fall in the machinetype's processor range and whose
memory covers `mb_per_processor` for every vCPU.

The range is `min_processors` (default: `processors`) to `processors`: a
machine never has more processors than the planner counted for it, so a
space's `processors_limit` holds whichever candidate is chosen.

Neighbours: `ec2` and `gce` call `candidates` and `choose`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from vacagent.model import MachineType


@dataclass(frozen=True)
class Size:
    name: str
    vcpus: int
    memory_mb: int


def processor_range(machinetype: MachineType) -> tuple[int, int]:
    high = machinetype.processors
    low = machinetype.extra.get("min_processors") or high
    return min(int(low), high), high


def candidates(machinetype: MachineType, options: Mapping[str, Any], option: str, own_key: str) -> list[str]:
    """The machinetype's own `own_key` (a name or a list) if it has one, else the space's `option` list."""
    own = machinetype.extra.get(own_key)
    if own:
        return [own] if isinstance(own, str) else [str(name) for name in own]
    return [str(name) for name in options.get(option) or ()]


def fits(size: Size, machinetype: MachineType) -> bool:
    low, high = processor_range(machinetype)
    return low <= size.vcpus <= high and size.memory_mb >= size.vcpus * machinetype.mb_per_processor


def choose(sizes: Iterable[Size], machinetype: MachineType) -> Size | None:
    return next((size for size in sizes if fits(size, machinetype)), None)


def no_fit(machinetype: MachineType, sizes: Iterable[Size]) -> str:
    """Why no candidate fits, for the operator: the range, the memory rule and each candidate's size."""
    low, high = processor_range(machinetype)
    listed = ", ".join(f"{s.name} ({s.vcpus} vCPUs, {s.memory_mb} MB)" for s in sizes) or "none"
    return (
        f"no candidate has {low}-{high} vCPUs with {machinetype.mb_per_processor} MB per vCPU "
        f"(candidates: {listed})"
    )
