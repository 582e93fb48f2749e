"""`vacagent import-vcycle`: Vcycle's configuration in, a vacagent configuration that validates out.

Every option of the manual page (tests/fixtures/vcycle/vcycle.conf.5) is given
in a configuration of our own and must come out as a key or as a comment; the
output must pass `vacagent validate --offline`; credentials never appear in it.
"""

import base64
import re
from pathlib import Path

import pytest
import yaml

from vacagent import cli
from vacagent.backends.registry import BACKENDS

FIXTURES = Path(__file__).parent / "fixtures" / "vcycle"  # Vcycle's own files, unchanged (README there)
EXAMPLE = FIXTURES / "example.vcycle.conf"
MANUAL = FIXTURES / "vcycle.conf.5"

SECRETS = {"password_base64": base64.b64encode(b"Hunter2-PassWord").decode(), "cred_secret": "AppCredSecret-77x",
           "access_key": "AKIAEXAMPLEKEY0001", "secret_key": "wJalrXUtnFEMI-secret-K7MDENG"}
NUMBERS = {"processors_limit": "16", "cleanup_hours": "48", "min_processors": "1", "max_processors": "4",
           "hs06_per_processor": "10.5", "mb_per_processor": "2048", "target_share": "2.5",
           "backoff_seconds": "300", "fizzle_seconds": "400", "max_wallclock_seconds": "86400",
           "heartbeat_seconds": "600", "https_port": "8443", "shutdown_time": "1900000000",
           "volume_gb_per_processor": "10"}
VALUES = {"heartbeat_file": "vm-heartbeat", "user_data": "user_data", "user_data_file_reporter": "reporter.sh",
          "root_image": "image:cernvm4-2024", "https_host": "vcycle.lab.example.org", "url": "https://cloud.example.org:5000/v3",
          "legacy_proxy": "False", "user_data_proxy": "False", **NUMBERS, **SECRETS}


def manual_options() -> dict[str, list[str]]:
    """Option names of each section of the manual page: `.B name` lines under each `.SH`."""
    found: dict[str, list[str]] = {}
    heading = ""
    for line in MANUAL.read_text().splitlines():
        if line.startswith(".SH "):
            heading = line[4:].strip()
        elif line.startswith(".B ") and re.fullmatch(r"[a-z0-9_]+(XXX)?", line[3:].strip()) and "SECTIONS" in heading:
            found.setdefault(heading, [])
            if line[3:].strip() not in found[heading]:
                found[heading].append(line[3:].strip())
    return found


def import_text(capsys, *args) -> str:
    assert cli.main(["import-vcycle", "--site", "lab.example.org", *map(str, args)]) == 0
    return capsys.readouterr().out


def offline(capsys, path: Path) -> tuple[int, str]:
    rc = cli.main(["validate", "--offline", "--config", str(path)])
    return rc, capsys.readouterr().out


def assert_valid_offline(capsys, text: str, tmp_path: Path) -> str:
    path = tmp_path / "vacagent.yaml"
    path.write_text(text)
    rc, out = offline(capsys, path)
    # A backend another helper has not landed yet is the one error allowed; once it is registered, none is.
    errors = [line for line in out.splitlines() if ": error: " in line
              and not any(f"{b!r} is unknown" in line for b in ("openstack", "ec2", "gce") if b not in BACKENDS)]
    assert not errors, out
    assert rc == 0 or "is unknown" in out, out
    return out


def test_the_manual_page_lists_the_options_we_test():
    options = manual_options()
    assert {"[SPACE ...] SECTIONS", "OPENSTACK SPACE SECTIONS", "EC2 SPACE SECTIONS",
            "[MACHINETYPE ... ...] SECTIONS"} <= set(options)
    assert "password_base64" in options["OPENSTACK SPACE SECTIONS"]
    assert "user_data_file_XXX" in options["[MACHINETYPE ... ...] SECTIONS"]


def test_the_example_configuration(capsys, tmp_path):
    text = import_text(capsys, EXAMPLE)
    doc = yaml.safe_load(text)
    space = doc["spaces"]["vcycle01-example-com"]
    assert space["backend"] == "openstack" and space["processors_limit"] == 1
    assert space["options"]["cloud"] == "vcycle01-example-com"
    mt = space["machinetypes"]["example"]
    assert mt == {"processors_limit": 1, "processors": 1, "flavor_names": ["small"], "backoff_seconds": 600,
                  "fizzle_seconds": 600, "max_wallclock_seconds": 86400, "target_share": 1.0,
                  "root_image": "cernvm3", "user_data": "https://repo.gridpp.ac.uk/vacproject/example/user_data"}
    for dropped in ("x509dn = ", "root_public_key = ", "log_joboutputs = "):
        assert f"# {dropped}" in text and "not carried over" in text
    assert "openstack image create --disk-format iso" in text
    assert "UEFTU3dvcmQ=" not in text and "PASSword" not in text
    assert "password: <the password_base64 of [space vcycle01.example.com], base64-decoded>" in text
    out = assert_valid_offline(capsys, text, tmp_path)
    assert "not checked: space vcycle01-example-com: machinetype example: user_data: https://" in out
    assert "options.clouds_file: /etc/vacagent/clouds.yaml: credentials, not read (MISSING" in out


