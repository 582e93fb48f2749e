"""`vacagent import-vcycle`: a Vcycle configuration -> a vacagent site configuration (commented YAML).

Spaces become spaces (api -> backend, space options -> backend options),
machinetype sections become inline machinetypes, `[vacuum_pipe S PREFIX]`
sections become pipes (the section's target_share is the pipe's total,
split among its machinetypes by their own shares, as in both Vcycle and
`definitions`), and `[machinetype S PREFIX-SUFFIX]` sections of a pipe
become its `suffix_overrides`.  Every option not carried over gets a
comment saying why; credentials are never written: the output names the
file the backend reads them from and says what the operator must put there.

Neighbours: `vcycle_read` (the input), `vcycle_options` (the tables),
`vcycle_machinetype` (one machinetype's options), `commented_yaml` (the output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vacagent import vcycle_options as opts
from vacagent.commented_yaml import Node, render
from vacagent.errors import ConfigError
from vacagent.model import NAME_RE
from vacagent.schema import SPACE_SCHEMA
from vacagent.vcycle_machinetype import Context, convert_options, integer, number, shown
from vacagent.vcycle_read import Section


@dataclass
class Importer:
    site: str
    default_host: str  # Vcycle's default https_host: the host it ran on
    vcycle_dir: Path = Path("/var/lib/vcycle")
    secrets_dir: Path = Path("/etc/vacagent")
    problems: list[str] = field(default_factory=list)
    endpoint: dict[str, tuple[str, str]] = field(default_factory=dict)  # https_host/port -> (value, where)
    retention_hours: list[float] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.problems.append(message)

    # -- spaces -------------------------------------------------------------------------------------
    def space(self, section: Section, out: Node) -> Context | None:
        vname = section.words[0]
        name = vname.replace(".", "-")
        if not NAME_RE.match(name):
            self.fail(f"{section.where()}: space name {vname!r} must be lowercase letters, digits, periods and "
                      "hyphens (max 63)")
            return None
        api = section.options.get("api")
        if api is None:
            self.fail(f"{section.where()}: api: required (openstack, ec2 or google)")
            return None
        backend = opts.API_BACKENDS.get(api.value.strip().lower())
        if backend is None:
            out.note(f"[{section.title}] ({section.where()}): not carried over: api = {api.value} has no vacagent "
                     f"backend (known: {', '.join(sorted(opts.API_BACKENDS))}); its machinetypes and pipes are "
                     "left out too")
            return None
        if name in out.child("spaces").items:
            self.fail(f"{section.where()}: space name {vname!r} becomes {name!r} (vacagent names have no periods), "
                      "as another space's does: rename one")
            return None
        node = out.child("spaces").child(name, f"From [{section.title}] in {', '.join(section.files)}" +
                                         (f" (vacagent space names have no periods: {vname} -> {name})"
                                          if name != vname else ""))
        node.set("backend", backend, f"api = {api.value}")
        ctx = Context(space=vname, name=name, backend=backend, vcycle_dir=self.vcycle_dir,
                      secrets_dir=self.secrets_dir, fail=self.fail)
        self._space_options(section, node, ctx)
        return ctx

    def _space_options(self, section: Section, node: Node, ctx: Context) -> None:
        options = Node()
        backend_names = opts.BACKEND_OPTIONS[ctx.backend]
        auth: dict[str, tuple[str, str]] = {}  # clouds.yaml auth key -> (value, Vcycle option)
        secrets: dict[str, str] = {}
        secret_names = opts.OPENSTACK_SECRETS if ctx.backend == "openstack" else opts.EC2_SECRETS
        for option, item in section.options.items():
            where = section.where(option)
            if option == "api":
                continue
            if option in opts.SPACE_LIMITS:
                value = integer(item.value, where, self.fail)
                key = opts.SPACE_LIMITS[option]
                if value is not None and not (key in node.items and option == "max_processors"):
                    node.set(key, value, f"{option} = {item.value}")
            elif option in ("https_host", "https_port"):
                self.endpoint.setdefault(option, (item.value.strip(), where))
            elif option == "cleanup_hours":
                hours = integer(item.value, where, self.fail)
                if hours is not None:
                    self.retention_hours.append(hours)
            elif option == "gocdb_sitename":
                self._gocdb(item.value, node)
            elif ctx.backend == "openstack" and option in opts.OPENSTACK_AUTH:
                auth[opts.OPENSTACK_AUTH[option]] = (item.value.strip(), option)
            elif ctx.backend == "openstack" and option == "domain_name":
                auth["user_domain_name"] = auth["project_domain_name"] = (item.value.strip(), option)
            elif option in secret_names:
                secrets[secret_names[option]] = option
            elif option in backend_names:
                key = backend_names[option]
                value = item.value.split() if key in opts.LIST_OPTIONS else item.value.strip()
                options.set(key, value, f"{option} = {item.value}")
            elif option in opts.SPACE_DROPPED:
                node.note(f"{option} = {item.value}: not carried over: {opts.SPACE_DROPPED[option]}")
            else:
                node.note(f"{option} = {shown(option, item.value)} ({where}): unknown option of a {ctx.backend} "
                          "space: not carried over")
        if "processors_limit" not in node.items:
            node.note("Vcycle space without processors_limit: vacagent reads the project's quota (OpenStack) "
                      "or needs processors_limit set here")
        if ctx.backend == "openstack":
            self._openstack_auth(section, ctx, options, auth, secrets)
        elif ctx.backend == "ec2":
            self._ec2_credentials(section, ctx, options, secrets)
        node.set("options", options)

    def _gocdb(self, value: str, node: Node) -> None:
        if "apel" in SPACE_SCHEMA["properties"]:
            node.child("apel", "APEL accounting records (docs/accounting.md)").set(
                "gocdb_sitename", value.strip(), f"gocdb_sitename = {value}")
        else:
            node.note(f"gocdb_sitename = {value}: not carried over: this vacagent writes no APEL records")

    def _openstack_auth(self, section: Section, ctx: Context, options: Node, auth: dict[str, tuple[str, str]],
                        secrets: dict[str, str]) -> None:
        if not auth and not secrets:
            options.note("No identity options in Vcycle's section: set `cloud` (a name in clouds.yaml) or `auth` "
                         "(docs/backends/openstack.md)")
            return
        clouds = self.secrets_dir / "clouds.yaml"
        if "application_credential_id" in auth or "application_credential_secret" in secrets:
            # An application credential names its own user and project: keystone refuses them beside it.
            left = sorted(v[1] for k, v in auth.items() if k not in ("auth_url", "application_credential_id"))
            left += sorted(option for option in secrets.values() if option != "cred_secret")
            auth = {k: v for k, v in auth.items() if k in ("auth_url", "application_credential_id")}
            secrets = {k: v for k, v in secrets.items() if k == "application_credential_secret"}
            if left:
                options.note(f"{', '.join(left)}: not carried over: the application credential (cred_id, "
                             "cred_secret) is used, and it names its own user and project")
        if "password" in secrets and "user_domain_name" not in auth:
            auth["user_domain_id"] = auth["project_domain_id"] = ("default", "Vcycle's default domain")
        if auth.get("auth_url", ("", ""))[0].rstrip("/").endswith("v2.0"):
            options.note("Vcycle's url names Keystone v2.0, which current clouds no longer serve: the SDK "
                         "discovers the version from the auth_url's root (drop the /v2.0 if it fails)")
        lines = [f"  {ctx.name}:", "    auth:"] + [f"      {k}: {v}  # {why}" for k, (v, why) in auth.items()]
        lines += [f"      {k}: <the {option} of [{section.title}], {'base64-decoded' if 'base64' in option else 'as is'}>"
                  for k, option in secrets.items()]
        if "application_credential_secret" in secrets:
            lines.append("    auth_type: v3applicationcredential")
        options.set("cloud", ctx.name, "The identity is in a clouds.yaml file, not here: the credentials are "
                    "not copied. Write this entry into clouds_file (mode 0600, readable by vacagent's user only):",
                    "clouds:\n" + "\n".join(lines))
        options.set("clouds_file", str(clouds))

    def _ec2_credentials(self, section: Section, ctx: Context, options: Node, secrets: dict[str, str]) -> None:
        if "region" not in options.items:
            options.set("region", "us-east-1", "Vcycle's default region")
        if not secrets:
            return
        keys = "\n".join(f"{k} = <the {option} of [{section.title}]>" for k, option in secrets.items())
        options.set("profile", ctx.name, "The credentials are not copied: boto3 reads them from the profile of "
                    "this name in ~/.aws/credentials of vacagent's user (or $AWS_SHARED_CREDENTIALS_FILE). "
                    f"Write (mode 0600):\n[{ctx.name}]\n{keys}")

    # -- machinetypes and pipes ---------------------------------------------------------------------
    def machinetype(self, section: Section, ctx: Context, space: Node) -> None:
        name = section.words[1]
        if not NAME_RE.match(name):
            self.fail(f"{section.where()}: machinetype name {name!r} must be lowercase letters, digits and hyphens")
            return
        node = space.child("machinetypes").child(name, f"From [{section.title}]")
        convert_options(section, ctx, name, node)
        if "target_share" not in node.items:
            node.set("target_share", 0, "Vcycle's default share is 0 (vacagent's would be 1): this machinetype "
                                        "creates nothing until it is given a share")

    def pipe(self, section: Section, ctx: Context, space: Node, overrides: dict[str, Section]) -> None:
        prefix = section.words[1]
        if not NAME_RE.match(prefix):
            self.fail(f"{section.where()}: pipe prefix {prefix!r} must be lowercase letters, digits and hyphens")
            return
        url = section.options.get("vacuum_pipe_url")
        if url is None:
            self.fail(f"{section.where()}: vacuum_pipe_url: required in a vacuum_pipe section")
            return
        node = Node()
        source = url.value.strip()
        comments = [f"From [{section.title}]: vacuum_pipe_url = {source}"]
        if source.startswith("http://"):
            source = "https://" + source.removeprefix("http://")
            comments.append("vacagent fetches pipes over https only (plain http can be tampered with on the way)")
        node.set("source", source, *comments)
        node.set("prefix", prefix)
        if "target_share" in section.options:
            share = number(section.options["target_share"].value, section.where("target_share"), self.fail)
            node.set("target_share", share,
                     "The pipe's total share, split among its machinetypes by their own target_share (as Vcycle)")
        rest = Section(section.kind, section.words,
                       {k: v for k, v in section.options.items() if k not in opts.PIPE_OWN}, section.files)
        inner = Node()
        convert_options(rest, ctx, None, inner)
        if inner.items or inner.notes:
            node.set("overrides", inner, "Vcycle copies the section's other options to each machinetype of the "
                                         "pipe (a machinetype section wins): vacagent's overrides do the same")
        for suffix, mt_section in overrides.items():
            mt = node.child("suffix_overrides", f"[machinetype {section.words[0]} {prefix}-SUFFIX] sections: "
                            "they win over the pipe and its overrides, as in Vcycle").child(suffix)
            convert_options(mt_section, ctx, f"{prefix}-{suffix}", mt)
        node.note("Vcycle ran only the pipe's machinetypes whose machine_model is cernvm3 or vm-raw; vacagent runs "
                  "every one: give the others target_share 0 under suffix_overrides if they must not run")
        space.items.setdefault("pipes", []).append(node)
        space.comments.setdefault("pipes", [])

    # -- the whole configuration --------------------------------------------------------------------
    def convert(self, sections: list[Section], files: list[str]) -> str:
        out = Node()
        out.set("site", self.site, "Machines are labelled with it: every vacagent instance of the site must "
                                   "use the same name")
        out.set("state_dir", "/var/lib/vacagent")
        by_kind: dict[str, list[Section]] = {}
        for section in sections:
            by_kind.setdefault(section.kind, []).append(section)
            expected = {"space": 1, "machinetype": 2, "vacuum_pipe": 2, "settings": 0}.get(section.kind)
            if expected is not None and len(section.words) != expected:
                self.fail(f"{section.where()}: a {section.kind} section takes {expected} name(s) after "
                          f"'{section.kind}', not {len(section.words)}")
        contexts: dict[str, tuple[Context, Node]] = {}
        for section in by_kind.get("space", []):
            if len(section.words) == 1:
                ctx = self.space(section, out)
                if ctx is not None:
                    contexts[section.words[0]] = (ctx, out.items["spaces"].items[ctx.name])
        skipped = {s.words[0] for s in by_kind.get("space", []) if len(s.words) == 1} - set(contexts)
        pipes = [s for s in by_kind.get("vacuum_pipe", []) if len(s.words) == 2]
        machinetypes = [s for s in by_kind.get("machinetype", []) if len(s.words) == 2]
        claimed = self._pipe_machinetypes(pipes, machinetypes)
        for section in pipes + machinetypes:
            space = section.words[0]
            if space in skipped:
                continue
            if space not in contexts:
                self.fail(f"{section.where()}: no [space {space}] section")
                continue
            ctx, node = contexts[space]
            if section.kind == "vacuum_pipe":
                self.pipe(section, ctx, node, claimed.get((space, section.words[1]), {}))
            elif not any(section in d.values() for d in claimed.values()):
                self.machinetype(section, ctx, node)
        for section in by_kind.get("settings", []):
            for option, item in section.options.items():
                out.note(f"[settings] {option} = {shown(option, item.value)} ({section.where(option)}): not carried "
                         "over: no vacagent equivalent")
        for kind, found in by_kind.items():
            if kind not in ("space", "machinetype", "vacuum_pipe", "settings"):
                for section in found:
                    out.note(f"[{section.title}] ({section.where()}): unknown section type: not carried over "
                             f"(options: {', '.join(section.options) or 'none'})")
        self._site_wide(out)
        if self.problems:
            raise ConfigError("\n".join(self.problems))
        header = ["vacagent site configuration converted from Vcycle by `vacagent import-vcycle` from "
                  + ", ".join(files) + ".",
                  "Read every comment: each says what was not carried over and why, or what you must provide. "
                  "Check with: vacagent validate --offline --config FILE (then without --offline on the "
                  "vacagent host). Reference: docs/configuration.md, docs/operations.md (Moving from Vcycle).",
                  f"Relative paths of Vcycle machinetype sections were made absolute under "
                  f"{self.vcycle_dir}/{opts.FILES_DIR.format(space='SPACE', machinetype='MACHINETYPE')}, "
                  "as Vcycle reads them.",
                  "Vcycle weighted target shares by hs06_per_processor; vacagent's shares count processors: "
                  "scale target_share by hs06_per_processor where machinetypes' processors differ in power."]
        return render(out, header)

    @staticmethod
    def _pipe_machinetypes(pipes: list[Section], machinetypes: list[Section]) -> dict[tuple[str, str], dict]:
        """(space, prefix) -> {suffix: section} for machinetype sections named PREFIX-SUFFIX (longest prefix)."""
        claimed: dict[tuple[str, str], dict[str, Section]] = {}
        prefixes = sorted(((s.words[0], s.words[1]) for s in pipes), key=lambda p: -len(p[1]))
        for section in machinetypes:
            space, name = section.words
            for pipe_space, prefix in prefixes:
                if pipe_space == space and name.startswith(prefix + "-") and len(name) > len(prefix) + 1:
                    claimed.setdefault((space, prefix), {})[name[len(prefix) + 1:]] = section
                    break
        return claimed

    def _site_wide(self, out: Node) -> None:
        if self.retention_hours:
            out.set("finished_retention_days", max(self.retention_hours) / 24,
                    f"cleanup_hours = {max(self.retention_hours):g} (the longest of the spaces': vacagent keeps "
                    "finished machines' directories for the whole site)")
        host, host_where = self.endpoint.get("https_host", ("", ""))
        port, _ = self.endpoint.get("https_port", ("443", ""))
        endpoint = out.child("endpoint", "Machines read their machine/job features from, and report to, vacagent's "
                                         "endpoint (docs/machine-protocol.md), as they did from Vcycle's HTTPS "
                                         "server.")
        endpoint.set("listen", "127.0.0.1", "Plain HTTP on loopback: put a TLS-terminating proxy (the Apache that "
                     "served Vcycle) in front, forwarding public_url to 127.0.0.1:8450, or set tls_cert and "
                     "tls_key and listen on 0.0.0.0")
        endpoint.set("port", 8450)
        url = f"https://{host or self.default_host}" + ("" if port == "443" else f":{port}")
        given = [f"{k} = {v} ({where.split(': [')[0]})" for k, (v, where) in sorted(self.endpoint.items())]
        endpoint.set("public_url", url, "The base URL machines reach the endpoint at" + (
            ":" if host else ": Vcycle's default https_host, the host it ran on (this one)"), *given)


def import_vcycle(sections: list[Section], files: list[str], site: str, default_host: str,
                  vcycle_dir: Path, secrets_dir: Path) -> str:
    """The YAML text of the converted configuration; ConfigError lists every unreadable option."""
    return Importer(site, default_host, vcycle_dir, secrets_dir).convert(sections, files)
