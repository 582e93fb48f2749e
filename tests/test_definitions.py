"""Vacuum pipes and inline definitions -> machinetypes; errors name file, machinetype and key."""

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from vacagent import definitions
from vacagent.config import PipeSettings, SpaceSettings
from vacagent.errors import ConfigError
from vacagent.fetch import Fetcher
from vacagent.model import SpaceLimits

from conftest import T0

FIXTURE = Path(__file__).parent / "fixtures" / "example.pipe"


def space(pipes=(), machinetypes=None, config_file="/etc/vacagent/vacagent.yaml"):
    return SpaceSettings(name="s", backend="fake", options={}, limits=SpaceLimits(10), pipes=tuple(pipes),
                         machinetypes=machinetypes or {}, config_file=config_file)


def pipe_file(tmp_path, entries, name="p.pipe", **top):
    path = tmp_path / name
    path.write_text(json.dumps({"machinetypes": entries, **top}))
    return str(path)


def resolve(tmp_path, sp, now=T0):
    return definitions.resolve_space(sp, Fetcher(tmp_path / "cache"), now)


def test_vac_example_pipe_loads_unchanged(tmp_path):
    r = resolve(tmp_path, space([PipeSettings(source=str(FIXTURE), prefix="example")]))
    assert r.errors == {} and r.warnings == ()
    m = r.machinetypes["example-prod"]
    assert (m.processors, m.backoff_seconds, m.fizzle_seconds, m.max_wallclock_seconds, m.target_share) == (
        1, 600, 600, 86400, 1.0)
    assert m.min_wallclock_seconds == 9000
    assert m.user_data == "https://repo.gridpp.ac.uk/vacproject/example/user_data"
    assert m.extra["root_image"] == "https://repo.gridpp.ac.uk/vacproject/example/cernvm3.iso"
    assert m.extra["machine_model"] == "cernvm3"


def test_one_bad_entry_does_not_stop_the_others(tmp_path):
    source = pipe_file(tmp_path, [
        {"suffix": "good", "backoff_seconds": 60},
        {"suffix": "bad", "backoff_seconds": "soon"},
        {"suffix": "also-good"},
    ])
    r = resolve(tmp_path, space([PipeSettings(source=source, prefix="p")]))
    assert set(r.machinetypes) == {"p-good", "p-also-good"}
    assert list(r.errors) == ["p-bad"]
    message = r.errors["p-bad"]
    assert source in message and "machinetype p-bad" in message and "backoff_seconds" in message
    assert "'soon' is not of type 'integer'" in message


@pytest.mark.parametrize(
    "entry, key, reason",
    [
        ({"fizzle_seconds": -1}, "fizzle_seconds", "less than the minimum"),
        ({"processors": 0}, "processors", "less than the minimum"),
        ({"target_share": -2}, "target_share", "less than the minimum"),
        ({"heartbeat_file": "../../etc/passwd"}, "heartbeat_file", "does not match"),
        ({"heartbeat_file": "a/b"}, "heartbeat_file", "does not match"),
        ({"heartbeat_file": ".."}, "heartbeat_file", "does not match"),
        ({"user_data_file_x": "/srv/files/../../etc/shadow"}, "user_data_file_x", "climbs out"),
        ({"user_data": "https://example.org/a/../../b"}, "user_data", "climbs out"),
        ({"min_processors": 4, "max_processors": 2}, "min_processors", "more than max_processors"),
        ({"min_wallclock_seconds": 10, "max_wallclock_seconds": 5}, "min_wallclock_seconds", "more than"),
        ({"user_data_option_x": ["a"]}, "user_data_option_x", "is not of type"),
        ({"suffix": "Has_Capitals"}, "suffix", "must be lowercase"),
    ],
)
def test_invalid_values_name_file_machinetype_key(tmp_path, entry, key, reason):
    source = pipe_file(tmp_path, [{"suffix": "x", **entry}, {"suffix": "ok"}])
    r = resolve(tmp_path, space([PipeSettings(source=source, prefix="p")]))
    assert "p-ok" in r.machinetypes
    assert len(r.errors) == 1
    (message,) = r.errors.values()
    assert source in message and f": {key}: " in message and reason in message


