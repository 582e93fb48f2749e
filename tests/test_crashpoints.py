"""The real daemon killed at each named crash point (VACAGENT_CRASH_AT), then restarted:
nothing leaked, nothing closed twice, every finished machine accounted exactly once,
and a crash of vacagent's own is never the project's abort."""

import json
import random
import signal
import time

import pytest

from daemon_helpers import accounting, faults, kill_site, start, wait_for, write_site
from vacagent.crashpoints import EXIT_STATUS, POINTS

pytestmark = pytest.mark.slow
GRACE = 2


@pytest.fixture
def site():
    name = f"c{random.randrange(16**8):08x}.test"
    yield name
    kill_site(name)


def crash_then_recover(tmp_path, site, vacagent_bin, point):
    config = write_site(tmp_path, site, processors_limit=2, budget=2, seconds="1", intent_grace=GRACE)
    state, log = tmp_path / "state", tmp_path / "daemon.log"
    daemon = start(vacagent_bin, config, log, env={"VACAGENT_CRASH_AT": point})
    try:
        assert daemon.wait(timeout=60) == EXIT_STATUS, f"the daemon never reached {point}"
    finally:
        if daemon.poll() is None:
            daemon.kill()
    crashed = {"accounting": accounting(state), "journal": sorted((state / "spaces/lab/closing").glob("*"))}
    daemon = start(vacagent_bin, config, log)
    try:
        settled = time.monotonic() + GRACE + 3
        wait_for(lambda: time.monotonic() > settled and len(accounting(state)) >= len(crashed["accounting"]) + 2,
                 timeout=60)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    found = faults(site, state, GRACE)
    assert not any(found.values()), f"after a crash at {point}: {found}"
    assert "Traceback" not in log.read_text()
    return state, log, crashed


@pytest.mark.parametrize("point", sorted(set(POINTS) - {"after_intent", "mid_append"}))
def test_a_crash_at_any_point_is_completed_by_the_restart(tmp_path, site, vacagent_bin, point):
    crash_then_recover(tmp_path, site, vacagent_bin, point)


def test_a_close_interrupted_after_its_journal_is_accounted_exactly_once(tmp_path, site, vacagent_bin):
    state, _, crashed = crash_then_recover(tmp_path, site, vacagent_bin, "after_accounting")
    (journal,) = crashed["journal"]  # the line was written, the journal not yet removed
    name = journal.stem
    assert [line["machine"] for line in crashed["accounting"]].count(name) == 1
    assert [line["machine"] for line in accounting(state)].count(name) == 1


def test_a_torn_accounting_line_is_cut_and_written_whole(tmp_path, site, vacagent_bin):
    state, log, crashed = crash_then_recover(tmp_path, site, vacagent_bin, "mid_append")
    (journal,) = crashed["journal"]
    assert "torn last line removed" in log.read_text()
    text = "".join(p.read_text() for p in (state / "accounting").glob("*.jsonl"))
    assert all(json.loads(line) for line in text.splitlines())  # every line whole
    assert [line["machine"] for line in accounting(state)].count(journal.stem) == 1


def test_a_crash_before_the_create_is_not_the_projects_abort(tmp_path, site, vacagent_bin):
    state, _, _ = crash_then_recover(tmp_path, site, vacagent_bin, "after_intent")
    (never,) = [line for line in accounting(state) if line["reason"] == "never created"]
    assert not never["aborted"] and never["code"] is None and never["started"] is None
    path = state / "spaces/lab/machinetypes/churn/feedback.json"
    feedback = json.loads(path.read_text()) if path.exists() else {}
    assert not feedback.get("consecutive_aborts") and not feedback.get("backoff_until")
