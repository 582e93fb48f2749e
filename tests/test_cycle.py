"""Whole cycles with the fake backend, a fake clock and a real state directory."""

import json
import os
import threading

import pytest

from vacagent import coordinator, cycle
from vacagent.backends.base import BackendContext, CreateRequest
from vacagent.backends.fake import FakeBackend
from vacagent.clock import FakeClock, SteadyClock, SystemClock
from vacagent.config import Settings, SpaceSettings
from vacagent.backoff import FeedbackState
from vacagent.errors import CapacityExhausted, Permanent, QuotaExceeded, Temporary
from vacagent.model import MachineState, SpaceLimits
from vacagent.report import Reporter
from vacagent.state.atomic import write_text
from vacagent.state.lease import Fence, LeaseLost, SpaceLease

from conftest import T0, mt
from daemon_helpers import accounting


class Lab:
    """One space 's' with a fake cloud; `cycle()` runs the real cycle at the fake time."""

    def __init__(self, tmp_path, machinetypes=None, processors_limit=10, budget=None, boot_seconds=30,
                 delete_seconds=0, clock=None, **limits):
        self.tmp = tmp_path
        self.clock = clock or FakeClock(T0)
        script = tmp_path / "user_data.sh"
        script.write_text("#!/bin/sh\necho ##user_data_machinetype## on ##user_data_space## "
                          "q=##user_data_option_queue## ##user_data_nonsense##\n")
        default = {"a": {"user_data": str(script), "backoff_seconds": 100, "fizzle_seconds": 60,
                         "max_wallclock_seconds": 5000, "user_data_option_queue": "qa"}}
        self.space_settings = SpaceSettings(
            name="s", backend="fake", options={"boot_seconds": boot_seconds, "delete_seconds": delete_seconds},
            limits=SpaceLimits(processors_limit, creation_budget_processors=budget, **limits),
            machinetypes=machinetypes if machinetypes is not None else default,
            intent_grace_seconds=120, config_file=str(tmp_path / "vacagent.yaml"),
        )
        self.settings = Settings(site="site", state_dir=tmp_path / "state", spaces={"s": self.space_settings})
        self.backend = FakeBackend(BackendContext("site", "s", self.settings.state_dir,
                                                  self.space_settings.options, self.clock))
        self.space = cycle.build(self.settings, self.space_settings, Reporter(), self.clock, backend=self.backend)

    def cycle(self, advance=0):
        self.clock.advance(advance)
        return cycle.run_once(self.space, self.clock.now())

    @property
    def records(self):
        return self.space.store.records()

    def live(self, machinetype="a"):
        return sorted(n for n, m in self.backend.machines.items() if m.machinetype == machinetype)

    def stop_all(self, message="300 No more work available", machinetype="a"):
        for name in self.live(machinetype):
            self.backend.stop(name, message)

    def accounting(self):
        return accounting(self.settings.state_dir)


def test_first_cycle_creates_within_budget_with_intent_on_disk(tmp_path):
    lab = Lab(tmp_path, budget=3)
    d = lab.cycle()
    assert len(d["created"]["a"]) == 3
    assert set(lab.records) == set(lab.live()) == set(d["created"]["a"])
    for name, r in lab.records.items():
        assert r.backend_id == f"fake-{name}" and r.processors == 1 and r.created == T0
        assert (lab.space.store.machine_dir(name) / "jobfeatures" / "wall_limit_secs").read_text() == "5000\n"
    assert "creation budget" in d["held"]["a"]
    line = json.loads(lab.space.store.decisions_path.read_text().splitlines()[-1])
    assert line["created"] == d["created"]


def test_user_data_is_rendered(tmp_path):
    lab = Lab(tmp_path, budget=1)
    lab.cycle()
    (m,) = lab.backend.machines.values()
    assert m.user_data == "#!/bin/sh\necho a on s q=qa \n"


def test_ramp_up_to_limit_then_hold(tmp_path):
    lab = Lab(tmp_path, processors_limit=10, budget=4)
    counts = [sum(len(v) for v in lab.cycle(60)["created"].values()) for _ in range(4)]
    assert counts == [4, 4, 2, 0]
    assert "processors_limit reached (10/10)" in json.loads(
        lab.space.store.decisions_path.read_text().splitlines()[-1])["held"]["a"]