def test_unknown_keys_warn_but_load(tmp_path):
    source = pipe_file(tmp_path, [{"suffix": "x", "favourite_colour": "blue"}], colour="red")
    r = resolve(tmp_path, space([PipeSettings(source=source, prefix="p")]))
    assert "p-x" in r.machinetypes and r.errors == {}
    assert any("favourite_colour: unknown key" in w and "machinetype p-x" in w for w in r.warnings)
    assert any("colour: unknown top-level key" in w for w in r.warnings)


def test_site_overrides_win_and_errors_name_the_config_file(tmp_path):
    source = pipe_file(tmp_path, [{"suffix": "a", "backoff_seconds": 60, "fizzle_seconds": 60},
                                  {"suffix": "b", "backoff_seconds": 60}])
    pipe = PipeSettings(source=source, prefix="p", overrides={"backoff_seconds": 5},
                        suffix_overrides={"b": {"fizzle_seconds": -3}, "zz": {}},
                        config_file="/etc/vacagent/conf.d/lab.yaml")
    r = resolve(tmp_path, space([pipe]))
    assert r.machinetypes["p-a"].backoff_seconds == 5
    assert "/etc/vacagent/conf.d/lab.yaml: machinetype p-b: fizzle_seconds" in r.errors["p-b"]
    assert any("suffix_overrides.zz" in w for w in r.warnings)


def test_pipe_target_share_is_split_by_the_pipes_own_shares(tmp_path):
    source = pipe_file(tmp_path, [{"suffix": "a", "target_share": 3}, {"suffix": "b", "target_share": 1}])
    r = resolve(tmp_path, space([PipeSettings(source=source, prefix="p", target_share=2.0)]))
    assert r.machinetypes["p-a"].target_share == pytest.approx(1.5)
    assert r.machinetypes["p-b"].target_share == pytest.approx(0.5)


@pytest.mark.parametrize(
    "entries, fragment",
    [
        ([{"suffix": "a"}, {"suffix": "a"}], "already in use"),
        ([{"backoff_seconds": 3}], "suffix: required"),
    ],
)
def test_bad_entries(tmp_path, entries, fragment):
    r = resolve(tmp_path, space([PipeSettings(source=pipe_file(tmp_path, entries), prefix="p")]))
    assert any(fragment in e for e in r.errors.values())


@pytest.mark.parametrize("text", ["{not json", "[]", '{"machinetypes": 3}'])
def test_broken_pipe_keeps_inline_machinetypes(tmp_path, text):
    path = tmp_path / "broken.pipe"
    path.write_text(text)
    r = resolve(tmp_path, space([PipeSettings(source=str(path), prefix="p")], {"inline": {"processors": 2}}))
    assert set(r.machinetypes) == {"inline"}
    assert str(path) in r.errors["pipe p"]


def test_missing_pipe_file(tmp_path):
    r = resolve(tmp_path, space([PipeSettings(source=str(tmp_path / "nope.pipe"), prefix="p")]))
    assert "cannot read" in r.errors["pipe p"]


def test_relative_user_data_is_relative_to_the_pipe(tmp_path):
    (tmp_path / "sub").mkdir()
    source = pipe_file(tmp_path / "sub", [{"suffix": "a", "user_data": "scripts/run.sh",
                                           "user_data_file_cfg": "cfg.txt"}])
    r = resolve(tmp_path, space([PipeSettings(source=source, prefix="p")]))
    m = r.machinetypes["p-a"]
    assert m.user_data == str(tmp_path / "sub" / "scripts" / "run.sh")
    assert m.extra["user_data_file_cfg"] == str(tmp_path / "sub" / "cfg.txt")


