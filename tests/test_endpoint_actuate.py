"""What a new machine is given at intent time: a token (only its hash
stored), its endpoint URLs (or local paths), machine/job features, and a
user_data rendered from a local or https template within the backend's
size limit.  Real Actuator, fake backend, real state directory."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import threading
from pathlib import Path

import pytest
import requests
import trustme
from aiohttp import web

from vacagent import tokens
from vacagent.backoff import FeedbackState
from vacagent.clock import SystemClock
from vacagent.errors import ConfigError
from vacagent.fetch import Fetcher
from vacagent.report import Reporter

from endpoint_support import actuator, machinetype

URL = "https://vac.lab.example.org:8443"
NOW = 1_800_000_000.0
TEMPLATE = """space=##user_data_space## mt=##user_data_machinetype## host=##user_data_machine_hostname##
mf=##user_data_machinefeatures_url##
jf=##user_data_jobfeatures_url##
jo=##user_data_joboutputs_url##
token=##user_data_token##
queue=##user_data_option_queue##
gone=[##user_data_no_such_thing##]
"""


class Failures(Reporter):
    def __init__(self):
        self.failures = []

    def create_failed(self, space, machinetype, name, error, backs_off):
        self.failures.append((machinetype, str(error), backs_off))


def rendered(act, name):
    return act.backend.machines[name].user_data


def test_machine_is_given_token_and_urls(tmp_path):
    act = actuator(tmp_path / "state", "lab", URL)
    mt = machinetype(tmp_path, "proj-a", TEMPLATE, extra={"user_data_option_queue": "q1"})
    record, _ = act.create(mt, False, FeedbackState(), NOW)
    name = record.name
    first, *rest = rendered(act, name).splitlines()
    assert first == f"space=lab mt=proj-a host={name}"
    lines = dict(line.split("=", 1) for line in rest)
    base = f"{URL}/machines/lab/{name}"
    assert lines == {"mf": f"{base}/machinefeatures", "jf": f"{base}/jobfeatures", "jo": f"{base}/joboutputs",
                     "token": lines["token"], "queue": "q1", "gone": "[]"}
    token = lines["token"]
    assert tokens.owner(token) == ("lab", name)
    directory = act.store.machine_dir(name)
    assert (directory / "token.sha256").read_text() == hashlib.sha256(token.encode()).hexdigest() + "\n"
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


def test_environment_for_local_processes_and_pods(tmp_path):
    act = actuator(tmp_path / "state", "lab", URL)
    record, _ = act.create(machinetype(tmp_path), False, FeedbackState(), NOW)
    [request] = act.backend.requests
    assert dict(request.environment) == {
        "MACHINEFEATURES": f"{URL}/machines/lab/{record.name}/machinefeatures",
        "JOBFEATURES": f"{URL}/machines/lab/{record.name}/jobfeatures",
        "JOBOUTPUTS": f"{URL}/machines/lab/{record.name}/joboutputs",
        "VACAGENT_TOKEN": request.user_data,  # the template is ##user_data_token##
    }


def test_without_an_endpoint_machines_get_local_paths(tmp_path):
    act = actuator(tmp_path / "state", "lab", None)
    record, _ = act.create(machinetype(tmp_path, template=TEMPLATE), False, FeedbackState(), NOW)
    seen = act.backend.requests
    directory = act.store.machine_dir(record.name)
    assert seen[0].environment["JOBOUTPUTS"] == str(directory / "joboutputs")
    assert seen[0].environment["MACHINEFEATURES"] == str(directory / "machinefeatures")
    assert "\nmf=\njf=\njo=\n" in seen[0].user_data


def test_tokens_differ_per_machine(tmp_path):
    act = actuator(tmp_path / "state", "lab", URL)
    mt = machinetype(tmp_path)
    made = {rendered(act, act.create(mt, False, FeedbackState(), NOW)[0].name) for _ in range(20)}
    assert len(made) == 20


@pytest.mark.parametrize("limit, created", [(200, True), (199, False)])
def test_user_data_over_the_backend_limit_is_refused(tmp_path, limit, created):
    reporter = Failures()
    act = actuator(tmp_path / "state", "lab", URL, reporter, max_user_data_bytes=limit)
    # 200 bytes once rendered: the token is 4 + 3 + 16 + 43 + 3 dots = 73 characters.
    template = "#" * (200 - len(f"vac.lab.proj-a-00000000.{'x' * 43}")) + "##user_data_token##"
    mt = machinetype(tmp_path, template=template)
    record, feedback = act.create(mt, False, FeedbackState(), NOW)
    assert (record is not None) is created
    if created:
        assert len(rendered(act, record.name).encode()) == 200
        return
    assert list((tmp_path / "state").glob("spaces/lab/machines/*")) == []  # nothing intended
    assert act.backend.machines == {}
    [(name, message, backs_off)] = reporter.failures
    assert name == "proj-a" and backs_off
    assert "user_data: rendered to 200 bytes, more than the backend of space lab accepts (199 bytes)" in message
    assert "#" not in message  # never the user_data itself
    assert feedback.consecutive_aborts == 1


def test_features_written_at_intent(tmp_path):
    act = actuator(tmp_path / "state", "lab", URL)
    mt = machinetype(tmp_path, processors=4, max_wallclock_seconds=7200, mb_per_processor=2000,
                     extra={"hs06_per_processor": 10.5, "disk_gb_per_processor": 20})
    record, _ = act.create(mt, False, FeedbackState(), NOW)
    directory = act.store.machine_dir(record.name)

    def read(kind):
        return {p.name: p.read_text().strip() for p in (directory / kind).iterdir()}

    assert read("machinefeatures") == {"shutdowntime": str(int(NOW) + 7200), "jobslots": "1", "total_cpu": "4",
                                       "log_cores": "4", "phys_cores": "4", "hs06": "42.0"}
    assert read("jobfeatures") == {
        "wall_limit_secs": "7200", "cpu_limit_secs": "28800", "max_rss_bytes": str(8000 * 1024 * 1024),
        "allocated_cpu": "4", "jobstart_secs": str(int(NOW)), "shutdowntime_job": str(int(NOW) + 7200),
        "hs06_job": "42.0", "scratch_limit_bytes": "80000000000",
    }


@pytest.fixture
def https_templates(tmp_path):
    """An https server (trustme CA) serving user_data templates, in its own thread."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    served = []

    async def template(request):
        served.append(request.path)
        return web.Response(text="from https: token=##user_data_token## jo=##user_data_joboutputs_url##\n")

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/t.sh", template)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    yield f"https://127.0.0.1:{runner.addresses[0][1]}/t.sh", ca_file, served
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.run_until_complete(runner.cleanup())
    loop.close()


def test_https_template_is_fetched_once_and_cached(tmp_path, https_templates):
    location, ca_file, served = https_templates
    reporter = Failures()
    act = actuator(tmp_path / "state", "lab", URL, reporter)
    session = requests.Session()
    session.trust_env = False  # else $REQUESTS_CA_BUNDLE would win over `verify`
    session.verify = str(ca_file)
    act.fetcher = Fetcher(tmp_path / "state" / "cache", session=session)
    mt = machinetype(tmp_path).__class__(name="proj-a", user_data=location)
    first, _ = act.create(mt, False, FeedbackState(), NOW)
    second, _ = act.create(mt, False, FeedbackState(), NOW + 60)
    assert reporter.failures == []
    assert served == ["/t.sh"]  # the second came from the cache
    for record in (first, second):
        text = rendered(act, record.name)
        assert text.startswith("from https: token=vac.lab.") and f"/machines/lab/{record.name}/joboutputs" in text
    assert rendered(act, first.name) != rendered(act, second.name)


def test_plain_http_template_is_refused(tmp_path):
    reporter = Failures()
    act = actuator(tmp_path / "state", "lab", URL, reporter)
    mt = machinetype(tmp_path).__class__(name="proj-a", user_data="http://example.org/t.sh")
    record, _ = act.create(mt, False, FeedbackState(), NOW)
    assert record is None
    assert "only https:// URLs are accepted" in reporter.failures[0][1]


def test_url_placeholders_are_empty_when_no_url_is_known(tmp_path):
    act = actuator(tmp_path / "state", "lab", None)
    record, _ = act.create(machinetype(tmp_path, template="[##user_data_joboutputs_url##]"), False,
                           FeedbackState(), SystemClock().now())
    assert rendered(act, record.name) == "[]"
    with pytest.raises(ConfigError):
        Fetcher(tmp_path).get(str(Path(tmp_path) / "nosuch"), NOW)
