"""`vacagent import-vcycle`: a Vcycle configuration as a vacagent site configuration.

Reads the files as Vcycle does (Python ConfigParser, no interpolation; every
`.conf` in /var/lib/vcycle/shared/vcycle.d, then /etc/vcycle.d, in name
order, then /etc/vcycle.conf; same-named sections merge, later values win;
section names lower-cased and split on whitespace) and prints YAML on
standard output: `[space S]` -> a space (backend, options, limits, APEL),
`[machinetype S MT]` -> an inline machinetype, or a `suffix_overrides`
entry when MT is PREFIX-SUFFIX of a `[vacuum_pipe S PREFIX]` section, which
becomes a pipe (its `target_share` a total split among the pipe's
machinetypes, its other options the pipe's `overrides`).

Every option that is not carried over gets a comment saying why; secrets
(passwords, application credential secrets, EC2 and Google keys) are never
copied, in clear or encoded: the comment says where to put them instead
(clouds.yaml and secure.yaml, an AWS credentials profile, a service-account
key file).  Space options follow the backends' names (docs/backends/*.md;
issues 10 and 11).  The mapping is pure (`convert`); `read` does the I/O.
Neighbours: `cli`, `config` (what the output must satisfy).
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

DEFAULT_FILES = ("/var/lib/vcycle/shared/vcycle.d", "/etc/vcycle.d", "/etc/vcycle.conf")
FILES_DIR = "/var/lib/vcycle/spaces/{space}/machinetypes/{mt}/files"
BACKENDS = {"openstack": "openstack", "ec2": "ec2", "google": "gce"}

# Machinetype options carried over under the same name.
SAME = (
    "target_share", "backoff_seconds", "fizzle_seconds", "max_wallclock_seconds", "min_wallclock_seconds",
    "heartbeat_file", "heartbeat_seconds", "processors_limit", "min_processors", "max_processors",
    "mb_per_processor", "hs06_per_processor", "disk_gb_per_processor", "accounting_fqan", "machine_model",
)
INTEGERS = {"backoff_seconds", "fizzle_seconds", "max_wallclock_seconds", "min_wallclock_seconds",
            "heartbeat_seconds", "processors_limit", "min_processors", "max_processors", "mb_per_processor",
            "processors"}
FLOATS = {"target_share", "hs06_per_processor", "disk_gb_per_processor"}

# Options not carried over, and why.
DROPPED_MACHINETYPE = {
    "x509dn": "machines write their joboutputs with a per-machine token (##user_data_token##), not an X.509 DN",
    "https_x509dn": "machines write their joboutputs with a per-machine token (##user_data_token##), not an X.509 DN",
    "log_joboutputs": "vacagent keeps every machine's joboutputs in finished/<date>/ for finished_retention_days",
    "cernvm_signing_dn": "vacagent neither fetches nor verifies images: register a verified image in the cloud",
    "legacy_proxy": "vacagent makes no X.509 proxies (##user_data_x509_proxy## is not substituted)",
    "user_data_proxy": "vacagent makes no X.509 proxies (##user_data_x509_proxy## is not substituted)",
    "cvmfs_proxy_machinetype": "no list of proxy machines is kept: give user_data_option_cvmfs_proxy a fixed list",
    "remote_joboutputs_url": "joboutputs always come through vacagent's own endpoint",
    "remote_joboutputs_cert": "joboutputs always come through vacagent's own endpoint",
    "remote_joboutputs_key": "joboutputs always come through vacagent's own endpoint",
    "root_public_key": "vacagent uploads no keys: make a keypair in the cloud from this file and set the "
                       "space's options.key_name",
    "machinetype_path": "Vcycle's own bookkeeping",
}
DROPPED_SPACE = {
    "api_version": "the backend's SDK negotiates API versions",
    "glance_api": "the backend's SDK negotiates API versions",
    "version": "the backend's SDK negotiates API versions",
    "service": "the EC2 service name is not needed by boto3",
    "volume_gb_per_processor": "vacagent attaches no volumes; use a flavor with the disk",
    "vacmon_hostport": "there is no VacMon sender: scrape the endpoint's /metrics (docs/operations.md)",
    "shutdown_time": "no fixed shutdown time: lower max_wallclock_seconds, or remove the space, to drain it",
    "url": "",  # mapped per backend below
}
SECRETS = {"password", "password_base64", "cred_secret", "secret_key", "access_key", "private_key", "client_email"}


@dataclass
class Output:
    """The configuration being built, with its comments, as YAML lines."""

    lines: list[str] = field(default_factory=list)

    def comment(self, indent: int, text: str) -> None:
        self.lines.append(" " * indent + "# " + text)

    def key(self, indent: int, key: str, value: Any = None, comment: str | None = None) -> None:
        text = " " * indent + f"{_scalar(key)}:"
        if value is not None:
            text += " " + _scalar(value)
        if comment:
            text += "  # " + comment
        self.lines.append(text)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _scalar(value: Any) -> str:
    """One YAML value on one line (flow style for lists and mappings)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=True).strip().removesuffix(
        "\n...").removesuffix("...").strip()


