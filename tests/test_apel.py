"""APEL accounting records: exact fields, where they go, and exactly one per machine across SIGKILL and restart."""

import random
import shutil
import signal
import time
from pathlib import Path

import pytest

from vacagent import apel
from vacagent.apel import ApelSettings
from vacagent.crashpoints import EXIT_STATUS
from vacagent.model import MachineRecord, MachineType, Outcome

from conftest import T0
from daemon_helpers import accounting, apel_records, faults, kill_site, start, wait_for, write_site
from test_cycle import Lab

MT = MachineType("lhcb-prod", processors=8, fizzle_seconds=600, mb_per_processor=2000,
                 extra={"hs06_per_processor": 12.5, "accounting_fqan": "/lhcb/Role=pilot/Capability=NULL"})
RECORD = MachineRecord("lhcb-prod-1f2e3d4c", "gridpp.example.org", "lhcb-prod", 8, T0, started=T0 + 95.6)
OUTCOME = Outcome("200 Intended work completed ok", 200, 7200.9, False, "stopped", T0 + 7300)


def test_exact_fields_of_a_known_machine():
    text = apel.record("gridpp.example.org", "vac01.example.org", RECORD, OUTCOME, MT,
                       ApelSettings(gocdb_sitename="UKI-EXAMPLE"))
    assert text == (
        "APEL-individual-job-message: v0.3\n"
        "Site: UKI-EXAMPLE\n"
        "SubmitHost: gridpp.example.org/vacagent-vac01.example.org\n"
        "LocalJobId: lhcb-prod-1f2e3d4c\n"
        "LocalUserId: lhcb-prod-1f2e3d4c\n"
        "Queue: lhcb-prod\n"
        "GlobalUserName: /DC=org/DC=example/DC=gridpp\n"
        "FQAN: /lhcb/Role=pilot/Capability=NULL\n"
        "WallDuration: 7200\n"
        "CpuDuration: 7200\n"
        "Processors: 8\n"
        "NodeCount: 1\n"
        "InfrastructureDescription: APEL-VACAGENT\n"
        "InfrastructureType: grid\n"
        f"StartTime: {int(T0) + 95}\n"
        f"EndTime: {int(T0) + 95 + 7200}\n"
        "MemoryReal: 16384000\n"
        "MemoryVirtual: 16384000\n"
        "ServiceLevelType: HEPSPEC\n"
        "ServiceLevel: 100.0\n"
        "%%\n"
    )


def test_no_site_no_fqan_no_hs06_and_who_gets_no_record():
    plain = MachineType("lhcb-prod", processors=8, fizzle_seconds=600)
    text = apel.record("lab", "h", RECORD, OUTCOME, plain, ApelSettings())
    assert "Site: lab\n" in text and "FQAN" not in text and "ServiceLevel: 1.0\n" in text
    short = Outcome("300 No more work available", 300, 599.0, True, "stopped", T0 + 700)
    assert apel.record("lab", "h", RECORD, short, MT, ApelSettings()) is None  # ran less than fizzle_seconds
    never = MachineRecord("x", "lab", "lhcb-prod", 8, T0)
    assert apel.record("lab", "h", never, OUTCOME, MT, ApelSettings()) is None


def test_placement_is_a_dirq_queue_and_fixed_by_the_close():
    where = apel.placement(ApelSettings(gocdb_sitename="S", outgoing="/o"), Path("/s"), T0, "0123abcd99887766")
    assert where["name"] == "20270115/0800000123abcd"
    assert where["outgoing"] == "/o/20270115/0800000123abcd"
    assert where["archive"] == "/s/apel-archive/20270115/0800000123abcd"
    assert len(where["name"].split("/")[1]) == 14 and where["staging"].startswith("/o/.staging/")
    assert apel.placement(ApelSettings(), Path("/s"), T0, "0123abcd")["outgoing"] is None


def test_through_the_real_cycle(tmp_path):
    lab = Lab(tmp_path, budget=2, processors_limit=2)
    lab.space.actuator.apel = ApelSettings(gocdb_sitename="UKI-TEST")
    lab.cycle()
    lab.cycle(100)  # running since T0+30
    first, second = lab.live()
    lab.backend.stop(first, "200 Intended work completed ok")  # ran 70 s, fizzle_seconds is 60: a record
    lab.clock.advance(-60)
    lab.backend.stop(second, "300 No more work available")  # ran 10 s: fizzled, no record
    lab.clock.advance(60)
    lab.cycle(60)
    lab.cycle(60)
    state = lab.settings.state_dir
    (archived,) = apel_records(state / "apel-archive")
    assert apel_records(state / "apel-outgoing") == [archived]
    assert (archived["LocalJobId"], archived["Site"], archived["WallDuration"]) == (first, "UKI-TEST", "70")
    assert not list((state / "apel-outgoing" / ".staging").iterdir())


@pytest.fixture
def site():
    name = f"a{random.randrange(16**8):08x}.test"
    yield name
    kill_site(name)


def settle(vacagent_bin, config, log, state, more=4):
    """Run the daemon until `more` further machines are accounted, then stop it."""
    daemon = start(vacagent_bin, config, log)
    try:
        before = len(accounting(state))
        wait_for(lambda: len(accounting(state)) >= before + more, timeout=90)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0


@pytest.mark.slow
def test_one_record_per_machine_across_sigkill_and_restart(tmp_path, site, vacagent_bin):
    config = write_site(tmp_path, site, processors_limit=2, budget=2, seconds="1")
    state, log = tmp_path / "state", tmp_path / "daemon.log"
    daemon = start(vacagent_bin, config, log)
    wait_for(lambda: len(accounting(state)) >= 3, timeout=90)
    time.sleep(random.uniform(0, 1.0))
    daemon.send_signal(signal.SIGKILL)  # anywhere: mid-cycle, mid-close, mid-record
    daemon.wait(timeout=30)
    settle(vacagent_bin, config, log, state)
    found = faults(site, state, 5)
    assert not any(found.values()), found
    ran = [line for line in accounting(state) if line["started"] is not None]
    assert len(apel_records(state / "apel-archive")) == len(ran) >= 4


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after_apel_archive", "after_apel_outgoing"])
def test_a_record_ssmsend_took_is_never_sent_again(tmp_path, site, vacagent_bin, point):
    """Killed after archiving a record, before or after publishing it; meanwhile ssmsend takes (deletes)
    what was published.  The restart publishes a staged record once, and nothing already taken."""
    config = write_site(tmp_path, site, processors_limit=2, budget=2, seconds="1")
    state, log = tmp_path / "state", tmp_path / "daemon.log"
    daemon = start(vacagent_bin, config, log, env={"VACAGENT_CRASH_AT": point})
    assert daemon.wait(timeout=60) == EXIT_STATUS
    outgoing = state / "apel-outgoing"
    taken = apel_records(outgoing)
    for day in outgoing.glob("[0-9]*"):
        shutil.rmtree(day)  # what ssmsend does with what it sent
    staged = list((outgoing / ".staging").iterdir())
    assert len(staged) == (point == "after_apel_archive")
    settle(vacagent_bin, config, log, state)
    sent = [r["LocalJobId"] for r in taken + apel_records(outgoing)]
    ran = [line["machine"] for line in accounting(state) if line["started"] is not None]
    assert sorted(sent) == sorted(ran) and len(set(sent)) == len(sent)
    assert not any(p.exists() for p in staged)
