"""Hostile pipes (issue 14): what a project's published definition may make
the daemon read, hold or wait for.  Real https servers on 127.0.0.1 (trustme
CA); every test is one attack that worked before the defence."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme

from vacagent import definitions, fetch, userdata
from vacagent.config import PipeSettings, SpaceSettings
from vacagent.errors import ConfigError
from vacagent.fetch import Fetcher
from vacagent.model import NAME_RE, SpaceLimits

from conftest import T0
from daemon_helpers import wait_for


class Hostile:
    """An https server whose paths misbehave: /pipe serves `body`, /redirect-http
    redirects to plain http, /redirect-https to /pipe, /dribble sends a byte every
    `dribble` seconds, /huge streams without end, /missing is a 404."""

    def __init__(self, tmp_path):
        self.body = b""
        self.hits: dict[str, int] = {}
        self.dribble = 0.2
        ca = trustme.CA()
        self.ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                try:
                    getattr(server, "serve_" + self.path.strip("/").replace("-", "_"), server.serve_missing)(self)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.stop = threading.Event()

    def serve_pipe(self, h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(self.body)))
        h.end_headers()
        h.wfile.write(self.body)

    def serve_redirect_http(self, h):
        h.send_response(302)
        h.send_header("Location", self.base.replace("https://", "http://") + "/pipe")
        h.end_headers()

    def serve_redirect_https(self, h):
        h.send_response(301)
        h.send_header("Location", "/pipe")
        h.end_headers()

    def serve_dribble(self, h):
        h.send_response(200)
        h.end_headers()
        while not self.stop.wait(self.dribble):
            h.wfile.write(b" ")
            h.wfile.flush()

    def serve_huge(self, h):
        h.send_response(200)
        h.end_headers()
        block = b" " * 65536
        while not self.stop.is_set():
            h.wfile.write(block)

    def serve_missing(self, h):
        h.send_response(404)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    s = Hostile(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(s.ca_file))
    yield s
    s.close()


def space(*pipes, machinetypes=None):
    return SpaceSettings(name="s", backend="fake", options={}, limits=SpaceLimits(10), pipes=tuple(pipes),
                         machinetypes=machinetypes or {}, config_file="/etc/vacagent/vacagent.yaml")


def served(hostile, entries, **top):
    hostile.body = json.dumps({"machinetypes": entries, **top}).encode()
    return PipeSettings(source=hostile.base + "/pipe", prefix="lab", config_file="/etc/vacagent/vacagent.yaml")


# ---- a remote pipe names only https URLs ------------------------------------------------

@pytest.mark.parametrize("key, value", [
    ("user_data_file_x", "/proc/self/environ"),
    ("user_data_file_x", "/etc/vacagent/vacagent.yaml"),
    ("user_data_file_x", "file:///etc/ssl/private/site.key"),
    ("user_data", "/etc/hostname"),
    ("user_data", "ftp://example.org/user_data"),
    ("user_data", "http://example.org/user_data"),
    ("user_data_proxy_key", "/etc/grid-security/hostkey.pem"),
    ("root_public_key", "~/.ssh/id_rsa.pub"),
])
def test_remote_pipe_naming_a_local_file_is_refused(tmp_path, hostile, key, value):
    pipe = served(hostile, [{"suffix": "a", key: value}, {"suffix": "b", "user_data": "user_data.sh"}])
    r = definitions.resolve_space(space(pipe), Fetcher(tmp_path / "cache"), T0)
    assert "lab-a" not in r.machinetypes
    message = r.errors["lab-a"]
    assert pipe.source in message and "machinetype lab-a" in message and key in message
    assert "only https://" in message
    # The relative reference in the same pipe resolves against the pipe's URL and stays allowed.
    assert r.machinetypes["lab-b"].user_data == hostile.base + "/user_data.sh"


def test_site_override_may_still_name_a_local_file(tmp_path, hostile):
    local = tmp_path / "site.user_data"
    local.write_text("#!/bin/sh\n")
    pipe = served(hostile, [{"suffix": "a", "user_data": "/etc/shadow"}])
    pipe = PipeSettings(source=pipe.source, prefix="lab", overrides={"user_data": str(local)},
                        config_file=pipe.config_file)
    r = definitions.resolve_space(space(pipe), Fetcher(tmp_path / "cache"), T0)
    assert r.errors == {} and r.machinetypes["lab-a"].user_data == str(local)


# ---- local files: regular files only, capped ----------------------------------------------

@pytest.mark.parametrize("path, reason", [
    ("/dev/zero", "not a regular file"),
    ("/proc/self/environ", "pseudo-filesystem"),
    ("/sys/kernel/mm/transparent_hugepage/enabled", "pseudo-filesystem"),
    ("fifo", "not a regular file"),
    ("dir", "not a regular file"),
    ("huge", "larger than"),
])
def test_local_reads_take_regular_files_only(tmp_path, path, reason):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    with open(tmp_path / "huge", "wb") as f:
        f.truncate(fetch.MAX_BYTES + 1)
    location = path if path.startswith("/") else str(tmp_path / path)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=reason):
        Fetcher(tmp_path / "cache").get(location, T0)
    assert time.monotonic() - started < 5  # the FIFO never blocks


def test_device_as_user_data_file_fails_the_render_not_the_daemon(tmp_path):
    definition = {"user_data": str(tmp_path / "t"), "user_data_file_x": "/dev/zero"}
    (tmp_path / "t").write_text("##user_data_file_x##")
    mt = definitions.build("lab-a", definition, {k: "/etc/vacagent/vacagent.yaml" for k in definition})
    with pytest.raises(ConfigError, match="/dev/zero"):
        userdata.substitutions(mt, Fetcher(tmp_path / "cache"), T0)


# ---- what the JSON itself may hold -------------------------------------------------------

@pytest.mark.parametrize("depth", [200_000, 1000, 17])
def test_deeply_nested_pipe_is_an_error_of_its_pipe_only(tmp_path, depth):
    path = tmp_path / "deep.pipe"
    path.write_text('{"machinetypes": [{"suffix": "a", "comment": ' + "[" * depth + "]" * depth + "}]}")
    inline = {"other-b": {"user_data": "x"}}
    r = definitions.resolve_space(space(PipeSettings(source=str(path), prefix="lab"), machinetypes=inline),
                                  Fetcher(tmp_path / "cache"), T0)
    assert "nested more than" in r.errors["pipe lab"]
    assert "other-b" in r.machinetypes


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_in_a_pipe(tmp_path, value):
    path = tmp_path / "nan.pipe"
    path.write_text('{"machinetypes": [{"suffix": "a", "target_share": %s}]}' % value)
    r = definitions.resolve_space(space(PipeSettings(source=str(path), prefix="lab")), Fetcher(tmp_path / "c"), T0)
    assert value.lstrip("-") in r.errors["pipe lab"] and "lab-a" not in r.machinetypes


def test_nan_share_from_the_site_configuration_is_refused():
    with pytest.raises(ConfigError, match="target_share: NaN"):
        definitions.build("lab-a", {"target_share": float("nan")}, {"target_share": "/etc/vacagent/vacagent.yaml"})


@pytest.mark.parametrize("suffix", ["a\n", "a\n\n", "\na"])
def test_names_with_a_newline_are_refused(tmp_path, suffix):
    path = tmp_path / "nl.pipe"
    path.write_text(json.dumps({"machinetypes": [{"suffix": suffix}]}))
    r = definitions.resolve_space(space(PipeSettings(source=str(path), prefix="lab")), Fetcher(tmp_path / "c"), T0)
    assert r.machinetypes == {} and r.errors
    assert not NAME_RE.match("lab-a\n")


# ---- what a remote server may make us wait for or hold -----------------------------------

def test_downgrade_redirect_is_not_followed(tmp_path, hostile):
    hostile.body = json.dumps({"machinetypes": [{"suffix": "a"}]}).encode()
    pipe = PipeSettings(source=hostile.base + "/redirect-http", prefix="lab")
    r = definitions.resolve_space(space(pipe), Fetcher(tmp_path / "cache"), T0)
    assert "only https:// redirects" in r.errors["pipe lab"]
    pipe = PipeSettings(source=hostile.base + "/redirect-https", prefix="lab")
    r = definitions.resolve_space(space(pipe), Fetcher(tmp_path / "cache"), T0)
    assert set(r.machinetypes) == {"lab-a"}


def test_dribbling_server_never_holds_the_caller(tmp_path, hostile):
    fetcher = Fetcher(tmp_path / "cache", deadline=2.0, wait=0.5)
    url = hostile.base + "/dribble"
    started = time.monotonic()
    with pytest.raises(ConfigError, match="still downloading"):
        fetcher.get(url, T0)
    assert time.monotonic() - started < 2.0
    time.sleep(3.0)  # past the deadline: the download has given up
    with pytest.raises(ConfigError, match="took longer than 2s"):
        fetcher.get(url, T0 + 3)
    assert hostile.hits["/dribble"] == 1


def test_endless_body_is_cut_at_the_cap(tmp_path, hostile):
    with pytest.raises(ConfigError, match="larger than"):
        Fetcher(tmp_path / "cache", wait=20).get(hostile.base + "/huge", T0)


def test_failing_source_is_not_asked_again_every_cycle(tmp_path, hostile):
    fetcher = Fetcher(tmp_path / "cache")
    url = hostile.base + "/missing"
    for now in (T0, T0 + 10, T0 + 59):
        with pytest.raises(ConfigError, match="HTTP 404"):
            fetcher.get(url, now)
    assert hostile.hits["/missing"] == 1
    with pytest.raises(ConfigError, match="next try in 120s"):
        fetcher.get(url, T0 + 61)  # retried once the minute is up, then remembered for twice as long
    assert hostile.hits["/missing"] == 2


DAEMON_CONFIG = """
site: hostile.test
state_dir: state
cycle_seconds: 0.5
spaces:
  slow:
    backend: fake
    processors_limit: 1
    pipes: [{{source: "{url}", prefix: lab}}]
  fast:
    backend: fake
    processors_limit: 1
    machinetypes:
      fast-a: {{user_data: x.sh}}
"""


@pytest.mark.slow
def test_dribbling_pipe_stalls_neither_another_space_nor_a_reload(tmp_path, hostile, vacagent_bin):
    (tmp_path / "x.sh").write_text("#!/bin/sh\n")
    config = tmp_path / "vacagent.yaml"
    config.write_text(DAEMON_CONFIG.format(url=hostile.base + "/dribble"))
    log = tmp_path / "log"
    decisions = tmp_path / "state" / "decisions" / "fast.jsonl"

    def cycles() -> int:
        return len(decisions.read_text().splitlines()) if decisions.exists() else 0

    daemon = subprocess.Popen([vacagent_bin, "run", "--config", str(config)], stdout=subprocess.DEVNULL,
                              stderr=open(log, "wb"), env={**os.environ, "REQUESTS_CA_BUNDLE": str(hostile.ca_file)})
    try:
        wait_for(lambda: cycles() >= 5, 20)  # the fast space runs every 0.5 s while the slow pipe dribbles
        started = time.monotonic()
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text(), 15)
        assert time.monotonic() - started < 15
        before = cycles()
        wait_for(lambda: cycles() >= before + 3, 10)
        assert "still downloading" in log.read_text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
