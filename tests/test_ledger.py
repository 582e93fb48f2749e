"""The useful-time ledger: exact arithmetic on scripted machine lives, then through the real cycle."""

import pytest

from vacagent import ledger
from vacagent.ledger import PHASES, Life
from vacagent.model import MachineRecord, Outcome

from conftest import T0
from test_cycle import Lab

# (case, life, now, {phase: machine-seconds}) with times relative to T0.
CASES = [
    ("worked then 300, idle tail reported",
     Life(0, 2, started=60, ran_seconds=1000, deleting_since=1100, end=1130, ended=True, code=300, job_seconds=700,
          fizzle_seconds=600),
     2000, {"starting": 60, "working": 700, "idle": 300, "draining": 70}),
    ("300 without a report: the last fizzle_seconds were idle",
     Life(0, 1, started=60, ran_seconds=1000, end=1100, ended=True, code=300, fizzle_seconds=600),
     2000, {"starting": 60, "working": 400, "idle": 600, "draining": 40}),
    ("fizzled: its whole run was idle",
     Life(0, 1, started=30, ran_seconds=200, end=300, ended=True, code=300, fizzle_seconds=600),
     2000, {"starting": 30, "idle": 200, "draining": 70}),
    ("fizzled with a 200: idle too",
     Life(0, 1, started=30, ran_seconds=200, end=300, ended=True, code=200, fizzle_seconds=600),
     2000, {"starting": 30, "idle": 200, "draining": 70}),
    ("200 without a report: all working",
     Life(0, 4, started=100, ran_seconds=5000, end=5200, ended=True, code=200, fizzle_seconds=600),
     9000, {"starting": 100, "working": 5000, "draining": 100}),
    ("a report wins over the estimate, capped at the run",
     Life(0, 1, started=100, ran_seconds=500, end=700, ended=True, code=200, job_seconds=9999, fizzle_seconds=600),
     9000, {"starting": 100, "working": 500, "draining": 100}),
    ("stale heartbeat: the whole run lost, whatever it reported",
     Life(0, 1, started=50, ran_seconds=4000, deleting_since=4050, end=4060, ended=True, code=700, job_seconds=3000),
     9000, {"starting": 50, "lost": 4000, "draining": 10}),
    ("a 500 abort is lost",
     Life(0, 1, started=50, ran_seconds=100, end=200, ended=True, code=500), 9000,
     {"starting": 50, "lost": 100, "draining": 50}),
    ("ended without a message: lost",
     Life(0, 1, started=50, ran_seconds=100, end=150, ended=True, code=None), 9000, {"starting": 50, "lost": 100}),
    ("never ran: its boot was lost",
     Life(0, 1, deleting_since=3600, end=3660, ended=True, code=700), 9000, {"lost": 3600, "draining": 60}),
    ("create refused: nothing at all", Life(0, 1, end=0, ended=True, code=700), 9000, {}),
    ("live, still booting", Life(0, 1), 45, {"starting": 45}),
    ("live, running, reporting", Life(0, 1, started=60, job_seconds=100), 500,
     {"starting": 60, "working": 100, "idle": 340}),
    ("live, running, no report: working so far", Life(0, 1, started=60), 500, {"starting": 60, "working": 440}),
    ("live, being deleted", Life(0, 1, started=60, deleting_since=400, job_seconds=300), 500,
     {"starting": 60, "working": 300, "idle": 40, "draining": 100}),
    ("reclaimed (100): what it did not report was idle",
     Life(0, 1, started=60, ran_seconds=900, end=960, ended=True, code=100, job_seconds=600), 9000,
     {"starting": 60, "working": 600, "idle": 300}),
]


@pytest.mark.parametrize("case, life, now, expected", CASES, ids=[c[0] for c in CASES])
def test_every_second_in_exactly_one_phase(case, life, now, expected):
    cut = ledger.spans(life, now)
    assert ledger.seconds(cut) == {p: float(expected.get(p, 0)) for p in PHASES}
    # consecutive, from the intent to the end (or now): nothing counted twice, nothing left out
    end = life.end if life.end is not None else now
    assert [s.start for s in cut[1:]] == [s.end for s in cut[:-1]]
    if cut:
        assert (cut[0].start, cut[-1].end) == (life.created, end)
    assert sum(s.seconds for s in cut) == end - life.created


def test_processor_seconds_and_fraction():
    life = CASES[0][1]
    fields = ledger.accounting_fields(life, 2000)
    assert fields["ledger_processor_seconds"] == {"starting": 120, "working": 1400, "idle": 600, "lost": 0,
                                                  "draining": 140}
    assert ledger.fraction(fields["ledger_processor_seconds"]) == pytest.approx(1400 / 2260)
    assert ledger.fraction(dict.fromkeys(PHASES, 0.0)) is None
    assert [s[0] for s in fields["ledger_spans"]] == ["starting", "working", "idle", "draining"]
    assert fields["fizzled"] is False and ledger.accounting_fields(CASES[2][1], 2000)["fizzled"] is True


def test_clip_to_a_window():
    cut = ledger.spans(CASES[0][1], 2000)  # starting 0-60, working 60-760, idle 760-1060, draining 1060-1130
    inside = ledger.seconds(ledger.clip(cut, 500, 900))
    assert inside == {"starting": 0, "working": 260, "idle": 140, "lost": 0, "draining": 0}
    assert ledger.clip(cut, 2000, None) == ()


def test_records_become_lives():
    outcome = Outcome("300 No more work available", 300, 640.0, True, "stopped", T0 + 700)
    record = MachineRecord("a-1", "s", "a", 2, T0, started=T0 + 60, deleting_since=T0 + 720, outcome=outcome)
    life = ledger.closed_life(record, outcome, T0 + 760, job_seconds=500, fizzle_seconds=60)
    assert ledger.seconds(ledger.spans(life, T0 + 9999)) == {
        "starting": 60, "working": 500, "idle": 140, "lost": 0, "draining": 60}
    live = ledger.open_life(MachineRecord("a-2", "s", "a", 1, T0, started=T0 + 30), None, 60)
    assert ledger.seconds(ledger.spans(live, T0 + 100))["working"] == 70


def test_through_the_real_cycle_into_accounting_and_live_totals(tmp_path):
    """boot 30 s; the machine reports 100 s of jobs, stops with 300 at +200, is deleted at +240, gone at +300."""
    lab = Lab(tmp_path, budget=1, processors_limit=1, delete_seconds=60)
    lab.cycle()  # creates at T0
    (name,) = lab.live()
    joboutputs = lab.space.store.machine_dir(name) / "joboutputs"
    decision = lab.cycle(120)  # T0+120: running since T0+30, no report yet: working so far
    assert decision["ledger_live"]["a"] == {"starting": 30, "working": 90, "idle": 0, "lost": 0, "draining": 0}
    (joboutputs / "job_seconds").write_text("100\n")
    lab.clock.advance(80)
    lab.backend.stop(name, "300 No more work available")  # at T0+200
    decision = lab.cycle(40)  # T0+240: stopped -> deletion asked
    assert decision["ledger_live"]["a"] == {"starting": 30, "working": 100, "idle": 70, "lost": 0, "draining": 40}
    lab.cycle(60)  # T0+300: gone -> closed
    (line,) = lab.accounting()
    assert line["job_seconds"] == 100 and line["fizzled"] is False
    assert line["ledger_seconds"] == {"starting": 30, "working": 100, "idle": 70, "lost": 0, "draining": 100}
    assert line["ledger_spans"][0] == ["starting", T0, T0 + 30]
    assert line["ledger_spans"][-1] == ["draining", T0 + 200, T0 + 300]