def _section(title: str, options: list[str], extra: dict[str, str] | None = None) -> str:
    lines = [f"[{title}]"] + [f"{o} = {VALUES.get(o, f'{o}-value')}" for o in options]
    lines += [f"{k} = {v}" for k, v in (extra or {}).items()]
    return "\n".join(lines) + "\n\n"


@pytest.fixture
def full(tmp_path):
    """A configuration giving every option of the manual page, in every section type."""
    options = manual_options()
    common = [o for o in options["[SPACE ...] SECTIONS"] if o != "api"]
    machinetype = [o.replace("XXX", "reporter" if "file" in o else "cvmfs_proxy")
                   for o in options["[MACHINETYPE ... ...] SECTIONS"]]
    os_opts = [o for o in options["OPENSTACK SPACE SECTIONS"] if o not in ("url", "cred_id", "cred_secret")]
    ec2 = [o for o in options["EC2 SPACE SECTIONS"] if o != "url"]
    text = (_section("space os.lab.example.org", ["api", "url", *common, *os_opts], {"api": "openstack"})
            + _section("machinetype os.lab.example.org alice", machinetype)
            + _section("space appcred.lab.example.org", ["url", "cred_id", "cred_secret", "username",
                                                         "processors_limit"], {"api": "openstack"})
            + _section("machinetype appcred.lab.example.org one", ["target_share"], {"user_data": "/etc/hosts"})
            + _section("space aws.lab.example.org", ["url", "processors_limit", *ec2], {"api": "ec2"})
            + _section("machinetype aws.lab.example.org burst", ["target_share", "root_image", "user_data",
                                                                 "flavor_names", "processors_per_machine"],
                       {"processors_per_machine": "2"})
            + _section("space gcp.lab.example.org", ["processors_limit"],
                       {"api": "google", "project": "lab-123", "zones": "europe-west2-a europe-west2-b",
                        "credentials_file": "/etc/vacagent/gce.json", "frobnicate": "1"})
            + _section("machinetype gcp.lab.example.org cheap", ["user_data"], {"flavor_names": "e2-standard-4"})
            + _section("vacuum_pipe os.lab.example.org lhcb",
                       [], {"vacuum_pipe_url": "https://lhcb.example.org/lhcb.pipe", "target_share": "6",
                            "max_wallclock_seconds": "172800", "user_data_option_site": "UKI-LT2"})
            + _section("machinetype os.lab.example.org lhcb-prod", ["heartbeat_seconds"])
            + _section("settings", [], {"log_level": "debug"})
            + _section("vacmon_server x", [], {"port": "8884"})
            + _section("space other.example.org", [], {"api": "azure"}))
    conf = tmp_path / "vcycle.conf"
    conf.write_text(text)
    vdir = tmp_path / "var-lib-vcycle"
    for space, mt in (("os.lab.example.org", "alice"), ("aws.lab.example.org", "burst"),
                      ("gcp.lab.example.org", "cheap")):
        files = vdir / "spaces" / space / "machinetypes" / mt / "files"
        files.mkdir(parents=True)
        (files / "user_data").write_text("#!/bin/sh\n##user_data_option_cvmfs_proxy##\n")
        (files / "reporter.sh").write_text("echo report\n")
    return conf, vdir, options


