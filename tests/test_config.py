"""Site configuration: validated once; every error names file, key and reason."""

import os
from pathlib import Path

import pytest

from vacagent import config
from vacagent.errors import ConfigError

from conftest import REPO

MINIMAL = """
site: lab.example.org
state_dir: state
spaces:
  local:
    backend: local
    machinetypes:
      mt-a: {user_data: scripts/a.sh}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_minimal_config_and_defaults(tmp_path):
    s = config.load(write(tmp_path / "etc" / "vacagent.yaml", MINIMAL))
    assert s.site == "lab.example.org"
    assert s.state_dir == tmp_path / "etc" / "state"  # relative to the file
    assert s.cycle_seconds == 60 and s.finished_retention_days == 7
    space = s.spaces["local"]
    assert space.limits.processors_limit == os.cpu_count()  # local default
    assert space.limits.budget == max(1, -(-space.limits.processors_limit // 10))
    assert space.limits.max_starting_seconds == 3600
    assert space.machinetypes["mt-a"]["user_data"] == str(tmp_path / "etc" / "scripts" / "a.sh")


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("site: x\ncycle_second: 5\nspaces: {}\n", ["(top level)", "cycle_second"]),
        ("site: x\ncycle_seconds: -1\n", ["cycle_seconds", "less than or equal to the minimum"]),
        ("site: x\nspaces:\n  s1:\n    backend: local\n    processors_limit: zero\n",
         ["spaces.s1.processors_limit", "'zero' is not of type 'integer'"]),
        ("site: x\nspaces:\n  Bad_Name:\n    backend: local\n", ["spaces", "Bad_Name"]),
        ("site: x\nspaces:\n  s1:\n    processors_limit: 4\n", ["spaces.s1", "'backend' is a required property"]),
        ("site: x\nspaces:\n  s1:\n    backend: ec2\n    machinetypes: {a: {}}\n",
         ["spaces.s1.processors_limit: required for backend 'ec2'"]),
        ("site: x\nspaces:\n  s1:\n    backend: local\n", ["spaces.s1: no pipes and no machinetypes"]),
        ("spaces:\n  s1:\n    backend: local\n    machinetypes: {a: {}}\n", ["site: required"]),
        ("site: x\n  bad: indentation\n", ["not valid YAML", "line 2"]),
        ("- a list\n", ["(top level): must be a mapping"]),
        ("site: x\nspaces:\n  s1:\n    backend: local\n    pipes:\n      - {source: a.pipe, prefix: p}\n"
         "      - {source: b.pipe, prefix: p}\n", ["spaces.s1.pipes.1.prefix", "used twice"]),
        ("site: x\nspaces:\n  s1:\n    backend: local\n    pipes:\n      - {source: a.pipe}\n",
         ["spaces.s1.pipes.0", "'prefix' is a required property"]),
    ],
)
def test_errors_name_file_key_and_reason(tmp_path, text, fragments):
    path = write(tmp_path / "vacagent.yaml", text)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    message = str(e.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_conf_d_is_merged_after_the_main_file(tmp_path):
    main = write(tmp_path / "vacagent.yaml", MINIMAL + "cycle_seconds: 30\n")
    write(tmp_path / "conf.d" / "10-more.yaml",
          "cycle_seconds: 10\nspaces:\n  cloud:\n    backend: fake\n    processors_limit: 5\n"
          "    machinetypes: {b: {}}\n")
    s = config.load(main)
    assert set(s.spaces) == {"local", "cloud"}
    assert s.cycle_seconds == 10
    assert s.spaces["cloud"].config_file == str(tmp_path / "conf.d" / "10-more.yaml")
    assert s.files == (str(main), str(tmp_path / "conf.d" / "10-more.yaml"))


def test_a_space_defined_twice_names_both_files(tmp_path):
    main = write(tmp_path / "vacagent.yaml", MINIMAL)
    other = write(tmp_path / "conf.d" / "dup.yaml", "spaces:\n  local:\n    backend: local\n"
                                                    "    machinetypes: {b: {}}\n")
    with pytest.raises(ConfigError) as e:
        config.load(main)
    assert f"{other}: spaces.local: already defined in {main}" in str(e.value)


def test_every_problem_is_reported_at_once(tmp_path):
    main = write(tmp_path / "vacagent.yaml", "site: x\ncycle_seconds: fast\n")
    write(tmp_path / "conf.d" / "a.yaml", "spaces:\n  s:\n    backend: local\n    max_machines: -1\n")
    with pytest.raises(ConfigError) as e:
        config.load(main)
    assert "cycle_seconds" in str(e.value) and "max_machines" in str(e.value)


def test_missing_file_says_how_to_give_one(tmp_path):
    with pytest.raises(ConfigError, match="--config FILE"):
        config.load(tmp_path / "nope.yaml")


def test_environment_variable_names_the_default(tmp_path, monkeypatch):
    path = write(tmp_path / "site.yaml", MINIMAL)
    monkeypatch.setenv("VACAGENT_CONFIG", str(path))
    assert config.load().site == "lab.example.org"


@pytest.mark.parametrize("path", ["etc/demo.yaml"])
def test_shipped_configurations_load(path):
    s = config.load(REPO / path)
    assert s.spaces


def test_example_configuration_is_valid(tmp_path):
    s = config.load(REPO / "etc" / "vacagent.example.yaml")
    assert s.site == "lab.example.org" and s.spaces["localhost"].backend == "local"


def test_a_kubeconfig_option_is_relative_to_the_file_that_names_it(tmp_path):
    text = MINIMAL.replace("backend: local", "backend: kubernetes\n    processors_limit: 8\n"
                           "    options: {kubeconfig: kube/config, namespace: vac}") + "endpoint: {port: 0}\n"
    s = config.load(write(tmp_path / "etc" / "vacagent.yaml", text))
    assert s.spaces["local"].options == {"kubeconfig": str(tmp_path / "etc" / "kube" / "config"), "namespace": "vac"}


@pytest.mark.parametrize("backend", ["kubernetes", "openstack", "ec2", "gce"])
def test_a_space_on_other_hosts_without_an_endpoint_is_refused(tmp_path, backend):
    text = MINIMAL.replace("backend: local", f"backend: {backend}\n    processors_limit: 8")
    with pytest.raises(ConfigError) as e:
        config.load(write(tmp_path / "etc" / "vacagent.yaml", text))
    assert f"spaces.local.backend: '{backend}' runs machines on other hosts" in str(e.value)
    assert "add an endpoint: section" in str(e.value)


def test_example_kubernetes_space_is_valid_once_uncommented(tmp_path):
    text = (REPO / "etc" / "vacagent.example.yaml").read_text()
    start = text.index("  # lab-k8s:")
    block = "\n".join(line.replace("  # ", "  ", 1) for line in text[start:].splitlines())
    s = config.load(write(tmp_path / "vacagent.yaml", text[:start] + block + "\n"))
    space = s.spaces["lab-k8s"]
    assert space.backend == "kubernetes" and space.options["namespace"] == "vacagent"
    assert space.pipes[0].overrides["pod_overrides"] == {"nodeSelector": {"pool": "batch"}}



@pytest.mark.parametrize("space,backend,key,value", [
    ("aws-london", "ec2", "region", "eu-west-2"),
    ("gcp-london", "gce", "zones", ["europe-west2-a", "europe-west2-b"]),
])
def test_example_cloud_space_is_valid_once_uncommented(space, backend, key, value, tmp_path):
    text = (REPO / "etc" / "vacagent.example.yaml").read_text()
    start = text.index(f"  # {space}:")
    end = text.index("\n\n", start)
    block = "\n".join(line.replace("  # ", "  ", 1) for line in text[start:end].splitlines())
    s = config.load(write(tmp_path / "vacagent.yaml", text[:start] + block + "\n"))
    assert s.spaces[space].backend == backend and s.spaces[space].options[key] == value
    assert s.spaces[space].options["spot"] is True
