"""Demand hints published at a URL: a machinetype's `demand_url` -> its jobs waiting.

A project may name in its pipe (or a site in its overrides) a `demand_url`:
an https URL or a local path holding a small JSON document,

    {"waiting": 42, "time": 1800000000}

`waiting` is the number of jobs the project has waiting for this
machinetype (an integer >= 0); `time`, optional, when it was counted (Unix
seconds; default: when vacagent fetched it).  It is fetched through the
cycle's cache (reused for up to `MAX_AGE` seconds) and put on the
machinetype as `extra[planner.DEMAND_HINT]`, where the planner reads it as
it reads a machine's `demand` joboutputs report: a fresh hint bounds
creation, a stale or absent one is ignored.  A document that cannot be
fetched or read gives no hint and a message for the cycle to report.

Neighbours: `fetch` (the cached reader), `cycle` (calls `apply`),
`planner` (reads the hint).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Mapping

from vacagent.errors import ConfigError
from vacagent.fetch import Fetcher
from vacagent.model import MachineType
from vacagent.planner import DEMAND_HINT

MAX_AGE = 60.0  # seconds a fetched document is reused: about one cycle


def read(text: str, location: str, now: float) -> tuple[float, int]:
    """(time, jobs waiting) from a demand document; ConfigError naming the location and the reason."""
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{location}: demand hint: not JSON: {e}") from None
    waiting = doc.get("waiting") if isinstance(doc, dict) else None
    if isinstance(waiting, bool) or not isinstance(waiting, int) or waiting < 0:
        raise ConfigError(f'{location}: demand hint: want {{"waiting": N}} with N an integer >= 0')
    at = doc.get("time", now)
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        raise ConfigError(f"{location}: demand hint: time must be Unix seconds")
    return float(at), waiting


def apply(machinetypes: Mapping[str, MachineType], fetcher: Fetcher, now: float
          ) -> tuple[dict[str, MachineType], dict[str, str]]:
    """The machinetypes with their URL demand hints attached, and the problems (machinetype -> message)."""
    out, problems = dict(machinetypes), {}
    for name, mt in machinetypes.items():
        location = mt.extra.get("demand_url")
        if not isinstance(location, str):
            continue
        try:
            fetched = fetcher.get(location, now, MAX_AGE)
            if fetched.warning:  # a stale cached copy stood in for a failed fetch: no fresh hint
                raise ConfigError(fetched.warning)
            at, waiting = read(fetched.text, location, now)
        except ConfigError as e:
            problems[name] = str(e)
            continue
        out[name] = replace(mt, extra={**mt.extra, DEMAND_HINT: (at, waiting, location)})
    return out, problems