def test_feedback_loop_fizzle_backoff_probe_reset(tmp_path):
    lab = Lab(tmp_path, processors_limit=4, budget=4, boot_seconds=10)
    lab.cycle()
    lab.cycle(60)
    assert all(r.state == "running" for r in lab.records.values())
    # the image breaks: every machine stops with 500 after 200 s (a 300 would back off half as long)
    lab.clock.advance(200)
    lab.stop_all("500 Cannot mount /cvmfs")
    d = lab.cycle(1)
    assert len(d["deleted"]) == 4 and d["created"] == {}
    assert lab.space.store.feedback("a").consecutive_aborts == 1
    assert d["held"]["a"].startswith("backoff until")
    d = lab.cycle(60)  # the deleted machines are gone now: closed
    assert len(d["closed"]) == 4 and lab.records == {}
    assert [x["code"] for x in lab.accounting()] == [500] * 4
    assert all(x["aborted"] for x in lab.accounting())
    # backoff (100 s) over: exactly one probe
    d = lab.cycle(60)
    assert len(d["created"]["a"]) == 1 and "one probe" in d["held"]["a"]
    (probe,) = lab.live()
    d = lab.cycle(30)
    assert d["created"] == {} and d["held"]["a"].startswith(f"probe {probe}")
    # the probe fails too: escalates to 200 s
    lab.backend.stop(probe, "500 Cannot mount /cvmfs")
    lab.cycle(5)
    assert lab.space.store.feedback("a").consecutive_aborts == 2
    lab.cycle(1)
    d = lab.cycle(150)
    assert d["created"] == {}
    d = lab.cycle(60)
    assert len(d["created"]["a"]) == 1
    # this probe finds work: once it has run fizzle_seconds the backoff resets and creation opens
    d = lab.cycle(80)
    assert lab.space.store.feedback("a").consecutive_aborts == 0
    assert len(d["created"]["a"]) == 3


def test_quota_error_closes_record_holds_the_cycle_and_other_machinetypes_go_on(tmp_path, ):
    script = tmp_path / "ud"
    script.write_text("x")
    types = {n: {"user_data": str(script), "backoff_seconds": 100} for n in ("a", "b")}
    lab = Lab(tmp_path, machinetypes=types, budget=4)
    lab.backend.fail_next("create", QuotaExceeded("quota exceeded for cores"))
    d = lab.cycle()
    assert d["create_failed"] == ["a"]
    # the plan gave a and b two each; a's failure stops a for this cycle and
    # its unused attempt is not handed to b (the budget was spent on trying)
    assert lab.live("a") == [] and len(lab.live("b")) == 2
    # the cloud's refusal, not the project's abort: a backoff that counts no abort, and `why` says which rule
    assert lab.space.store.feedback("a").consecutive_aborts == 0
    assert d["held"]["a"].startswith("capacity: create refused: quota exceeded for cores; backoff until")
    (failed,) = [x for x in lab.accounting() if x["machinetype"] == "a"]
    assert failed["shutdown_message"].startswith("700 Failed to start: quota exceeded")
    assert failed["cause"] == "quota"
    assert set(lab.records) == set(lab.live("b"))
    d = lab.cycle(60)  # within backoff_seconds the cloud is not asked again
    assert "a" not in d["created"] and "the cloud's refusal" in d["held"]["a"]
    d = lab.cycle(40)  # then it is, at full rate (a, with nothing, comes first by its share)
    assert len(d["created"]["a"]) >= 3


@pytest.mark.parametrize("error, aborts", [(CapacityExhausted("space s is full"), 3), (Permanent("no such image"), 4)])
def test_a_capacity_refusal_does_not_escalate_a_probing_machinetype(tmp_path, error, aborts):
    """A machinetype probing after three empty-queue aborts whose probe the cloud refuses for want of room
    keeps its count and probes again after backoff_seconds; a permanent refusal (its image) escalates."""
    lab = Lab(tmp_path, budget=4)
    state = FeedbackState(3, T0 - 900, T0 - 10, T0 - 900, "a-x: 300 No more work available", "empty_queue")
    lab.space.store.save_feedback("a", state)
    lab.backend.fail_next("create", error)
    d = lab.cycle()
    assert d["create_failed"] == ["a"]
    assert lab.space.store.feedback("a").consecutive_aborts == aborts
    assert "a" not in lab.cycle(60)["created"]
    d = lab.cycle(60)  # past backoff_seconds
    assert len(d["created"].get("a", [])) == (1 if aborts == 3 else 0)  # the one probe, or held by the backoff


