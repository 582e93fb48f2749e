"""The endpoint's request-path checks (pure): everything is refused before
any file is looked up, unless the path is exactly
/machines/<space>/<machine>/<kind>/<file> in plain characters."""

import pytest

from vacagent.endpoint.paths import Refused, Target, machine_urls, parse

M = "/machines/lab/proj-a-0a1b2c3d"


@pytest.mark.parametrize(
    "raw, target",
    [
        (f"{M}/joboutputs/heartbeat", Target("lab", "proj-a-0a1b2c3d", "joboutputs", "heartbeat")),
        (f"{M}/joboutputs/shutdown_message", Target("lab", "proj-a-0a1b2c3d", "joboutputs", "shutdown_message")),
        (f"{M}/joboutputs/job.log-1_A", Target("lab", "proj-a-0a1b2c3d", "joboutputs", "job.log-1_A")),
        (f"{M}/joboutputs/.hidden", Target("lab", "proj-a-0a1b2c3d", "joboutputs", ".hidden")),
        (f"{M}/joboutputs/...", Target("lab", "proj-a-0a1b2c3d", "joboutputs", "...")),
        (f"{M}/machinefeatures/total_cpu", Target("lab", "proj-a-0a1b2c3d", "machinefeatures", "total_cpu")),
        (f"{M}/jobfeatures/{'x' * 64}", Target("lab", "proj-a-0a1b2c3d", "jobfeatures", "x" * 64)),
    ],
)
def test_accepted(raw, target):
    assert parse(raw) == target


@pytest.mark.parametrize(
    "raw, status",
    [
        (f"{M}/joboutputs/..", 400),
        (f"{M}/joboutputs/.", 400),
        (f"{M}/joboutputs/%2e%2e", 400),
        (f"{M}/joboutputs/%2E%2E", 400),
        (f"{M}/joboutputs/%252e%252e", 400),
        (f"{M}/joboutputs/..%2fmachine.json", 400),
        (f"{M}/joboutputs/a%2Fb", 400),
        (f"{M}/joboutputs/a%00b", 400),
        (f"{M}/joboutputs/../../other/joboutputs/heartbeat", 400),
        (f"{M}/../proj-b-0a1b2c3d/joboutputs/heartbeat", 400),
        (f"{M}/./joboutputs/heartbeat", 400),
        (f"{M}/joboutputs//etc/passwd", 400),
        (f"{M}//joboutputs/heartbeat", 400),
        (f"{M}/joboutputs/heartbeat/", 400),
        (f"{M}/joboutputs/..\\..\\x", 400),
        (f"{M}/joboutputs/heartbeat?x=../../y", 400),
        (f"{M}/joboutputs/heartbeat#x", 400),
        (f"http://127.0.0.1{M}/joboutputs/heartbeat", 400),
        (f"{M}/joboutputs/{'x' * 65}", 400),
        (f"{M}/joboutputs/a;b", 400),
        (f"{M}/joboutputs/a~b", 400),
        (f"{M}/joboutputs/" + "x" * 600, 400),
        (f"{M}/joboutputs", 404),
        (f"{M}/machine.json", 404),
        (f"{M}/token.sha256/x", 404),
        (f"{M}/finished/x", 404),
        (f"{M}/joboutputs/a/b", 404),
        ("/machines/Lab/proj-a-0a1b2c3d/joboutputs/heartbeat", 404),
        ("/machines/lab/-bad/joboutputs/heartbeat", 404),
        ("/machines/lab/proj_a/joboutputs/heartbeat", 404),
    ],
)
def test_refused(raw, status):
    with pytest.raises(Refused) as refused:
        parse(raw)
    assert refused.value.status == status


def test_machine_urls_have_no_trailing_slash():
    assert machine_urls("https://v.example.org:8443", "lab", "m-1") == {
        "machinefeatures": "https://v.example.org:8443/machines/lab/m-1/machinefeatures",
        "jobfeatures": "https://v.example.org:8443/machines/lab/m-1/jobfeatures",
        "joboutputs": "https://v.example.org:8443/machines/lab/m-1/joboutputs",
    }