def files(arguments: Iterable[str]) -> list[Path]:
    """The files Vcycle would read, in its order; a directory stands for its *.conf files."""
    out: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.name.endswith(".conf") and p.is_file())
        elif path.exists():
            out.append(path)
    return out


def read(paths: Iterable[Path]) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    for path in paths:
        with open(path) as f:
            parser.read_file(f, str(path))
    return parser


def space_name(vcycle: str) -> str:
    """vacagent space names are [a-z0-9-]: Vcycle's dots become hyphens."""
    name = re.sub(r"[^a-z0-9-]", "-", vcycle.lower()).strip("-")
    return name[:63].rstrip("-") or "space"


def _number(key: str, value: str) -> Any:
    try:
        if key in INTEGERS:
            return int(float(value))
        if key in FLOATS:
            return float(value)
    except ValueError:
        pass
    return value


def _path(value: str, space: str, mt: str) -> str:
    """Vcycle's rule: absolute, a URL, or relative to the machinetype's files directory."""
    if value.startswith("/") or "://" in value:
        return value
    return f"{FILES_DIR.format(space=space, mt=mt)}/{value}"


def machinetype_options(options: dict[str, str], space: str, mt: str, backend: str, out: Output,
                        indent: int) -> None:
    """Write one machinetype's (or a pipe's overrides') options, with a comment on each one dropped."""
    for key in sorted(options):
        value = options[key].strip()
        if key in SAME:
            out.key(indent, key, _number(key, value))
        elif key == "processors_per_machine":
            out.key(indent, "processors", _number("processors", value), "Vcycle's processors_per_machine")
        elif key in ("flavor_names", "flavor_name"):
            comment = None if backend == "openstack" else f"the {backend} backend picks from its space's candidates"
            out.key(indent, "flavor_names", value.split(), comment)
        elif key == "root_image":
            _root_image(value, space, mt, backend, out, indent)
        elif key == "user_data":
            out.key(indent, "user_data", _path(value, space, mt))
        elif key.startswith("user_data_option_"):
            out.key(indent, key, value)
        elif key.startswith("user_data_file_"):
            out.key(indent, key, _path(value, space, mt))
        elif key in DROPPED_MACHINETYPE:
            out.comment(indent, f"{key} = {value}: not carried over: {DROPPED_MACHINETYPE[key]}")
        else:
            out.comment(indent, f"{key} = {value}: not carried over: not a Vcycle machinetype option vacagent knows")


def _root_image(value: str, space: str, mt: str, backend: str, out: Output, indent: int) -> None:
    if value.startswith("image:"):
        out.key(indent, "root_image", value[len("image:"):], "Vcycle's image:NAME, an image the cloud has")
    elif "://" in value or backend in ("openstack", "ec2", "gce"):
        out.key(indent, "root_image", _path(value, space, mt))
        out.comment(indent, "root_image: vacagent does not upload images: register this one in the cloud and put "
                            "its name or id here")
    else:
        out.key(indent, "root_image", _path(value, space, mt))