def test_temporary_error_keeps_the_record_until_grace(tmp_path):
    lab = Lab(tmp_path, budget=1)
    lab.backend.fail_next("create", Temporary("timed out"))
    d = lab.cycle()
    assert d["create_failed"] == ["a"] and lab.live() == []
    (name,) = lab.records
    assert lab.space.store.feedback("a").consecutive_aborts == 0
    d = lab.cycle(60)  # within intent_grace_seconds (120): counts as starting
    assert name in lab.records
    d = lab.cycle(61)
    assert name in d["closed"]
    (line,) = [x for x in lab.accounting() if x["machine"] == name]
    assert line["shutdown_message"] == "700 Failed to start" and line["aborted"]


def test_machine_created_without_record_is_adopted_not_duplicated(tmp_path):
    lab = Lab(tmp_path, processors_limit=2, budget=2)
    lab.backend.create_machine(CreateRequest("a-lost0001", mt("a"), ""))  # daemon died before recording
    d = lab.cycle()
    assert "a-lost0001" in lab.records and lab.records["a-lost0001"].adopted
    assert len(d["created"].get("a", [])) == 1  # the adopted machine counts against the limit
    assert len(lab.backend.machines) == 2


def test_listing_failure_fails_the_cycle_and_changes_nothing(tmp_path):
    lab = Lab(tmp_path, budget=2)
    lab.cycle()
    before = {n: r for n, r in lab.records.items()}
    lab.backend.fail_next("list", Temporary("503 from the API"))
    with pytest.raises(Temporary):
        lab.cycle(60)
    assert lab.records == before
    assert len(lab.cycle(1)["created"]["a"]) == 2


def test_delete_failure_is_retried(tmp_path):
    lab = Lab(tmp_path, budget=1, processors_limit=1, delete_retry_seconds=60)
    lab.cycle()
    lab.cycle(60)
    (name,) = lab.live()
    lab.backend.stop(name, "200 done")
    lab.backend.fail_next("delete", Temporary("busy"))
    lab.cycle(5)
    assert lab.records[name].deleting_since is not None and name in lab.backend.machines
    lab.cycle(30)
    assert name in lab.backend.machines  # not yet re-issued
    lab.cycle(31)
    assert name not in lab.backend.machines
    assert name in lab.cycle(1)["closed"]


def test_heartbeat_stale_machine_deleted_with_our_message(tmp_path):
    script = tmp_path / "ud"
    script.write_text("x")
    types = {"a": {"user_data": str(script), "fizzle_seconds": 60, "heartbeat_file": "heartbeat",
                   "heartbeat_seconds": 100}}
    lab = Lab(tmp_path, machinetypes=types, budget=1, processors_limit=1, boot_seconds=0)
    lab.cycle()
    (name,) = lab.live()
    hb = lab.space.store.machine_dir(name) / "joboutputs" / "heartbeat"
    hb.write_text("")
    os.utime(hb, (T0 + 50, T0 + 50))
    lab.cycle(150)
    assert lab.records[name].deleting_since is None
    d = lab.cycle(1)  # heartbeat 101 s old
    assert d["deleted"] == [{"machine": name, "reason": "700 Heartbeat not updated"}]
    message = lab.space.store.machine_dir(name) / "joboutputs" / "shutdown_message"
    assert message.read_text() == "700 Heartbeat not updated\n"


def test_removed_machinetype_runs_on_but_creates_no_more(tmp_path):
    lab = Lab(tmp_path, budget=2)
    lab.cycle()
    lab.space.settings = SpaceSettings(**{**lab.space_settings.__dict__, "machinetypes": {}})
    d = lab.cycle(60)
    assert d["created"] == {} and "not in the current configuration" in d["held"]["a"]
    assert len(lab.live()) == 2 and d["deleted"] == []


