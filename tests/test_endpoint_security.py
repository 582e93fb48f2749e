"""The endpoint against hostile requests: a real server on 127.0.0.1, real
HTTP, a real state directory whose machines were made by the Actuator.

Every refused request must get its status (docs/machine-protocol.md) AND
leave the state directory exactly as it was: names, contents, sizes and
modification times of every file and directory.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading

import pytest

from vacagent import tokens
from vacagent.clock import SystemClock
from vacagent.config import EndpointSettings
from vacagent.endpoint.server import EndpointServer
from vacagent.metrics import Metrics
from vacagent.model import Outcome
from vacagent.state.store import SpaceStore

from endpoint_support import actuator, create, fingerprint, machinetype, request

SETTINGS = EndpointSettings(port=0, max_message_bytes=64, max_file_bytes=1024, max_joboutputs_bytes=4096)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Space lab: a, b (live), closed (closed), adopted (no token); space other: c; plus odd files."""
    tmp = tmp_path_factory.mktemp("site")
    state = tmp / "state"
    metrics = Metrics()
    server = EndpointServer(SETTINGS, state, SystemClock(), metrics)
    server.start()
    lab = actuator(state, "lab", server.public_url)
    other = actuator(state, "other", server.public_url)
    mt = machinetype(tmp)
    names, toks = {}, {}
    for key, act in (("a", lab), ("b", lab), ("closed", lab), ("links", lab), ("c", other)):
        names[key], toks[key] = create(act, mt)
    store: SpaceStore = lab.store
    store.close(store.records()[names["closed"]], Outcome("", None, 0, False, "gone", 0), SystemClock().now())
    record = store.records()[names["a"]].__class__(name="proj-a-adopted1", space="lab", machinetype=mt.name,
                                                   processors=1, created=0, adopted=True)
    store.write_intent(record)  # as reconcile adopts: no token.sha256
    names["adopted"] = record.name
    links = store.machine_dir(names["links"])
    os.symlink(store.machine_dir(names["b"]) / "joboutputs" / "heartbeat", links / "joboutputs" / "evil")
    os.symlink("/etc/hostname", links / "machinefeatures" / "evil")
    os.mkfifo(links / "machinefeatures" / "fifo")
    os.mkdir(links / "joboutputs" / "adir")
    (links / "jobfeatures").rename(links / "jobfeatures.real")
    os.symlink(links / "jobfeatures.real", links / "jobfeatures")
    yield {"state": state, "port": server.port, "names": names, "tokens": toks, "metrics": metrics, "store": store}
    server.stop()


def forged(space: str, machine: str) -> str:
    return f"vac.{space}.{machine}.{secrets.token_urlsafe(32)}"


def url(site, key: str, kind: str = "joboutputs", file: str = "heartbeat", space: str = "lab") -> str:
    return f"/machines/{space}/{site['names'][key]}/{kind}/{file}"


def under_a(raw: str):
    """A path builder: `raw`, exactly as given, below machine a's URL."""
    return lambda s: f"/machines/lab/{s['names']['a']}/{raw}"