def _openstack(name: str, options: dict[str, str], out: Output, indent: int) -> list[str]:
    """OpenStack space options; returns the credential options left out."""
    out.key(indent, "cloud", name, "a clouds.yaml entry: see below")
    if options.get("region"):
        out.key(indent, "region", options["region"])
    if options.get("zones"):
        out.key(indent, "availability_zones", options["zones"].split(), "Vcycle's zones")
    if options.get("security_groups"):
        out.key(indent, "security_groups", options["security_groups"].split())
    if options.get("network_uuid"):
        out.key(indent, "network", options["network_uuid"], "Vcycle's network_uuid")
    if options.get("flavor_names"):
        out.key(indent, "flavor_names", options["flavor_names"].split())
    auth = {"auth_url": options.get("url", "")}
    project = options.get("project_name") or options.get("tenancy_name")
    if options.get("cred_id"):
        auth["application_credential_id"] = options["cred_id"]
        secret = "application_credential_secret"
    else:
        auth.update(username=options.get("username", ""), project_name=project or "",
                    user_domain_name=options.get("domain_name", "default"),
                    project_domain_name=options.get("domain_name", "default"))
        secret = "password"
    region = {"region_name": options["region"]} if options.get("region") else {}
    out.comment(indent, "Vcycle's url, project_name (or tenancy_name), username, domain_name and cred_id go to clouds.yaml;")
    out.comment(indent, "credentials: never copied here (password_base64 is the password, merely encoded). Put this")
    out.comment(indent, "entry in /etc/openstack/clouds.yaml, and the secret in /etc/openstack/secure.yaml,")
    out.comment(indent, "both readable by the vacagent user only:")
    out.comment(indent, f"  clouds.yaml:  clouds: {{{_scalar(name)}: {_scalar({'auth': auth, **region})}}}")
    out.comment(indent, f"  secure.yaml:  clouds: {{{_scalar(name)}: {{auth: {{{secret}: ...}}}}}}")
    used = {"url", "region", "zones", "security_groups", "network_uuid", "flavor_names", "project_name",
            "tenancy_name", "username", "domain_name", "cred_id"}
    return sorted(used)


def _ec2(name: str, options: dict[str, str], out: Output, indent: int) -> list[str]:
    out.key(indent, "region", options.get("region", "us-east-1"), None if options.get("region") else "Vcycle's default")
    out.key(indent, "profile", name, "an AWS credentials profile: see below")
    if options.get("flavor_names"):
        out.key(indent, "instance_types", options["flavor_names"].split(), "Vcycle's flavor_names")
    if options.get("url"):
        out.comment(indent, f"url = {options['url']}: not carried over: the ec2 backend talks to the region's AWS "
                            "endpoint (issue 11 has no endpoint option)")
    out.comment(indent, "credentials: access_key and secret_key never copied here. Put them in the vacagent user's")
    out.comment(indent, f"~/.aws/credentials as [{name}] aws_access_key_id = ... / aws_secret_access_key = ...")
    return ["region", "flavor_names", "url"]


def _gce(name: str, options: dict[str, str], out: Output, indent: int) -> list[str]:
    if options.get("project_id"):
        out.key(indent, "project", options["project_id"], "Vcycle's project_id")
    if options.get("zones"):
        out.key(indent, "zones", options["zones"].split())
    if options.get("flavor_names"):
        out.key(indent, "machine_types", options["flavor_names"].split(), "Vcycle's flavor_names")
    out.key(indent, "credentials_file", f"/etc/vacagent/gce-{name}.json", "a service-account key: see below")
    out.comment(indent, "credentials: client_email and private_key never copied here. Make that file a service")
    out.comment(indent, "account key (JSON, with client_email and private_key), readable by the vacagent user only")
    return ["project_id", "zones", "flavor_names"]


BACKEND_OPTIONS = {"openstack": _openstack, "ec2": _ec2, "gce": _gce}
SPACE_KEYS = {"api", "processors_limit", "gocdb_sitename", "https_host", "https_port", "cleanup_hours",
              "max_processors"}


