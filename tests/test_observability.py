"""What operators watch: /metrics scraped over HTTP and parsed with prometheus_client's parser (names by
Prometheus conventions), the alert rules checked by promtool, the Grafana dashboard's queries, JSON logs."""

import io
import json
import logging
import re
import shutil
import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from vacagent import config, cycle, logs
from vacagent.clock import FakeClock
from vacagent.config import EndpointSettings
from vacagent.endpoint.server import EndpointServer
from vacagent.errors import CapacityExhausted
from vacagent.metrics import Metrics, MetricsReporter

from conftest import REPO, T0, service_unavailable

RULES = REPO / "docs" / "prometheus-rules.yaml"
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"


def run_site(tmp_path):
    """A fake-cloud space through real cycles: machines run, report job_seconds, stop, and one create is refused."""
    (tmp_path / "x.sh").write_text("#!/bin/sh\n")
    (tmp_path / "vacagent.yaml").write_text("""
site: o.test
state_dir: state
spaces:
  lab:
    backend: fake
    options: {boot_seconds: 10}
    processors_limit: 2
    creation_budget_processors: 2
    machinetypes:
      lab-a: {user_data: x.sh, fizzle_seconds: 10, backoff_seconds: 100, heartbeat_file: heartbeat,
              heartbeat_seconds: 30}
""")
    settings = config.load(tmp_path / "vacagent.yaml")
    clock = FakeClock(T0)
    metrics = Metrics()
    space = cycle.build(settings, settings.spaces["lab"], MetricsReporter(metrics, clock), clock)
    cycle.run_once(space, clock.now())
    clock.advance(100)
    for name in space.store.records():
        (space.store.machine_dir(name) / "joboutputs" / "job_seconds").write_text("60")
    cycle.run_once(space, clock.now())  # heartbeats missing: both deleted as stale
    clock.advance(60)
    space.backend.inner.fail_next("create", CapacityExhausted("no room"))
    cycle.run_once(space, clock.now())
    return metrics


def scrape(metrics, tmp_path):
    server = EndpointServer(EndpointSettings(port=0), tmp_path / "endpoint-state", FakeClock(T0), metrics)
    server.start()
    try:
        with urllib.request.urlopen(f"{server.public_url}/metrics", timeout=30) as response:
            return response.read().decode()
    finally:
        server.stop()


def test_metrics_scraped_and_parsed_follow_the_conventions(tmp_path):
    families = {f.name: f for f in text_string_to_metric_families(scrape(run_site(tmp_path), tmp_path))}
    for name, family in families.items():
        assert re.fullmatch(r"vacagent_[a-z0-9_]+", name), name
        if family.type == "counter":
            assert all(s.name == name + "_total" for s in family.samples), name
        if family.type == "histogram" or "seconds" in name:
            assert name.endswith("_seconds"), f"{name}: a time is in seconds, and says so"
        assert family.documentation, f"{name} has no help text"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    lab_a = (("machinetype", "lab-a"), ("space", "lab"))
    # two machines: starting 10 s, then 90 s of run (lost: deleted for their heartbeat), closed a cycle later
    assert samples[("vacagent_ledger_processor_seconds_total", (lab_a[0], ("phase", "lost"), lab_a[1]))] == 2 * 90
    assert samples[("vacagent_ledger_processor_seconds_total", (lab_a[0], ("phase", "starting"), lab_a[1]))] == 20
    create = (("backend", "fake"), ("operation", "create"))
    assert samples[("vacagent_backend_requests_total", (*create, ("outcome", "ok"), ("space", "lab")))] == 2
    assert samples[("vacagent_backend_requests_total", (*create, ("outcome", "capacity"), ("space", "lab")))] == 1
    assert samples[("vacagent_backend_request_duration_seconds_count", create)] == 3
    # the capacity refusal is the cloud's, not the project's abort: a backoff, and no abort counted
    assert samples[("vacagent_backoff", lab_a)] == 1 and samples[("vacagent_backoff_consecutive_aborts", lab_a)] == 0
    assert ("vacagent_heartbeat_age_seconds", lab_a) in samples and ("vacagent_heartbeats_late", lab_a) in samples


def test_dashboard_queries_only_series_vacagent_exports(tmp_path):
    exported = {f.name for f in text_string_to_metric_families(scrape(run_site(tmp_path), tmp_path))}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    assert all(word in titles for word in ("ledger", "machines by state", "backoff", "api"))
    for expr in exprs + [rule_expr for rule_expr in re.findall(r"vacagent_[a-z0-9_]+", RULES.read_text())]:
        for name in re.findall(r"vacagent_[a-z0-9_]+", expr):
            base = re.sub(r"_(total|bucket|sum|count)$", "", name)
            assert base in exported, f"{name} is not a series vacagent exports"


def test_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        service_unavailable("promtool is not installed (Debian package prometheus)")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout
    names = set(re.findall(r"alert: (\w+)", RULES.read_text()))
    assert names == {"VacagentNoHeartbeats", "VacagentLongBackoff", "VacagentCloudApiErrors",
                     "VacagentUsefulFractionBelowTarget", "VacagentCycleFailures"}


def test_json_logs_carry_the_same_fields_as_key_value_lines():
    log = logs.get("vacagent.test")
    lines = {}
    for form in ("kv", "json"):
        logs.setup("info", form)
        stream = io.StringIO()
        logging.getLogger(logs.ROOT).handlers[0].setStream(stream)
        log.info("machine created", space="lab", machine="lab-a-1", processors=2, probe=None, detail="a b")
        lines[form] = stream.getvalue().strip()
    logs.setup("info")
    record = json.loads(lines["json"])
    assert record["level"] == "info" and record["message"] == "machine created" and "time" in record
    assert {k: v for k, v in record.items() if k not in ("time", "level", "message")} == {
        "space": "lab", "machine": "lab-a-1", "processors": 2, "detail": "a b"}
    assert lines["kv"].endswith('info machine created space=lab machine=lab-a-1 processors=2 detail="a b"')


def test_log_format_is_a_site_setting(tmp_path):
    (tmp_path / "x.sh").write_text("#!/bin/sh\n")
    text = "site: s.test\nstate_dir: state\nlog_format: {}\nspaces:\n  lab:\n    backend: local\n" \
           "    machinetypes: {{a: {{user_data: x.sh}}}}\n"
    (tmp_path / "vacagent.yaml").write_text(text.format("json"))
    assert config.load(tmp_path / "vacagent.yaml").log_format == "json"
    (tmp_path / "vacagent.yaml").write_text(text.format("xml"))
    try:
        config.load(tmp_path / "vacagent.yaml")
    except config.ConfigError as e:
        assert "log_format" in str(e)
    else:
        raise AssertionError("log_format: xml accepted")