def test_invalid_definition_does_not_stop_the_others(tmp_path):
    script = tmp_path / "ud"
    script.write_text("x")
    types = {"a": {"user_data": str(script)}, "b": {"user_data": str(script), "fizzle_seconds": "long"}}
    lab = Lab(tmp_path, machinetypes=types, budget=4)
    d = lab.cycle()
    assert set(d["created"]) == {"a"}
    assert "fizzle_seconds" in d["definition_errors"]["b"]


def test_missing_user_data_backs_off_that_machinetype(tmp_path):
    lab = Lab(tmp_path, machinetypes={"a": {"user_data": str(tmp_path / "missing.sh")}}, budget=2)
    d = lab.cycle()
    assert d["create_failed"] == ["a"] and lab.live() == [] and lab.records == {}
    assert "cannot read" in lab.space.store.feedback("a").last_message


def test_wallclock_exceeded(tmp_path):
    lab = Lab(tmp_path, budget=1, processors_limit=1, boot_seconds=0)
    lab.cycle()
    (name,) = lab.live()
    d = lab.cycle(5001)
    assert d["deleted"] == [{"machine": name, "reason": "700 Exceeded max_wallclock_seconds"}]
    d = lab.cycle(1)
    (line,) = lab.accounting()
    assert line["shutdown_message"] == "700 Exceeded max_wallclock_seconds" and not line["aborted"]


def test_space_lock_keeps_two_cycles_apart(tmp_path):
    lab = Lab(tmp_path)
    import filelock

    with filelock.FileLock(str(lab.space.store.root / "cycle.lock")):
        with pytest.raises(cycle.SpaceBusy):
            lab.cycle()


def test_state_reported_by_backend(tmp_path):
    lab = Lab(tmp_path, budget=1, boot_seconds=100)
    lab.cycle()
    (name,) = lab.live()
    assert lab.records[name].state == MachineState.STARTING.value
    lab.cycle(100)
    assert lab.records[name].state == "running" and lab.records[name].started == T0 + 100


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_an_unreadable_record_is_set_aside_alone_and_its_machine_adopted(tmp_path, damage):
    lab = Lab(tmp_path, processors_limit=3, budget=3)
    lab.cycle()
    broken, *others = sorted(lab.records)
    path = lab.space.store.machine_dir(broken) / "machine.json"
    if damage == "truncated":
        path.write_text(path.read_text()[:40])
    else:
        path.unlink()
    fresh = cycle.build(lab.settings, lab.space_settings, Reporter(), lab.clock, backend=lab.backend)  # a restart
    lab.space = fresh
    lab.backend.stop(others[0], "300 No more work available")
    d = lab.cycle(60)
    (moved,) = (lab.space.store.root / "quarantine").iterdir()
    assert moved.name.startswith(broken + ".") and (moved / "joboutputs").is_dir()
    assert lab.records[broken].adopted  # managed again, as a machine with no record
    assert others[0] in {x["machine"] for x in d["deleted"]}  # every other machine goes on
    d = lab.cycle(60)
    assert others[0] in d["closed"] and {broken, *others[1:]} <= set(lab.records)


def test_fenced_off_between_intent_and_create_is_never_created_and_blames_no_project(tmp_path):
    """Superseded after writing the intent: no machine, and the next holder closes the record as
    `never created` (vacagent's own doing), not as the project's failure to start."""
    lab = Lab(tmp_path, processors_limit=1, budget=1)
    leases = SpaceLease(lab.settings.state_dir, "s")
    first = leases.claim("a", lab.clock.now(), 30.0, None)
    lab.space.actuator.fence = fence = Fence(leases, first, lab.clock, 10.0)
    real = fence.confirm

    def superseded_after_the_intent(action, name):
        if action == "creating" and lab.space.store.records().get(name):  # the intent is on disk
            leases.claim("b", lab.clock.now() + 40, 30.0, first)
        real(action, name)
    fence.confirm = superseded_after_the_intent
    with pytest.raises(LeaseLost):
        lab.cycle()
    assert lab.backend.machines == {}
    (name,) = lab.records
    assert lab.records[name].state == "intent"
    lab.space = cycle.build(lab.settings, lab.space_settings, Reporter(), lab.clock, backend=lab.backend)  # holder b
    lab.cycle(200)  # past intent_grace_seconds
    (line,) = lab.accounting()
    assert line["machine"] == name and line["reason"] == "never created"
    assert lab.space.store.feedback("a").consecutive_aborts == 0