def _sections(parser: configparser.RawConfigParser) -> tuple[dict, dict, dict, list[str]]:
    spaces: dict[str, dict[str, str]] = {}
    machinetypes: dict[str, dict[str, dict[str, str]]] = {}
    pipes: dict[str, dict[str, dict[str, str]]] = {}
    other = []
    for section in parser.sections():
        words = section.lower().split()
        options = dict(parser.items(section))
        if words[:1] == ["space"] and len(words) == 2:
            spaces.setdefault(words[1], {}).update(options)
        elif words[:1] == ["machinetype"] and len(words) == 3:
            machinetypes.setdefault(words[1], {}).setdefault(words[2], {}).update(options)
        elif words[:1] == ["vacuum_pipe"] and len(words) == 3:
            pipes.setdefault(words[1], {}).setdefault(words[2], {}).update(options)
        else:
            other.append(section)
    return spaces, machinetypes, pipes, other


def convert(parser: configparser.RawConfigParser, sources: list[str]) -> str:
    spaces, machinetypes, pipes, other = _sections(parser)
    out = Output()
    out.comment(0, "vacagent site configuration, imported from Vcycle by `vacagent import-vcycle`")
    out.comment(0, f"from: {', '.join(sources) or '(no files)'}")
    out.comment(0, "check it with: vacagent validate --offline --config THIS_FILE (docs/configuration.md)")
    out.comment(0, "user_data templates keep working, except ##user_data_url##, ##user_data_heartbeat_machines_url##")
    out.comment(0, "and ##user_data_x509_proxy##, which vacagent leaves empty; ##user_data_token## is new")
    out.comment(0, "(docs/machine-protocol.md): a machine needs it to report its heartbeat and shutdown message.")
    for section in other:
        out.comment(0, f"[{section}]: not carried over: not a Vcycle section (space, machinetype, vacuum_pipe)")
    site = next(iter(sorted(spaces)), "vcycle-import")
    out.key(0, "site", re.sub(r"[^A-Za-z0-9.-]", "-", site)[:63].strip(".-") or "vcycle-import",
            "labels every machine of this site: Vcycle had none, the first space's name stands in")
    out.key(0, "state_dir", "/var/lib/vacagent")
    out.key(0, "cycle_seconds", 60, "as Vcycle's")
    hours = [float(s["cleanup_hours"]) for s in spaces.values() if s.get("cleanup_hours")]
    if hours:
        out.key(0, "finished_retention_days", round(max(hours) / 24, 3), "Vcycle's cleanup_hours / 24")
    _endpoint(spaces, out)
    out.key(0, "spaces", None if spaces else {})
    for vcycle_name in sorted(spaces):
        mts, space_pipes = machinetypes.get(vcycle_name, {}), pipes.get(vcycle_name, {})
        if mts or space_pipes:
            _space(vcycle_name, spaces[vcycle_name], mts, space_pipes, out)
            continue
        # vacagent refuses a space with nothing to run: shown, commented out.
        empty = Output()
        _space(vcycle_name, spaces[vcycle_name], mts, space_pipes, empty)
        out.comment(2, f"[space {vcycle_name}]: commented out: it has no machinetypes or pipes (nothing to run)")
        out.lines += [re.sub(r"^(\s*)", r"\1# ", line, count=1) for line in empty.lines]
    for vcycle_name in sorted(set(machinetypes) | set(pipes)):
        if vcycle_name not in spaces:
            out.comment(0, f"machinetypes and pipes of space {vcycle_name}: not carried over: it has no [space] section")
    return out.text()


def _endpoint(spaces: dict[str, dict[str, str]], out: Output) -> None:
    hosts = sorted({(s["https_host"], s.get("https_port", "443")) for s in spaces.values() if s.get("https_host")})
    out.key(0, "endpoint", None, "machines read their features and report here (docs/machine-protocol.md)")
    out.key(2, "listen", "0.0.0.0")
    out.key(2, "port", 8450)
    host, port = hosts[0] if hosts else ("", "443")
    if host:
        url = f"https://{host}" + ("" if port == "443" else f":{port}")
        out.key(2, "public_url", url, "Vcycle's https_host/https_port: a TLS proxy there must forward to port 8450")
    else:
        out.comment(2, "public_url: https://THIS-HOST  (Vcycle used this host's name on port 443: put a TLS proxy "
                       "there forwarding to port 8450, or set tls_cert and tls_key)")
    if len(hosts) > 1:
        out.comment(2, f"other spaces' https_host/https_port not carried over: one endpoint serves every space ({hosts[1:]})")


