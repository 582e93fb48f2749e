"""The `vacagent` policy: the daemon's own decision code, unchanged.

`planner.plan` (with `feedback.assess`, `backoff`) decides; `sim.run` runs
it inside the real `cycle.run_once`, so reconcile, the state store's
feedback.json and the actuator's create-failure backoff all take part
exactly as in the daemon, with the scenario's machinetype settings.
"""

from vacagent import planner
from vacagent.sim.policies import CyclePolicy

POLICY = CyclePolicy(
    name="vacagent",
    summary="vacagent's planner: exponential backoff per wave, one probe, lowest in-use/share first",
    planner=lambda scenario, space: planner.plan,
)