def test_every_option_of_the_manual_is_carried_over_or_commented(capsys, tmp_path, full):
    conf, vdir, options = full
    text = import_text(capsys, conf, "--vcycle-dir", vdir)
    for heading, names in options.items():
        for name in names:
            name = name.replace("XXX", "reporter" if "file" in name else "cvmfs_proxy")
            assert re.search(rf"(^\s*{name}:|#.*\b{name} = |#\s+{name}:|# {name}$|<the {name} of)", text, re.M), (heading, name)
    doc = yaml.safe_load(text)
    spaces = doc["spaces"]
    assert set(spaces) == {"os-lab-example-org", "appcred-lab-example-org", "aws-lab-example-org",
                           "gcp-lab-example-org"}
    appcred = text[text.index("appcred-lab-example-org:"):text.index("cloud: appcred-lab-example-org")]
    assert "application_credential_id: cred_id-value" in appcred and "auth_type: v3applicationcredential" in appcred
    assert "username" not in appcred.split("clouds:")[1]
    assert "# username: not carried over: the application credential (cred_id, cred_secret) is used" in text
    os_space = spaces["os-lab-example-org"]
    assert os_space["options"]["availability_zones"] == ["zones-value"]
    assert os_space["options"]["network"] == "network_uuid-value" and os_space["processors_limit"] == 16
    alice = os_space["machinetypes"]["alice"]
    assert alice["user_data"] == str(vdir / "spaces/os.lab.example.org/machinetypes/alice/files/user_data")
    assert alice["user_data_file_reporter"].endswith("alice/files/reporter.sh")
    assert alice["hs06_per_processor"] == 10.5 and alice["max_processors"] == 4 and alice["root_image"] == "cernvm4-2024"
    assert alice["user_data_option_cvmfs_proxy"] == "user_data_option_cvmfs_proxy-value"
    pipe = os_space["pipes"][0]
    assert pipe["source"] == "https://lhcb.example.org/lhcb.pipe" and pipe["target_share"] == 6.0
    assert pipe["overrides"] == {"max_wallclock_seconds": 172800, "user_data_option_site": "UKI-LT2"}
    assert pipe["suffix_overrides"] == {"prod": {"heartbeat_seconds": 600}}
    assert "lhcb-prod" not in os_space["machinetypes"]
    aws = spaces["aws-lab-example-org"]
    assert aws["options"] == {"endpoint_url": "https://cloud.example.org:5000/v3", "region": "region-value",
                              "profile": "aws-lab-example-org"}
    assert aws["machinetypes"]["burst"]["instance_type"] == ["flavor_names-value"]
    assert aws["machinetypes"]["burst"]["processors"] == 2
    gcp = spaces["gcp-lab-example-org"]
    assert gcp["options"] == {"project": "lab-123", "zones": ["europe-west2-a", "europe-west2-b"],
                              "credentials_file": "/etc/vacagent/gce.json"}
    assert gcp["machinetypes"]["cheap"]["machine_type"] == ["e2-standard-4"]
    assert gcp["machinetypes"]["cheap"]["target_share"] == 0  # Vcycle's default share, not vacagent's 1
    assert doc["endpoint"]["public_url"] == "https://vcycle.lab.example.org:8443"
    assert doc["finished_retention_days"] == 2
    for note in ("# frobnicate = 1 (", "[settings] log_level = debug", "[vacmon_server x]", "api = azure has no vacagent backend"):
        assert note in text, note
    assert_valid_offline(capsys, text, tmp_path)


def test_credentials_never_appear_in_clear(capsys, tmp_path, full):
    conf, vdir, _ = full
    conf.write_text(conf.read_text() + "[machinetype os.lab.example.org bob]\nuser_data_option_token = Tok-9f8e7d\n"
                    "api_password = Unknown-Secret-1\nuser_data = /etc/hosts\n")
    text = import_text(capsys, conf, "--vcycle-dir", vdir, "--secrets-dir", tmp_path / "etc")
    for secret in [*SECRETS.values(), "Hunter2-PassWord", "Tok-9f8e7d", "Unknown-Secret-1"]:
        assert secret not in text, secret
    bob = yaml.safe_load(text)["spaces"]["os-lab-example-org"]["machinetypes"]["bob"]
    token = tmp_path / "etc/secrets/os-lab-example-org/bob/token"
    assert bob["user_data_file_token"] == str(token) and "user_data_option_token" not in bob
    assert "api_password = (a credential: not shown)" in text
    assert "aws_secret_access_key = <the secret_key of [space aws.lab.example.org]>" in text
    path = tmp_path / "vacagent.yaml"
    path.write_text(text)
    rc, out = offline(capsys, path)
    assert rc == 1 and f"machinetype bob: user_data_file_token: {token}: cannot read" in out
    token.parent.mkdir(parents=True)
    token.write_text("Tok-9f8e7d")
    assert_valid_offline(capsys, text, tmp_path)


def test_a_directory_is_read_in_name_order_and_later_values_win(capsys, tmp_path):
    conf_d = tmp_path / "vcycle.d"
    conf_d.mkdir()
    (conf_d / "20-late.conf").write_text("[machinetype s.example.org mt]\nfizzle_seconds = 900\n")
    (conf_d / "10-early.conf").write_text("[space s.example.org]\napi = openstack\nprocessors_limit = 4\n"
                                          "[machinetype s.example.org mt]\nfizzle_seconds = 100\n"
                                          "backoff_seconds = 100\ntarget_share = 1\nuser_data = /etc/hosts\n")
    (conf_d / "ignored.txt").write_text("[space nope]\n")
    main = tmp_path / "vcycle.conf"
    main.write_text("[machinetype s.example.org mt]\nbackoff_seconds = 700\n[DEFAULT]\nheartbeat_seconds = 60\n")
    text = import_text(capsys, conf_d, main)
    mt = yaml.safe_load(text)["spaces"]["s-example-org"]["machinetypes"]["mt"]
    assert mt["fizzle_seconds"] == 900 and mt["backoff_seconds"] == 700 and mt["heartbeat_seconds"] == 60
    assert "nope" not in text
    assert text.index(f"{conf_d}/10-early.conf") < text.index(f"{conf_d}/20-late.conf") < text.index(f"{main}.")
    assert_valid_offline(capsys, text, tmp_path)


