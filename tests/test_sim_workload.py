"""Job arrivals: every workload item kind, durations and distributions."""

import gzip
import random

import pytest

from vacagent.sim import workload
from vacagent.sim.distributions import Distribution, seconds, span
from vacagent.sim.workload import Job, WorkloadError


@pytest.mark.parametrize("value, expected", [
    (90, 90.0), (1.5, 1.5), ("90s", 90.0), ("15m", 900.0), ("1h30m", 5400.0), ("2d", 172800.0), ("0.5h", 1800.0),
])
def test_seconds(value, expected):
    assert seconds(value) == expected


@pytest.mark.parametrize("value, expected", [(45, "45s"), (725, "12m05s"), (12000, "3h20m"), (187200, "2d04h")])
def test_span(value, expected):
    assert span(value) == expected


def test_distributions_sample_within_their_bounds_and_report_their_mean():
    rng = random.Random(1)
    uniform = Distribution.parse({"distribution": "uniform", "min": "1m", "max": "3m"})
    assert all(60 <= uniform.sample(rng) <= 180 for _ in range(1000))
    assert uniform.mean == 120
    clipped = Distribution.parse({"distribution": "lognormal", "median": "1h", "sigma": 2, "max": "2h", "min": "1m"})
    assert all(60 <= clipped.sample(rng) <= 7200 for _ in range(1000))
    assert Distribution.parse({"distribution": "exponential", "mean": 100}).mean == 100
    assert Distribution.parse("2m").sample(rng) == 120 and Distribution.parse("2m").mean == 120


def jobs(item, horizon=86400, processors=1, base=None, seed=1):
    return list(workload.generate(item, "p", processors, horizon, base, random.Random(seed)))


def test_burst_spreads_its_jobs_evenly_and_drops_those_after_the_end():
    got = jobs({"kind": "burst", "at": "1h", "jobs": 4, "over": "4m", "duration": "10m"}, horizon=3600 + 150)
    assert got == [Job(3600, "p", 1, 600), Job(3660, "p", 1, 600), Job(3720, "p", 1, 600)]


def test_steady_stream_has_the_asked_rate_within_its_window():
    got = jobs({"kind": "steady", "start": "1h", "end": "11h", "jobs_per_hour": 100, "duration": 60, "processors": 2})
    assert all(3600 <= j.arrival < 39600 and j.processors == 2 and j.duration == 60 for j in got)
    assert 900 < len(got) < 1100  # Poisson: 1000 expected, sd 32
    assert jobs({"kind": "steady", "jobs_per_hour": 100, "duration": 60}, seed=7) == \
        jobs({"kind": "steady", "jobs_per_hour": 100, "duration": 60}, seed=7)


def test_inline_jobs_are_arrival_processors_duration():
    got = jobs({"kind": "jobs", "jobs": [[0, 1, 30], [10, 2, 40.5], [99, 1, 5]]}, horizon=99)
    assert got == [Job(0, "p", 1, 30), Job(10, "p", 2, 40.5)]


def test_csv_with_header_and_comments_and_an_offset(tmp_path):
    (tmp_path / "jobs.csv").write_text("arrival_seconds,processors,duration_seconds\n# a comment\n0,1,60\n30,2,90\n")
    got = jobs({"kind": "csv", "file": "jobs.csv", "offset": 100}, base=tmp_path)
    assert got == [Job(100, "p", 1, 60), Job(130, "p", 2, 90)]


@pytest.mark.parametrize("text, where", [
    ("0,1,60\n5,x,60\n", "jobs.csv:2"),
    ("0,1\n", "jobs.csv:1"),
    ("0,1,60\n-5,1,60\n", "jobs.csv:2"),
])
def test_csv_errors_name_file_and_line(tmp_path, text, where):
    (tmp_path / "jobs.csv").write_text(text)
    with pytest.raises(WorkloadError, match=where):
        jobs({"kind": "csv", "file": "jobs.csv"}, base=tmp_path)


def test_missing_csv_file(tmp_path):
    with pytest.raises(WorkloadError, match="nope.csv: cannot read"):
        jobs({"kind": "csv", "file": "nope.csv"}, base=tmp_path)


SWF = """\
; Version: 2.2
; Acknowledge: somebody
1 1000 5 300 1 -1 -1 1 -1 -1 1 1 7 -1 -1 -1 -1 -1
2 1100 5 -1 1 -1 -1 1 -1 -1 5 1 7 -1 -1 -1 -1 -1
3 1200 5 400 -1 -1 -1 4 -1 -1 1 1 8 -1 -1 -1 -1 -1
4 1300 5 500 2 -1 -1 2 -1 -1 1 1 7 -1 -1 -1 -1 -1
5 9000 5 600 1 -1 -1 1 -1 -1 1 1 7 -1 -1 -1 -1 -1
"""


@pytest.mark.parametrize("compressed", [False, True])
def test_swf_slice_by_group_and_window_rebased_on_the_first_job(tmp_path, compressed):
    path = tmp_path / ("t.swf.gz" if compressed else "t.swf")
    path.write_bytes(gzip.compress(SWF.encode()) if compressed else SWF.encode())
    every = jobs({"kind": "swf", "file": path.name, "to": 8000}, base=tmp_path)
    # job 2 has no run time; job 3 has no allocated processors, so its requested 4 count; job 5 is after `to`
    assert every == [Job(0, "p", 1, 300), Job(200, "p", 4, 400), Job(300, "p", 2, 500)]
    sliced = jobs({"kind": "swf", "file": path.name, "groups": [7], "from": 250, "to": 9000, "offset": 10},
                  base=tmp_path)
    assert sliced == [Job(60, "p", 2, 500), Job(7760, "p", 1, 600)]


def test_swf_errors_name_file_and_line(tmp_path):
    (tmp_path / "bad.swf").write_text("; header\n1 2 3\n")
    with pytest.raises(WorkloadError, match=r"bad.swf:2: not an SWF job line"):
        jobs({"kind": "swf", "file": "bad.swf", "to": 10}, base=tmp_path)
    with pytest.raises(WorkloadError, match="no such trace file"):
        jobs({"kind": "swf", "file": "missing.swf", "to": 10}, base=tmp_path)
