"""Three real daemons on one state directory: killed and restarted at random, they never act on a
space together, never leak a machine, never exceed a limit; a SIGTERM hands spaces over in a cycle."""

from __future__ import annotations

import json
import random
import time

import pytest

from daemon_helpers import accounting, finished_names, kill_site, wait_for
from instances_helpers import (
    SPACES, Fleet, LimitWatch, check_fencing, check_no_leak, holders, log_events, wait_held_by, write_sites,
)

from vacagent import crashpoints
from vacagent.state import formats

pytestmark = pytest.mark.slow

CYCLE, LEASE = 0.5, 2.0
NAMES = ["a", "b", "c"]
# The steps every instance holding a space soon comes to: its machines end every few seconds, so the
# delete and close steps come as surely as the create ones (APEL is not configured here).
CRASH_POINTS = ["after_intent", "after_create", "before_delete", "after_delete", "after_close_journal",
                "after_finished", "mid_append", "after_accounting"]


@pytest.fixture
def fleet(tmp_path, vacagent_bin):
    site = f"inst{random.randrange(10**6)}"
    configs = write_sites(tmp_path, site, NAMES, CYCLE, LEASE)
    fleet = Fleet(vacagent_bin, configs, tmp_path)
    fleet.site = site
    fleet.state_dir = tmp_path / "state"
    yield fleet
    fleet.stop_all()
    kill_site(site)


def held_counts(fleet):
    counts = {}
    for h in holders(fleet.state_dir, LEASE).values():
        if h:
            counts[h[0]] = counts.get(h[0], 0) + 1
    return counts


def test_random_kills_never_double_act_leak_or_overshoot(fleet):
    watch = LimitWatch(fleet.site)
    watch.start()
    rng = random.Random()
    for name in NAMES:  # simultaneous start
        fleet.start(name)
    wait_held_by(fleet.state_dir, LEASE, NAMES, timeout=30)
    wait_for(lambda: sorted(held_counts(fleet).values()) == [1, 1, 2], timeout=30)  # fair: 4 spaces over 3
    crashed = []
    for round_ in range(9):
        time.sleep(rng.uniform(0.0, 1.5))  # a random moment in some instance's cycle
        victim = rng.choice(fleet.running())
        mine = [s for s, h in holders(fleet.state_dir, LEASE).items() if h and h[0] == victim]
        if round_ % 3 == 2:
            # Hung, not dead: its leases are taken over meanwhile; woken up, it must not act on them.
            fleet.pause(victim, LEASE + 2 * CYCLE)
            wait_held_by(fleet.state_dir, LEASE, NAMES, timeout=30)
            time.sleep(2 * CYCLE)
            check_fencing(fleet.state_dir, fleet)
            continue
        killed_at = fleet.kill(victim)
        if mine:
            wait_held_by(fleet.state_dir, LEASE, fleet.running(), timeout=30)
            took = time.time() - killed_at
            assert took <= LEASE + CYCLE + 1.5, f"round {round_}: {victim}'s spaces {mine} held again after {took:.1f}s"
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0.0, LEASE))
        # At once or later (it meets its own unexpired entry and leases); every third round set to
        # die by itself between intent and create, or between create and record (crashpoints).
        if round_ % 3 == 1:
            fleet.start(victim, {"VACAGENT_CRASH_AT": rng.choice(CRASH_POINTS)})
            proc = fleet.procs[victim]
            assert proc.wait(timeout=60) == crashpoints.EXIT_STATUS  # it took spaces, then died at its point
            died = time.time()
            fleet.procs.pop(victim)
            crashed.append(victim)
            wait_held_by(fleet.state_dir, LEASE, fleet.running(), timeout=30)
            assert time.time() - died <= LEASE + CYCLE + 1.5
        fleet.start(victim)
        check_fencing(fleet.state_dir, fleet)
    wait_for(lambda: sorted(held_counts(fleet).values()) == [1, 1, 2], timeout=30)
    check_no_leak(fleet.state_dir, fleet.site)
    worst = watch.stop()
    assert len(crashed) == 3
    assert all(worst.get(s, 0) <= 2 for s in SPACES), f"more than max_machines at once: {worst}"
    assert check_fencing(fleet.state_dir, fleet) > 20  # the checks above saw real work
    created = sum(len(log_events(fleet.log_path(n), "machine created")) for n in NAMES)
    assert created > 10
    # Whoever crashed mid-close, the next holder completed it: one accounting line per finished machine.
    fleet.stop_all()
    names = [line["machine"] for line in accounting(fleet.state_dir)]
    finished = [n for s in SPACES for n in finished_names(fleet.state_dir, s)]
    assert len(names) == len(set(names)), f"accounted twice: {sorted(n for n in set(names) if names.count(n) > 1)}"
    assert set(finished) <= set(names), f"finished, never accounted: {sorted(set(finished) - set(names))}"
    assert not [p for s in SPACES for p in (fleet.state_dir / "spaces" / s / "closing").glob("*.json")]


