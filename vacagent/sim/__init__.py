"""The simulator: the daemon's real decision cycle on simulated time, against
a simulated lab and workload, beside baseline policies.

    scenario      a scenario file -> Scenario (the lab, projects, jobs, incidents)
    workload, swf job arrivals: steady streams, bursts, inline rows, CSV, SWF traces
    lab           the world: machines that boot, pull jobs, idle and stop; clouds that fail
    backend       the lab through the Backend protocol, one space at a time
    run           cycle.run_once every cycle_seconds with a policy's decision function
    policies/     vacagent, vcycle, static (decision functions), oracle (a computed bound)
    metrics       figures from traces; table (text, JSON) and plot (PNG) show them
    simulate      runs policies on a scenario; command is `vacagent simulate`

Nothing in the daemon imports this package; `cli` imports `command` only
when `vacagent simulate` runs.  Reference: docs/scenarios.md, docs/benchmarks.md.
"""
