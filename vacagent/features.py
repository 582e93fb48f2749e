"""Machine/job features (WLCG MJF, HSF-TN-2016-02) for one new machine.  Pure.

Written into the machine's `machinefeatures/` and `jobfeatures/` at intent
time; the local backend points $MACHINEFEATURES and $JOBFEATURES at them.
Each machine is one job slot holding all its processors.
"""

from __future__ import annotations

from vacagent.model import MachineType


def features(machinetype: MachineType, created: float) -> dict[str, str]:
    """Relative path -> file contents."""
    shutdown = int(created) + machinetype.max_wallclock_seconds
    processors = machinetype.processors
    machine = {
        "shutdowntime": shutdown,
        "jobslots": 1,
        "total_cpu": processors,
        "log_cores": processors,
        "phys_cores": processors,
    }
    hs06 = machinetype.extra.get("hs06_per_processor")
    if isinstance(hs06, (int, float)):
        machine["hs06"] = round(hs06 * processors, 3)
    job = {
        "wall_limit_secs": machinetype.max_wallclock_seconds,
        "cpu_limit_secs": machinetype.max_wallclock_seconds * processors,
        "max_rss_bytes": machinetype.mb_per_processor * processors * 1024 * 1024,
        "allocated_cpu": processors,
        "jobstart_secs": int(created),
        "shutdowntime_job": shutdown,
    }
    files = {f"machinefeatures/{k}": f"{v}\n" for k, v in machine.items()}
    files.update({f"jobfeatures/{k}": f"{v}\n" for k, v in job.items()})
    return files
