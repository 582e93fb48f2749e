"""`vacagent health` on state directories written by scripted runs with known figures, and its verdict."""

import json
import os
from dataclasses import replace

import pytest

from vacagent import cli, health
from vacagent.backends.fake import FakeBackend
from vacagent.errors import CapacityExhausted

from conftest import T0
from test_cycle import Lab

WEEK = 7 * 86400
W1, W2 = health.week_of(T0), health.week_of(T0 + WEEK)


class SlowCreates(FakeBackend):
    """The fake cloud, whose creates take `create_seconds` of the (fake) clock."""

    create_seconds = 0.0

    def create_machine(self, request):
        self.clock.advance(self.create_seconds)
        return super().create_machine(request)


def a_week(lab, start, boot_seconds=30, create_seconds=0.0, refusals=0):
    """10 machines created at `start`, booting in boot_seconds (after a create taking create_seconds),
    stopping with 200 at start + 600, deleted and closed; then `refusals` capacity refusals."""
    lab.clock.advance(start - lab.clock.now())
    lab.backend.boot_seconds, lab.backend.create_seconds = boot_seconds, create_seconds
    configured(lab, True)
    lab.cycle()
    lab.cycle(300)
    configured(lab, False)  # no more machines this week (its record keeps the running ones going)
    lab.clock.advance(start + 600 - lab.clock.now())
    lab.stop_all("200 Intended work completed ok")
    lab.cycle(60)
    lab.cycle(60)
    configured(lab, True)
    for _ in range(refusals):  # the first create of a cycle refused: nothing more that cycle, then a backoff
        lab.backend.fail_next("create", CapacityExhausted("no room"))
        lab.cycle(1000)  # past the backoff: one probe
    configured(lab, False)


def configured(lab, on):
    """Machinetype `a` in the configuration, or not (then held: nothing new is created)."""
    lab.space.settings = replace(lab.space.settings, machinetypes=lab.space_settings.machinetypes if on else {})


def lab_of(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    lab = Lab(tmp_path, processors_limit=10, budget=10)
    lab.backend.__class__ = SlowCreates
    return lab


def test_figures_of_a_scripted_week(tmp_path):
    lab = lab_of(tmp_path)
    a_week(lab, T0, boot_seconds=30, create_seconds=0.5, refusals=2)
    report = health.week_health(lab.settings.state_dir, W1, lab.clock.now())
    # the k-th create of the cycle ends 0.5 k s after the cycle's time: boots of 30.5, 31, ..., 35 s
    assert report["boot_seconds"] == {"machines": 10, "median": 32.5, "p95": 35}
    mt = report["machinetypes"]["a"]
    assert (mt["machines"], mt["aborted"], mt["fizzled"]) == (12, 2, 0)  # the two refused creates are aborts
    create = report["api"]["create"]
    assert (create["calls"], create["errors"], create["outcomes"]) == (12, 2, {"capacity": 2, "ok": 10})
    assert create["mean_seconds"] == pytest.approx(0.5) and create["max_seconds"] == 0.5  # refused ones too
    assert report["refusals"]["capacity"] == 2 and report["refusals"]["capacity_rate"] == pytest.approx(2 / 12)
    assert report["api"]["list"]["error_rate"] == 0
    assert report["backoff_seconds"]["a"] > 0  # the refusals put it into backoff
    # machine k: starting 30 + 0.5k, working until 600, draining to its close at 720
    assert report["useful_fraction"] == pytest.approx(sum(570 - 0.5 * k for k in range(1, 11)) / (10 * 720))


def test_verdict_flips_when_a_figure_moves_past_its_threshold(tmp_path):
    same, slower = lab_of(tmp_path / "same"), lab_of(tmp_path / "slower")
    for lab, boot in ((same, 40), (slower, 120)):
        a_week(lab, T0, boot_seconds=30)
        a_week(lab, T0 + WEEK, boot_seconds=boot)
    now = T0 + 2 * WEEK
    verdict = health.compare(health.week_health(same.settings.state_dir, W2, now),
                             health.week_health(same.settings.state_dir, W1, now))
    assert verdict["comparable"] and verdict["moved"] == []  # +10 s is within the 30 s threshold
    verdict = health.compare(health.week_health(slower.settings.state_dir, W2, now),
                             health.week_health(slower.settings.state_dir, W1, now))
    assert not verdict["comparable"]
    moved = {c["figure"]: c for c in verdict["moved"]}
    assert moved["boot latency median (s)"]["from"] == 30 and moved["boot latency median (s)"]["to"] == 120
    assert "boot latency p95 (s)" in moved


def test_threshold_table():
    assert not health.moved("boot_median", 30, 60)  # +30 s: not more than 30 s
    assert health.moved("boot_median", 30, 61)
    assert not health.moved("boot_median", 100, 140)  # +40 s but +40% < 50%
    assert health.moved("rate", 0.10, 0.21) and not health.moved("rate", 0.10, 0.19)


def test_weeks():
    assert health.week_range("2027-W02")[0] == health.week_range("2027-w02")[0]
    start, end = health.week_range("2027-W02")
    assert health.week_of(start) == "2027-W02" and health.week_of(end) == "2027-W03"
    assert health.previous_week("2027-W01") == "2026-W53"
    with pytest.raises(ValueError, match="ISO week"):
        health.week_range("2027-13")


def test_health_command(tmp_path, capsys):
    lab = lab_of(tmp_path)
    a_week(lab, T0, boot_seconds=30)
    a_week(lab, T0 + WEEK, boot_seconds=300)
    state = str(lab.settings.state_dir)
    assert cli.main(["health", "--state-dir", state, "--week", W2, "--compare", W1]) == 0
    text = capsys.readouterr().out
    assert f"verdict: {W2} and {W1} are NOT comparable:" in text
    assert "boot latency median (s) moved from 30 to 300" in text
    assert cli.main(["health", "--state-dir", state, "--week", W2, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compared_with"]["week"] == W1 and report["verdict"]["comparable"] is False
    assert cli.main(["health", "--state-dir", state, "--week", "soon"]) == 2


def test_decision_records_carry_heartbeat_lateness(tmp_path):
    (tmp_path / "ud").write_text("#!/bin/sh\n")
    mts = {"a": {"user_data": str(tmp_path / "ud"), "fizzle_seconds": 60, "heartbeat_file": "heartbeat",
                 "heartbeat_seconds": 300}}
    lab = Lab(tmp_path, machinetypes=mts, processors_limit=2, budget=2)
    lab.cycle()
    fresh, stale = lab.live()
    for name, at in ((fresh, T0 + 200), (stale, T0 + 30)):
        beat = lab.space.store.machine_dir(name) / "joboutputs" / "heartbeat"
        beat.write_text("")
        os.utime(beat, (at, at))
    decision = lab.cycle(250)  # T0+250: both running since T0+30, past fizzle; ages 50 and 220
    assert decision["heartbeats"] == {"a": {"machines": 2, "late": 0, "max_age": 220}}
    decision = lab.cycle(100)  # T0+350: ages 150 and 320 (> 300: late, and deleted for it)
    assert decision["heartbeats"] == {"a": {"machines": 2, "late": 1, "max_age": 320}}
    assert decision["deleted"] == [{"machine": stale, "reason": "700 Heartbeat not updated"}]