# (description, method, path builder, token builder, body, extra headers, status)
CASES = [
    ("no token", "PUT", lambda s: url(s, "a"), lambda s: None, b"1", {}, 401),
    ("empty bearer", "PUT", lambda s: url(s, "a"), lambda s: None, b"1", {"Authorization": "Bearer "}, 401),
    ("basic auth", "PUT", lambda s: url(s, "a"), lambda s: None, b"1", {"Authorization": "Basic YTpi"}, 401),
    ("malformed token", "PUT", lambda s: url(s, "a"), lambda s: "not-a-token", b"1", {}, 401),
    ("token with a wrong secret", "PUT", lambda s: url(s, "a"),
     lambda s: forged("lab", s["names"]["a"]), b"1", {}, 401),
    ("own token with a flipped character", "PUT", lambda s: url(s, "a"),
     lambda s: s["tokens"]["a"][:-1] + ("A" if s["tokens"]["a"][-1] != "A" else "B"), b"1", {}, 401),
    ("token naming an unknown machine", "PUT", lambda s: url(s, "a"),
     lambda s: forged("lab", "proj-a-ffffffff"), b"1", {}, 401),
    ("forged token of the adopted machine", "PUT", lambda s: url(s, "adopted"),
     lambda s: forged("lab", s["names"]["adopted"]), b"1", {}, 401),
    ("another machine's token", "PUT", lambda s: url(s, "a"), lambda s: s["tokens"]["b"], b"1", {}, 403),
    ("another space's machine's token", "PUT", lambda s: url(s, "a"), lambda s: s["tokens"]["c"], b"1", {}, 403),
    ("another machine's token, GET", "GET", lambda s: url(s, "a", "jobfeatures", "wall_limit_secs"),
     lambda s: s["tokens"]["b"], None, {}, 403),
    ("closed machine, its own token", "PUT", lambda s: url(s, "closed"),
     lambda s: s["tokens"]["closed"], b"1", {}, 403),
    ("closed machine, its own token, GET", "GET", lambda s: url(s, "closed", "machinefeatures", "total_cpu"),
     lambda s: s["tokens"]["closed"], None, {}, 403),
    ("closed machine's token on a live one", "PUT", lambda s: url(s, "a"),
     lambda s: s["tokens"]["closed"], b"1", {}, 403),
    ("live token on the closed machine", "PUT", lambda s: url(s, "closed"),
     lambda s: s["tokens"]["a"], b"1", {}, 403),
    ("live token on the adopted machine", "PUT", lambda s: url(s, "adopted"),
     lambda s: s["tokens"]["a"], b"1", {}, 403),
    ("unknown machine", "PUT", lambda s: "/machines/lab/proj-a-12345678/joboutputs/heartbeat",
     lambda s: s["tokens"]["a"], b"1", {}, 404),
    ("unknown space", "PUT", lambda s: f"/machines/nosuch/{s['names']['a']}/joboutputs/heartbeat",
     lambda s: s["tokens"]["a"], b"1", {}, 404),
    ("machine in the other space", "PUT", lambda s: url(s, "a", space="other"),
     lambda s: s["tokens"]["a"], b"1", {}, 404),
    ("unknown kind", "GET", lambda s: url(s, "a", "secrets", "x"), lambda s: s["tokens"]["a"], None, {}, 404),
    ("machine.json as a kind", "GET", lambda s: f"/machines/lab/{s['names']['a']}/machine.json",
     lambda s: s["tokens"]["a"], None, {}, 404),
    ("outside /machines", "GET", lambda s: "/etc/passwd", lambda s: s["tokens"]["a"], None, {}, 404),
    ("double slash root", "GET", lambda s: "//etc/passwd", lambda s: s["tokens"]["a"], None, {}, 404),
    ("missing feature key", "GET", lambda s: url(s, "a", "machinefeatures", "nosuchkey"),
     lambda s: s["tokens"]["a"], None, {}, 404),
    # traversal, in every encoding
    *[
        (f"traversal {raw!r}", method, under_a(raw), lambda s: s["tokens"]["a"], body, {}, 400)
        for method, body, raw in [
            ("PUT", b"1", "joboutputs/.."),
            ("PUT", b"1", "joboutputs/."),
            ("PUT", b"1", "joboutputs/%2e%2e"),
            ("PUT", b"1", "joboutputs/%2E%2e"),
            ("PUT", b"1", "joboutputs/%252e%252e"),
            ("PUT", b"1", "joboutputs/%2e%2e%2fmachine.json"),
            ("PUT", b"1", "joboutputs/..%2F..%2F..%2Fb%2Fjoboutputs%2Fheartbeat"),
            ("PUT", b"1", "joboutputs/../../b/joboutputs/heartbeat"),
            ("PUT", b"1", "../b/joboutputs/heartbeat"),
            ("PUT", b"1", "joboutputs//tmp/x"),
            ("PUT", b"1", "joboutputs/..\\machine.json"),
            ("PUT", b"1", "joboutputs/a%00"),
            ("PUT", b"1", "joboutputs/heartbeat?f=../../machine.json"),
            ("PUT", b"1", "joboutputs/" + "x" * 65),
            ("GET", None, "jobfeatures/../token.sha256"),
            ("GET", None, "jobfeatures/..%2ftoken.sha256"),
            ("GET", None, "machinefeatures/%2e%2e/machine.json"),
        ]
    ],
    ("absolute-form target", "PUT", lambda s: f"http://127.0.0.1{url(s, 'a')}", lambda s: s["tokens"]["a"],
     b"1", {}, 400),
    # symlinks and odd files: never followed, never opened
    ("PUT over a symlink", "PUT", lambda s: url(s, "links", file="evil"), lambda s: s["tokens"]["links"],
     b"1", {}, 409),
    ("PUT over a directory", "PUT", lambda s: url(s, "links", file="adir"), lambda s: s["tokens"]["links"],
     b"1", {}, 409),
    ("GET a symlinked feature", "GET", lambda s: url(s, "links", "machinefeatures", "evil"),
     lambda s: s["tokens"]["links"], None, {}, 409),
    ("GET a FIFO feature", "GET", lambda s: url(s, "links", "machinefeatures", "fifo"),
     lambda s: s["tokens"]["links"], None, {}, 409),
    ("GET through a symlinked directory", "GET", lambda s: url(s, "links", "jobfeatures", "wall_limit_secs"),
     lambda s: s["tokens"]["links"], None, {}, 409),
    # bodies over their caps (settings: 64 for messages, 1024 for other files)
    ("heartbeat over its cap", "PUT", lambda s: url(s, "a"), lambda s: s["tokens"]["a"], b"x" * 65, {}, 413),
    ("shutdown_message over its cap", "PUT", lambda s: url(s, "a", file="shutdown_message"),
     lambda s: s["tokens"]["a"], b"300 " + b"x" * 61, {}, 413),
    ("log over its cap", "PUT", lambda s: url(s, "a", file="job.log"), lambda s: s["tokens"]["a"],
     b"x" * 1025, {}, 413),
    ("chunked log over its cap", "PUT", lambda s: url(s, "a", file="job.log"), lambda s: s["tokens"]["a"],
     b"".join(b"200\r\n" + b"x" * 512 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n",
     {"Transfer-Encoding": "chunked"}, 413),
    # wrong methods
    ("GET joboutputs", "GET", lambda s: url(s, "a"), lambda s: s["tokens"]["a"], None, {}, 405),
    ("PUT a machine feature", "PUT", lambda s: url(s, "a", "machinefeatures", "total_cpu"),
     lambda s: s["tokens"]["a"], b"99", {}, 405),
    ("PUT a job feature", "PUT", lambda s: url(s, "a", "jobfeatures", "wall_limit_secs"),
     lambda s: s["tokens"]["a"], b"99", {}, 405),
    ("POST joboutputs", "POST", lambda s: url(s, "a"), lambda s: s["tokens"]["a"], b"1", {}, 405),
    ("DELETE joboutputs", "DELETE", lambda s: url(s, "a"), lambda s: s["tokens"]["a"], None, {}, 405),
    ("PATCH joboutputs", "PATCH", lambda s: url(s, "a"), lambda s: s["tokens"]["a"], b"1", {}, 405),
]


@pytest.mark.parametrize("desc, method, path, token, body, headers, status", CASES, ids=[c[0] for c in CASES])
def test_refused_and_state_unchanged(site, desc, method, path, token, body, headers, status):
    before = fingerprint(site["state"])
    got, response_headers, text = request(site["port"], method, path(site), token(site), body, headers)
    assert got == status, text
    assert fingerprint(site["state"]) == before
    if status == 401:
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
    if status == 405:
        assert response_headers["Allow"] in ("PUT", "GET, HEAD")
    for secret in site["tokens"].values():
        assert secret.encode() not in text


def test_total_joboutputs_cap(site):
    tok, name = site["tokens"]["b"], site["names"]["b"]
    for i in range(4):  # 4 x 1000 bytes fit in 4096
        assert request(site["port"], "PUT", url(site, "b", file=f"log{i}"), tok, b"x" * 1000)[0] == 204
    before = fingerprint(site["state"])
    status, _, text = request(site["port"], "PUT", url(site, "b", file="log4"), tok, b"x" * 100)
    assert status == 413, text
    assert fingerprint(site["state"]) == before
    # Replacing a file counts its new size, not both.
    assert request(site["port"], "PUT", url(site, "b", file="log0"), tok, b"y" * 1000)[0] == 204
    assert (site["store"].machine_dir(name) / "joboutputs" / "log0").read_bytes() == b"y" * 1000


def test_heartbeat_put_is_stored_with_the_endpoint_time(site):
    before = SystemClock().now()
    status, _, _ = request(site["port"], "PUT", url(site, "a"), site["tokens"]["a"], b"load 0.5")
    after = SystemClock().now()
    assert status == 204
    path = site["store"].machine_dir(site["names"]["a"]) / "joboutputs" / "heartbeat"
    assert path.read_bytes() == b"load 0.5"
    assert before - 0.01 <= path.stat().st_mtime <= after + 0.01
    assert site["store"].outputs(site["names"]["a"], "heartbeat").heartbeat_at == path.stat().st_mtime


def test_unchanged_body_only_updates_the_time(site):
    """Same body again: the file keeps its inode and gets the new time; another body: a new file."""
    path = site["store"].machine_dir(site["names"]["a"]) / "joboutputs" / "beat"
    tok = site["tokens"]["a"]
    assert request(site["port"], "PUT", url(site, "a", file="beat"), tok, b"same")[0] == 204
    first = path.stat()
    assert request(site["port"], "PUT", url(site, "a", file="beat"), tok, b"same")[0] == 204
    second = path.stat()
    assert (second.st_ino, path.read_bytes()) == (first.st_ino, b"same")
    assert second.st_mtime_ns > first.st_mtime_ns
    assert request(site["port"], "PUT", url(site, "a", file="beat"), tok, b"other")[0] == 204
    assert path.stat().st_ino != first.st_ino and path.read_bytes() == b"other"
    assert request(site["port"], "PUT", url(site, "a", file="beat"), tok, b"")[0] == 204
    assert request(site["port"], "PUT", url(site, "a", file="beat"), tok, b"")[0] == 204
    assert path.read_bytes() == b""


def test_features_are_served(site):
    tok = site["tokens"]["a"]
    status, headers, body = request(site["port"], "GET", url(site, "a", "jobfeatures", "wall_limit_secs"), tok)
    assert (status, body) == (200, b"86400\n")
    assert headers["Content-Type"].startswith("text/plain")
    assert request(site["port"], "GET", url(site, "a", "machinefeatures", "jobslots"), tok)[2] == b"1\n"
    assert request(site["port"], "HEAD", url(site, "a", "machinefeatures", "jobslots"), tok)[0] == 200


def test_token_file_holds_only_the_hash(site):
    directory = site["store"].machine_dir(site["names"]["a"])
    assert (directory / tokens.HASH_FILE).read_text().strip() == tokens.digest(site["tokens"]["a"])
    for secret in site["tokens"].values():
        for path in site["state"].rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert secret.encode() not in path.read_bytes(), path


def test_concurrent_writers_to_one_file(site):
    tok, name = site["tokens"]["c"], site["names"]["c"]
    bodies = [bytes([65 + i]) * (200 + i) for i in range(16)]
    statuses = []

    def put(body):
        statuses.append(request(site["port"], "PUT", url(site, "c", file="job.log", space="other"), tok, body)[0])

    threads = [threading.Thread(target=put, args=(b,)) for b in bodies for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [204] * len(threads)
    joboutputs = site["state"] / "spaces" / "other" / "machines" / name / "joboutputs"
    assert joboutputs.joinpath("job.log").read_bytes() in bodies  # one writer's body, whole
    assert sorted(p.name for p in joboutputs.iterdir()) == ["job.log"]  # no temporary file left


def test_slow_client_does_not_block_others(site):
    """A client that sends half a request and stalls holds up nobody."""
    stalled = socket.create_connection(("127.0.0.1", site["port"]))
    try:
        stalled.sendall(f"PUT {url(site, 'a', file='slow.log')} HTTP/1.1\r\nHost: x\r\n"
                        f"Authorization: Bearer {site['tokens']['a']}\r\nContent-Length: 100\r\n\r\nabc".encode())
        status, _, _ = request(site["port"], "GET", url(site, "a", "machinefeatures", "total_cpu"),
                               site["tokens"]["a"])
        assert status == 200
    finally:
        stalled.close()


def test_healthz_and_metrics(site):
    status, _, body = request(site["port"], "GET", "/healthz")
    assert status == 200 and b'"ok"' in body
    status, headers, body = request(site["port"], "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    assert 'vacagent_endpoint_requests_total{route="joboutputs",status="401"}' in text
    assert 'vacagent_endpoint_requests_total{route="invalid",status="400"}' in text
    assert 'vacagent_endpoint_requests_total{route="joboutputs",status="204"}' in text


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 512 KiB tmpfs (needs the right to mount: root, as on CI; skipped elsewhere)."""
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mountpoint
    subprocess.run(["umount", str(mountpoint)], check=True)


def test_full_state_directory_is_507_and_leaves_nothing_behind(tmp_path, tiny_filesystem):
    state = tiny_filesystem / "state"
    server = EndpointServer(SETTINGS, state, SystemClock())
    server.start()
    try:
        name, token = create(actuator(state, "lab", server.public_url), machinetype(tmp_path))
        path = f"/machines/lab/{name}/joboutputs/heartbeat"
        assert request(server.port, "PUT", path, token, b"before")[0] == 204
        filler = os.open(tiny_filesystem / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(filler, b"\0" * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(filler)
        files = {k: v for k, v in fingerprint(state).items() if v[0] == "file"}
        status, _, text = request(server.port, "PUT", path, token, b"after")
        assert (status, text) == (507, b"the state directory cannot be written now\n")
        # The temporary file was made and removed again (so joboutputs/ has a new
        # mtime), and every file is as it was: nothing half-written, nothing left.
        assert {k: v for k, v in fingerprint(state).items() if v[0] == "file"} == files
    finally:
        server.stop()