class ForgetfulCloud(FakeBackend):
    """A cloud whose listing leaves out the machines named in `hidden` (as Nova's can), though
    asked for them one by one it finds them."""

    hidden: set = set()

    def list_machines(self):
        return [m for m in super().list_machines() if m.name not in self.hidden]

    def look_up(self, machines):
        everything = {m.name: m for m in super().list_machines()}
        return [everything[m.name] for m in machines if m.name in everything]


def test_a_machine_left_out_of_one_listing_is_looked_up_not_closed(tmp_path):
    lab = Lab(tmp_path, processors_limit=2, budget=2)
    lab.backend.__class__ = ForgetfulCloud
    lab.cycle()
    lab.cycle(60)  # both listed running
    kept, ended = lab.live()
    lab.backend.hidden = {kept, ended}
    del lab.backend.machines[ended]  # really gone, behind vacagent's back
    d = lab.cycle(60)
    assert [line["machine"] for line in lab.accounting()] == [ended]  # the gone one is closed
    assert kept in lab.records and kept not in {x["machine"] for x in d["deleted"]}


class Told(Reporter):
    def __init__(self):
        self.quarantined = []

    def feedback_quarantined(self, space, machinetype, reason, where):
        self.quarantined.append((machinetype, reason, where))


@pytest.mark.parametrize("damage", ['{"consecutive_aborts": 3, "backoff_un', '{"consecutive_aborts": "many"}',
                                    '[1, 2]', '{"kind": "gremlins"}'])
def test_unreadable_feedback_is_set_aside_and_the_machinetype_probes(tmp_path, damage):
    """Neither a silent fresh start (a broken project floods the lab) nor a crash: one probe."""
    lab = Lab(tmp_path, processors_limit=10, budget=10)
    lab.cycle()
    lab.stop_all()
    lab.cycle(60)
    lab.cycle(60)  # every machine found the queue empty, and is closed: backoff
    path = lab.space.store.machinetypes_dir / "a" / "feedback.json"
    assert json.loads(path.read_text())["consecutive_aborts"] >= 1
    path.write_text(damage)
    told = lab.space.actuator.reporter = Told()
    d = lab.cycle(1000)  # past the backoff
    ((machinetype, reason, where),) = told.quarantined
    assert machinetype == "a" and "feedback.json" in reason and "quarantine" in where
    assert len(d["created"].get("a", [])) == 1  # one probe, not a flood
    assert json.loads(path.read_text())["consecutive_aborts"] == 1  # a readable state again
    (moved,) = (lab.space.store.root / "quarantine").iterdir()
    assert moved.read_text() == damage


def test_a_record_that_cannot_be_moved_aside_stops_nothing(tmp_path):
    lab = Lab(tmp_path, processors_limit=3, budget=3)
    lab.cycle()
    broken, *others = sorted(lab.records)
    (lab.space.store.machine_dir(broken) / "machine.json").write_text("{")
    (lab.space.store.root / "quarantine").write_text("in the way")  # not a directory: the move fails
    lab.space = cycle.build(lab.settings, lab.space_settings, Reporter(), lab.clock, backend=lab.backend)  # restart
    lab.backend.stop(others[0], "300 No more work available")
    d = lab.cycle(60)
    assert others[0] in {x["machine"] for x in d["deleted"]}  # the cycle went on
    assert lab.records[broken].adopted  # and the damaged machine is managed again
    assert (lab.space.store.machines_dir / f".damaged-{broken}.{int(lab.clock.now())}" / "machine.json").exists()


