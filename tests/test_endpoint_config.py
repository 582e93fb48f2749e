"""The `endpoint` section of the site configuration: defaults, the URL
machines are given, and errors that name the file, the key and the reason."""

from __future__ import annotations

import socket

import pytest

from vacagent import config
from vacagent.config import EndpointSettings
from vacagent.errors import ConfigError

from conftest import REPO

SPACE = """
site: lab.example.org
state_dir: state
spaces:
  lab:
    backend: fake
    processors_limit: 4
    machinetypes:
      lab-a: {user_data: x.sh}
"""


def load(tmp_path, endpoint: str):
    path = tmp_path / "vacagent.yaml"
    path.write_text(SPACE + endpoint)
    return config.load(path), path


def test_no_section_no_endpoint(tmp_path):
    settings, _ = load(tmp_path, "")
    assert settings.endpoint is None


def test_defaults_and_relative_tls_paths(tmp_path):
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "cert.pem").write_text("x")
    (tmp_path / "tls" / "key.pem").write_text("x")
    settings, path = load(tmp_path, "endpoint:\n  tls_cert: tls/cert.pem\n  tls_key: tls/key.pem\n"
                                    "  public_url: https://vac.lab.example.org:8443/\n")
    assert settings.endpoint == EndpointSettings(
        listen="127.0.0.1", port=8450, public_url="https://vac.lab.example.org:8443",
        tls_cert=str(tmp_path / "tls" / "cert.pem"), tls_key=str(tmp_path / "tls" / "key.pem"),
        max_message_bytes=4096, max_file_bytes=1 << 20, max_joboutputs_bytes=16 << 20, config_file=str(path),
    )


@pytest.mark.parametrize(
    "settings, bound, url",
    [
        (EndpointSettings(listen="127.0.0.1", port=8450), None, "http://127.0.0.1:8450"),
        (EndpointSettings(listen="127.0.0.1", port=0), None, None),
        (EndpointSettings(listen="127.0.0.1", port=0), 40123, "http://127.0.0.1:40123"),
        (EndpointSettings(listen="::1", port=8450), None, "http://[::1]:8450"),
        (EndpointSettings(listen="0.0.0.0", port=8443, tls_cert="c", tls_key="k"), None,
         f"https://{socket.getfqdn()}:8443"),
        (EndpointSettings(port=0, public_url="https://vac.example.org/lab"), 40123, "https://vac.example.org/lab"),
    ],
)
def test_base_url(settings, bound, url):
    assert settings.base_url(bound) == url


@pytest.mark.parametrize(
    "endpoint, key, reason",
    [
        ("endpoint:\n  port: http\n", "endpoint.port", "is not of type 'integer'"),
        ("endpoint:\n  port: 70000\n", "endpoint.port", "is greater than the maximum"),
        ("endpoint:\n  listen: ''\n", "endpoint.listen", "should be non-empty"),
        ("endpoint:\n  public_url: ftp://x.org\n", "endpoint.public_url", "does not match"),
        ("endpoint:\n  public_url: https://x.org/?a=b\n", "endpoint.public_url", "does not match"),
        ("endpoint:\n  max_file_bytes: 0\n", "endpoint.max_file_bytes", "less than the minimum"),
        ("endpoint:\n  tls: yes\n", "endpoint", "Additional properties are not allowed ('tls'"),
        ("endpoint: on\n", "endpoint", "is not of type 'object'"),
        ("endpoint:\n  tls_cert: cert.pem\n", "endpoint.tls_key", "required with endpoint.tls_cert"),
        ("endpoint:\n  tls_key: key.pem\n", "endpoint.tls_cert", "required with endpoint.tls_key"),
        ("endpoint:\n  tls_cert: nosuch.pem\n  tls_key: nosuch.pem\n", "endpoint.tls_cert", "cannot read"),
        ("endpoint:\n  max_file_bytes: 2000\n  max_joboutputs_bytes: 1000\n", "endpoint.max_file_bytes",
         "more than endpoint.max_joboutputs_bytes 1000"),
    ],
)
def test_errors_name_file_key_and_reason(tmp_path, endpoint, key, reason):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, endpoint)
    message = str(error.value)
    assert f"{tmp_path / 'vacagent.yaml'}: {key}: " in message
    assert reason in message


def test_conf_d_file_is_named(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "endpoint.yaml").write_text("endpoint:\n  port: -1\n")
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'conf.d' / 'endpoint.yaml'}: endpoint.port: "):
        load(tmp_path, "")


@pytest.mark.parametrize("path, url", [("etc/demo.yaml", "http://127.0.0.1:8450"),
                                       ("etc/vacagent.example.yaml", "https://vacagent.lab.example.org")])
def test_shipped_configurations_run_an_endpoint(path, url):
    assert config.load(REPO / path).endpoint.base_url() == url
