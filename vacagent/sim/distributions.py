"""Durations and random durations, as scenario files write them.

A duration is a number of seconds or a string such as `"90s"`, `"15m"`,
`"1h30m"`, `"2d"`.  A *distribution* (boot delays, job lengths) is either a
duration (always that long) or an object:

    {"distribution": "uniform", "min": "1m", "max": "3m"}
    {"distribution": "exponential", "mean": "1h"}
    {"distribution": "lognormal", "median": "40m", "sigma": 0.8}

Any of them may carry `"max"` (and the last two `"min"`) to clip samples.
Used by `scenario` (parsing) and by `workload` and `lab` (sampling, always
with a `random.Random` they are given, so that a seed fixes every draw).
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

_UNIT = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
DURATION_PATTERN = r"^(\d+(\.\d+)?[dhms])+$"


def seconds(value: float | int | str) -> float:
    """A scenario duration in seconds (the schema has checked its form)."""
    if isinstance(value, (int, float)):
        return float(value)
    return sum(float(number) * _UNIT[unit] for number, unit in _PART.findall(value))


def span(value: float) -> str:
    """Seconds for people: 45s, 12m05s, 3h20m, 2d04h."""
    value = round(value)
    if value < 60:
        return f"{value}s"
    if value < 3600:
        return f"{value // 60}m{value % 60:02d}s"
    if value < 86400:
        return f"{value // 3600}h{value % 3600 // 60:02d}m"
    return f"{value // 86400}d{value % 86400 // 3600:02d}h"


@dataclass(frozen=True)
class Distribution:
    kind: str  # "constant", "uniform", "exponential", "lognormal"
    a: float  # constant: the value; uniform: min; exponential: mean; lognormal: median
    b: float = 0.0  # uniform: max; lognormal: sigma
    low: float = 0.0  # samples are clipped to [low, high]
    high: float = math.inf

    @classmethod
    def parse(cls, spec: float | int | str | dict) -> "Distribution":
        if not isinstance(spec, dict):
            return cls("constant", seconds(spec))
        kind = spec["distribution"]
        low = seconds(spec.get("min", 0))
        high = seconds(spec["max"]) if "max" in spec else math.inf
        if kind == "uniform":
            return cls("uniform", low, high, low, high)
        if kind == "exponential":
            return cls("exponential", seconds(spec["mean"]), 0.0, low, high)
        return cls("lognormal", seconds(spec["median"]), float(spec["sigma"]), low, high)

    def sample(self, rng: random.Random) -> float:
        if self.kind == "constant":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "exponential":
            value = rng.expovariate(1.0 / self.a)
        else:
            value = rng.lognormvariate(math.log(self.a), self.b)
        return min(max(value, self.low), self.high)

    @property
    def mean(self) -> float:
        """The mean before clipping (the oracle's boot delay)."""
        if self.kind == "constant":
            return self.a
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        if self.kind == "exponential":
            return self.a
        return self.a * math.exp(self.b**2 / 2)

    def __str__(self) -> str:
        if self.kind == "constant":
            return span(self.a)
        if self.kind == "uniform":
            return f"uniform {span(self.a)}-{span(self.b)}"
        if self.kind == "exponential":
            return f"exponential, mean {span(self.a)}"
        return f"lognormal, median {span(self.a)}, sigma {self.b:g}"