def _space(vcycle_name: str, options: dict[str, str], mts: dict[str, dict[str, str]],
           space_pipes: dict[str, dict[str, str]], out: Output) -> None:
    name = space_name(vcycle_name)
    api = options.get("api", "").strip().lower()
    backend = BACKENDS.get(api)
    out.key(2, name, None, f"Vcycle's [space {vcycle_name}]" if name != vcycle_name else None)
    if backend is None:
        out.key(4, "backend", api or "unknown", f"Vcycle's api = {api}: no vacagent backend of that name")
    else:
        out.key(4, "backend", backend)
    limit = options.get("processors_limit") or options.get("max_processors")
    if limit:
        out.key(4, "processors_limit", int(float(limit)))
    else:
        limits = [int(float(o["processors_limit"])) for o in mts.values() if o.get("processors_limit")]
        if limits and len(limits) == len(mts) and mts:
            out.key(4, "processors_limit", sum(limits), "Vcycle's space had none: the sum of its machinetypes' limits")
        else:
            out.comment(4, "processors_limit: required: Vcycle's space had none (set the most this space may use)")
    if options.get("gocdb_sitename"):
        out.key(4, "apel", {"gocdb_sitename": options["gocdb_sitename"]}, "APEL records, as Vcycle wrote them "
                                                                          "(docs/accounting.md)")
    out.key(4, "options", None if backend in BACKEND_OPTIONS else {})
    used = set(BACKEND_OPTIONS[backend](name, options, out, 6)) if backend in BACKEND_OPTIONS else set()
    for key in sorted(options):
        if key in used or key in SPACE_KEYS:
            continue
        if key in SECRETS:
            out.comment(4, f"{key}: not copied (a secret): see the credentials note under options")
        elif DROPPED_SPACE.get(key):
            out.comment(4, f"{key} = {options[key]}: not carried over: {DROPPED_SPACE[key]}")
        else:
            out.comment(4, f"{key} = {options[key]}: not carried over: not a Vcycle space option vacagent knows")
    _pipes_and_machinetypes(vcycle_name, backend or api, mts, space_pipes, out)


def _pipes_and_machinetypes(space: str, backend: str, mts: dict[str, dict[str, str]],
                            space_pipes: dict[str, dict[str, str]], out: Output) -> None:
    claimed: set[str] = set()
    if space_pipes:
        out.key(4, "pipes")
    for prefix in sorted(space_pipes):
        options = dict(space_pipes[prefix])
        url = options.pop("vacuum_pipe_url", None)
        out.lines.append(" " * 6 + "- " + f"source: {_scalar(url or '')}"
                         + ("" if url else "  # vacuum_pipe_url missing: Vcycle would refuse this section"))
        out.key(8, "prefix", space_name(prefix))
        share = options.pop("target_share", None)
        if share is not None:
            out.key(8, "target_share", float(share), "a total, split among the pipe's machinetypes by their shares")
        if options:
            out.key(8, "overrides", None, "the section's other options, for every machinetype of the pipe")
            machinetype_options(options, space, prefix, backend, out, 10)
        mine = {mt: o for mt, o in mts.items() if mt.startswith(prefix + "-")}
        if mine:
            out.key(8, "suffix_overrides", None, f"from [machinetype {space} {prefix}-SUFFIX] sections: they win")
            for mt in sorted(mine):
                out.key(10, mt[len(prefix) + 1:])
                machinetype_options(mine[mt], space, mt, backend, out, 12)
        claimed |= set(mine)
        out.comment(8, "Vcycle skips pipe machinetypes whose machine_model is not cernvm3 or vm-raw; vacagent runs "
                       "them all")
    rest = {mt: o for mt, o in mts.items() if mt not in claimed}
    if rest:
        out.key(4, "machinetypes")
    for mt in sorted(rest):
        out.key(6, space_name(mt))
        options = rest[mt]
        if "target_share" not in options:
            out.key(8, "target_share", 0.0, "Vcycle's default: a machinetype with no share gets none")
        machinetype_options(options, space, mt, backend, out, 8)
