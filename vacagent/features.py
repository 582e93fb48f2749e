"""Machine/job features (WLCG MJF, HSF-TN-2016-02) for one new machine.  Pure.

Written into the machine's `machinefeatures/` and `jobfeatures/` at intent
time.  Machines read them through the endpoint
(`GET .../machinefeatures/<key>`, with $MACHINEFEATURES and $JOBFEATURES
set to those URLs) or, with no endpoint configured, as local directories.
Each machine is one job slot holding all its processors.

Always written: shutdowntime, jobslots, total_cpu, log_cores, phys_cores
(machinefeatures); wall_limit_secs, cpu_limit_secs, max_rss_bytes,
allocated_cpu, jobstart_secs, shutdowntime_job (jobfeatures).  When the
machinetype gives `hs06_per_processor` or `disk_gb_per_processor`, also
hs06 / hs06_job and scratch_limit_bytes, as Vac does.
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
    job = {
        "wall_limit_secs": machinetype.max_wallclock_seconds,
        "cpu_limit_secs": machinetype.max_wallclock_seconds * processors,
        "max_rss_bytes": machinetype.mb_per_processor * processors * 1024 * 1024,
        "allocated_cpu": processors,
        "jobstart_secs": int(created),
        "shutdowntime_job": shutdown,
    }
    hs06 = machinetype.extra.get("hs06_per_processor")
    if isinstance(hs06, (int, float)):
        machine["hs06"] = job["hs06_job"] = round(hs06 * processors, 3)
    disk = machinetype.extra.get("disk_gb_per_processor")
    if isinstance(disk, (int, float)):
        job["scratch_limit_bytes"] = int(disk * processors * 1_000_000_000)
    files = {f"machinefeatures/{k}": f"{v}\n" for k, v in machine.items()}
    files.update({f"jobfeatures/{k}": f"{v}\n" for k, v in job.items()})
    return files