@pytest.mark.parametrize("conf, expected", [
    ("[space s.x]\napi = openstack\n[machinetype s.x mt]\nfizzle_seconds = soon\n",
     "vcycle.conf: [machinetype s.x mt] fizzle_seconds: 'soon' is not a whole number"),
    ("[space s.x]\nprocessors_limit = 3\n", "vcycle.conf: [space s.x]: api: required"),
    ("[machinetype nospace mt]\ntarget_share = 1\n", "vcycle.conf: [machinetype nospace mt]: no [space nospace] section"),
    ("[space s.x]\napi = ec2\n[vacuum_pipe s.x lhcb]\ntarget_share = 1\n",
     "vcycle.conf: [vacuum_pipe s.x lhcb]: vacuum_pipe_url: required"),
    ("[space s.x]\napi = ec2\n[vacuum_pipe s.x lhcb]\nvacuum_pipe_url = https://x/p\ntarget_share = half\n",
     "vcycle.conf: [vacuum_pipe s.x lhcb] target_share: 'half' is not a number"),
    ("[machinetype s.x]\ntarget_share = 1\n", "vcycle.conf: [machinetype s.x]: a machinetype section takes 2 name(s)"),
    ("[space S_X]\napi = ec2\n", "vcycle.conf: [space s_x]: space name 's_x' must be"),
    ("[space a.b]\napi = ec2\n[space a-b]\napi = ec2\n",
     "vcycle.conf: [space a-b]: space name 'a-b' becomes 'a-b' (vacagent names have no periods), as another"),
    ("api = ec2\n", "vcycle.conf: not a Vcycle configuration file: line 1: an option before any [section]"),
    ("[space s.x]\napi\n", "vcycle.conf: not a Vcycle configuration file: line 2: cannot parse 'api'"),
])
def test_bad_input_names_file_section_option_and_reason(capsys, tmp_path, conf, expected):
    path = tmp_path / "vcycle.conf"
    path.write_text(conf)
    assert cli.main(["import-vcycle", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(tmp_path) in err, err


def test_an_unreadable_file_is_named(capsys, tmp_path):
    assert cli.main(["import-vcycle", str(tmp_path / "missing.conf")]) == 2
    assert f"{tmp_path}/missing.conf: cannot read: No such file or directory" in capsys.readouterr().err


def test_offline_validation_touches_no_network_and_says_what_it_left(capsys, tmp_path):
    user_data = tmp_path / "ud"
    user_data.write_text("#!/bin/sh\n")
    pipe = tmp_path / "local.pipe"
    pipe.write_text('{"machinetypes": [{"suffix": "prod", "user_data": "ud", "fizzle_seconds": 60}]}')
    config = tmp_path / "v.yaml"
    config.write_text(f"site: x\nspaces:\n  lab:\n    backend: local\n    pipes:\n"
                      f"      - {{source: {pipe}, prefix: loc}}\n"
                      f"      - {{source: 'https://unreachable.invalid/p.pipe', prefix: far, "
                      f"overrides: {{fizzle_seconds: -1, user_data: /nonexistent/ud}}}}\n"
                      f"    machinetypes:\n      inline: {{user_data: {tmp_path}/missing}}\n")
    rc, out = offline(capsys, config)
    assert rc == 1
    assert "space lab: ok loc-prod" in out and "ok inline" in out
    assert f"machinetype inline: user_data: {tmp_path}/missing: cannot read" in out
    assert "pipes.far.overrides.fizzle_seconds: -1 is less than the minimum of 0" in out
    assert "far-* (overrides): user_data: /nonexistent/ud: cannot read" in out
    assert "not checked: space lab: pipe far: https://unreachable.invalid/p.pipe (remote: not fetched" in out
    assert "configuration INVALID (offline)" in out


def test_offline_validation_of_a_pipe(capsys):
    assert cli.main(["validate", "--offline", str(Path(__file__).parent / "fixtures" / "example.pipe")]) == 0
    assert "ok pipe-prod" in capsys.readouterr().out
    assert cli.main(["validate", "--offline", "https://unreachable.invalid/x.pipe"]) == 0
    assert "not checked: https://unreachable.invalid/x.pipe (remote: not fetched)" in capsys.readouterr().out