def test_sigterm_hands_spaces_over_within_a_cycle(fleet):
    for name in NAMES:
        fleet.start(name)
    wait_held_by(fleet.state_dir, LEASE, NAMES, timeout=30)
    wait_for(lambda: sorted(held_counts(fleet).values()) == [1, 1, 2], timeout=30)
    victim = max(held_counts(fleet), key=held_counts(fleet).get)
    mine = [s for s, h in holders(fleet.state_dir, LEASE).items() if h and h[0] == victim]
    fleet.terminate(victim)  # returns once it has exited: its leases are released
    took = wait_held_by(fleet.state_dir, LEASE, fleet.running(), timeout=30)
    assert took <= CYCLE + 0.5, f"{mine} held again {took:.2f}s after {victim} exited"
    last = log_events(fleet.log_path(victim), "lease released")[-len(mine):]
    assert {(e["space"], e["why"]) for e in last} == {(s, "stopping") for s in mine}
    check_fencing(fleet.state_dir, fleet)


def test_an_instance_with_other_spaces_refuses_to_start(fleet, tmp_path):
    fleet.start("a")
    wait_held_by(fleet.state_dir, LEASE, ["a"], timeout=30)
    other = tmp_path / "other.yaml"
    text = fleet.configs["b"].read_text()
    other.write_text(text.replace("instance_name: b", "instance_name: z").replace("  south:", "  southeast:"))
    fleet.configs["z"] = other
    fleet.start("z")
    assert fleet.procs["z"].wait(timeout=30) == 2
    log = fleet.log_path("z").read_text()
    assert "spaces differ from those of running instance a" in log
    assert "only here: southeast" in log and "only there: south" in log
    fleet.procs.pop("z")


def test_a_space_written_by_a_newer_vacagent_is_refused_alone(fleet):
    """An older instance meeting a newer format refuses that space, saying which file, and runs the others."""
    record = fleet.state_dir / "spaces" / "east" / "machines" / "churn-00000000" / "machine.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"format": formats.FORMAT + 1, "name": "churn-00000000", "renamed_key": 1}))
    fleet.start("a")
    wait_for(lambda: "space refused" in fleet.log_path("a").read_text(), timeout=30)
    refusal = log_events(fleet.log_path("a"), "space refused")[0]
    assert refusal["space"] == "east" and f"format {formats.FORMAT + 1} was written by a newer vacagent" in refusal["why"]
    assert str(record) in refusal["why"]
    wait_for(lambda: json.loads((fleet.state_dir / "instances" / "a.json").read_text())["refused"] == ["east"])
    wait_held_by(fleet.state_dir, LEASE, ["a"], timeout=30, spaces=("west", "north", "south"))
    lease = holders(fleet.state_dir, LEASE)["east"]
    assert lease is None  # released, and not taken again by an instance that cannot read it
    assert record.exists()  # never quarantined as damaged, never rewritten