def test_inline_name_clash_with_pipe(tmp_path):
    source = pipe_file(tmp_path, [{"suffix": "a"}])
    r = resolve(tmp_path, space([PipeSettings(source=source, prefix="p")], {"p-a": {}}))
    assert "also defined by a pipe" in r.errors["p-a"] and "p-a" not in r.machinetypes


def test_processors_from_vac_keys(tmp_path):
    source = pipe_file(tmp_path, [{"suffix": "a", "min_processors": 2, "max_processors": 8},
                                  {"suffix": "b", "min_processors": 4}, {"suffix": "c", "processors": 3}])
    r = resolve(tmp_path, space([PipeSettings(source=source, prefix="p")]))
    assert [r.machinetypes[f"p-{s}"].processors for s in "abc"] == [8, 4, 3]


def test_build_refuses_bad_name():
    with pytest.raises(ConfigError, match="lowercase"):
        definitions.build("Bad_Name", {}, {"suffix": "x.yaml"})


# ---- https pipes: cache, cache_seconds, failures -----------------------------------

class PipeServer:
    """A real HTTPS server on loopback with a test CA (trustme)."""

    def __init__(self, tmp_path):
        self.body = b""
        self.status = 200
        self.hits = 0
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits += 1
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/lab/lab.pipe"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    s = PipeServer(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(s.ca_file))
    yield s
    s.close()


def test_https_pipe_is_cached_for_cache_seconds(tmp_path, server):
    server.body = json.dumps({"cache_seconds": 100, "machinetypes": [
        {"suffix": "a", "user_data": "user_data.sh"}]}).encode()
    sp = space([PipeSettings(source=server.url, prefix="lab")])
    fetcher = Fetcher(tmp_path / "cache")
    r = definitions.resolve_space(sp, fetcher, T0)
    assert r.machinetypes["lab-a"].user_data == server.url.rsplit("/", 1)[0] + "/user_data.sh"
    definitions.resolve_space(sp, fetcher, T0 + 99)
    assert server.hits == 1
    definitions.resolve_space(sp, fetcher, T0 + 101)
    assert server.hits == 2


def test_failed_fetch_uses_cached_copy_and_warns(tmp_path, server):
    server.body = json.dumps({"cache_seconds": 10, "machinetypes": [{"suffix": "a"}]}).encode()
    sp = space([PipeSettings(source=server.url, prefix="lab")])
    fetcher = Fetcher(tmp_path / "cache")
    definitions.resolve_space(sp, fetcher, T0)
    server.status = 404
    r = definitions.resolve_space(sp, fetcher, T0 + 60)
    assert "lab-a" in r.machinetypes
    assert any("HTTP 404" in w and "cached copy" in w for w in r.warnings)


def test_failed_fetch_without_cache_is_an_error(tmp_path, server):
    server.status = 503
    r = resolve(tmp_path, space([PipeSettings(source=server.url, prefix="lab")]))
    assert "nothing is cached" in r.errors["pipe lab"]


def test_plain_http_is_refused(tmp_path):
    r = resolve(tmp_path, space([PipeSettings(source="http://example.org/x.pipe", prefix="lab")]))
    assert "only https://" in r.errors["pipe lab"]


def test_names_clashing_across_pipes(tmp_path):
    one = pipe_file(tmp_path, [{"suffix": "b-c"}], name="one.pipe")
    two = pipe_file(tmp_path, [{"suffix": "c"}, {"suffix": "d"}], name="two.pipe")
    r = resolve(tmp_path, space([PipeSettings(source=one, prefix="a"), PipeSettings(source=two, prefix="a-b")]))
    assert set(r.machinetypes) == {"a-b-c", "a-b-d"}
    assert r.machinetypes["a-b-c"].source == one
    (message,) = r.errors.values()
    assert two in message and "already in use" in message