def test_a_machines_own_message_wins_even_when_it_comes_after_the_decision(tmp_path):
    lab = Lab(tmp_path, processors_limit=1, budget=1, delete_seconds=100)
    lab.cycle()
    (name,) = lab.live()
    lab.cycle(60)
    d = lab.cycle(5000)  # past max_wallclock_seconds: vacagent ends it, with its own message
    assert name in {x["machine"] for x in d["deleted"]}
    assert lab.records[name].outcome.message == "700 Exceeded max_wallclock_seconds"
    # The machine's message arrives after the cycle read its joboutputs (the endpoint replaces the file).
    write_text(lab.space.store.machine_dir(name) / "joboutputs" / "shutdown_message", "200 Work done\n")
    d = lab.cycle(200)
    assert name in d["closed"]
    (line,) = [x for x in lab.accounting() if x["machine"] == name]
    assert line["shutdown_message"] == "200 Work done" and line["code"] == 200 and not line["aborted"]


class Host:
    """A host's two clocks, as a test moves them: the wall clock may step, the monotonic one only runs."""

    def __init__(self):
        self.wall, self.mono = T0, 1000.0

    def run(self, seconds):
        self.wall += seconds
        self.mono += seconds

    def steady(self, steps):
        return SteadyClock(on_step=steps.append, wall=lambda: self.wall, mono=lambda: self.mono)


@pytest.mark.parametrize("step", [7200, -3600])
def test_a_wall_clock_step_deletes_no_healthy_machine_and_misstates_no_run_time(tmp_path, step):
    script = tmp_path / "ud"
    script.write_text("x")
    types = {"a": {"user_data": str(script), "fizzle_seconds": 60, "heartbeat_file": "heartbeat",
                   "heartbeat_seconds": 100, "max_wallclock_seconds": 3000}}
    host, steps = Host(), []
    clock = host.steady(steps)
    lab = Lab(tmp_path, machinetypes=types, budget=1, processors_limit=1, boot_seconds=0, clock=clock)
    lab.clock.advance = host.run  # Lab.cycle(seconds): the host's time runs
    lab.cycle()
    (name,) = lab.live()
    hb = lab.space.store.machine_dir(name) / "joboutputs" / "heartbeat"
    for i in range(10):  # the endpoint stamps each heartbeat with the daemon's clock
        if i == 3:
            host.wall += step  # mid-run, the wall clock steps
        hb.write_text("")
        os.utime(hb, (clock.now(), clock.now()))
        d = lab.cycle(59)
        assert d["deleted"] == [], f"deleted after a wall clock step of {step} s"
    assert len(steps) == 1 and abs(steps[0] - step) < 1  # seen, and said once
    lab.backend.stop(name, "200 Done")
    lab.cycle(1)
    lab.cycle(1)
    (line,) = [x for x in lab.accounting() if x["machine"] == name]
    assert abs(line["ran_seconds"] - 591) < 591 * 0.02  # ran 591 s, whatever the step (slew at most 1%)


def test_steady_clock_follows_small_corrections_and_slews_after_a_step():
    host, steps = Host(), []
    clock = host.steady(steps)
    host.run(10)
    host.wall += 2  # within tolerance: followed
    assert clock.now() == T0 + 12
    host.wall -= 3600
    host.run(100)
    assert clock.now() == pytest.approx(T0 + 112 - 1)  # slewed by 1% of 100 s, never jumped
    host.run(100)
    clock.now()
    assert len(steps) == 1 and steps[0] == -3600
    assert clock.monotonic() == host.mono
    assert clock.from_wall(host.wall) == pytest.approx(clock.now())


def test_the_loop_sleeps_by_the_monotonic_clock_when_the_wall_clock_steps_back(tmp_path):
    host = Host()
    clock = SystemClock()  # the plain wall clock: the loop must not time its cycles by it
    clock.now, clock.monotonic = (lambda: host.wall), (lambda: host.mono)
    lab = Lab(tmp_path, budget=1, clock=clock)
    stop = threading.Event()
    slept = []

    def sleep(seconds, until=None):
        slept.append(seconds)
        host.run(seconds)
        stop.set()

    clock.sleep = sleep
    original = lab.backend.list_machines

    def slow_listing():  # the cycle takes 2 s, during which the wall clock steps back an hour
        host.run(2)
        host.wall -= 3600
        return original()

    lab.backend.list_machines = slow_listing
    coordinator.SpaceLoop(lab.space, 30, clock, stop).run()
    assert slept == [pytest.approx(28)]
