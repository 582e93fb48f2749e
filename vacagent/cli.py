"""The `vacagent` command line.

    vacagent run       the daemon (what systemd runs)
    vacagent once      one cycle of every space, then exit
    vacagent status    machines, processors and backoff per space and machinetype
    vacagent why       why the last cycle(s) created, deleted or held back
    vacagent validate  check the configuration, or one vacuum pipe, without acting (--offline: no network)
    vacagent import-vcycle  convert a Vcycle configuration into a vacagent one (YAML on stdout)
    vacagent simulate  run policies on a simulated lab and compare them (no cloud, no config)
    vacagent usage     how much of the lab's time was useful, per project and lab-wide
    vacagent health    one week's health and whether it compares with another week

Every command takes `--config FILE` (default /etc/vacagent/vacagent.yaml,
or $VACAGENT_CONFIG).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
from pathlib import Path

from vacagent import (__version__, config, coordinator, cycle, definitions, health, logs, offline, status, usage,
                      vcycle_import, vcycle_read)
from vacagent.backends import registry
from vacagent.backends.base import BackendContext
from vacagent.backends.registry import BACKENDS
from vacagent.clock import SystemClock
from vacagent.config import PipeSettings, SpaceSettings
from vacagent.daemon import Daemon
from vacagent.errors import ConfigError, VacagentError
from vacagent.fetch import Fetcher
from vacagent.model import SpaceLimits
from vacagent.report import LogReporter

# `vacagent simulate --policy` names (vacagent.sim.policies.REGISTRY; a test keeps the two equal).
# The simulator itself is imported only when the command runs.
SIMULATOR_POLICIES = ("vacagent", "vcycle", "static", "oracle")

EPILOG = """\
examples:
  vacagent run --config etc/demo.yaml        run the demo daemon in the foreground
  vacagent status --config etc/demo.yaml     what is running, and each machinetype's backoff
  vacagent why demo                          why the last cycle of space 'demo' did what it did
  vacagent validate https://example.org/lhcb.pipe
                                             check a project's pipe before configuring it
  vacagent simulate bursty --plot bursty.png compare vacagent, Vcycle, a static partition and an oracle
  vacagent import-vcycle > /etc/vacagent/vacagent.yaml
                                             move a Vcycle site: /etc/vcycle.conf and vcycle.d/ converted

The state directory (state_dir in the configuration) holds plain files:
spaces/<space>/machines/<name>/machine.json, decisions/<space>.jsonl,
accounting/<date>.jsonl, ... (see docs/architecture.md).
"""


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", type=Path, metavar="FILE",
        help="site configuration (default: $VACAGENT_CONFIG or /etc/vacagent/vacagent.yaml; "
             "conf.d/*.yaml beside it is read too)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vacagent",
        description="Keep a lab's machines busy with useful work: create VMs, pods or local "
                    "processes for projects' machinetypes, and let the machines' own feedback "
                    "(heartbeats, shutdown messages) steer how many more to create.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vacagent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the daemon in the foreground (SIGTERM stops, SIGHUP reloads)",
                       description="Run the daemon: one cycle per space every cycle_seconds. SIGTERM or "
                                   "Ctrl-C finishes the current cycles and exits, leaving machines running; "
                                   "SIGHUP reloads the configuration.")
    _config_argument(p)

    p = sub.add_parser("once", help="run one cycle of every space (or one space) and exit",
                       description="Run exactly one cycle, print what it did, exit. Exit status 1 if a "
                                   "space's cycle failed.")
    _config_argument(p)
    p.add_argument("space", nargs="?", help="only this space")

    p = sub.add_parser("status", help="machines, processors and backoff per space and machinetype",
                       description="Read the state directory (no cloud call) and show, per space and "
                                   "machinetype, machines by state, processors and backoff state, then "
                                   "the machine list.")
    _config_argument(p)
    p.add_argument("space", nargs="?", help="only this space")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-machines", action="store_true", help="leave out the machine list")

    p = sub.add_parser("why", help="why the last cycle created, deleted or held back",
                       description="Print the latest decision records: per machinetype, what was "
                                   "created and the reason nothing (more) was (backoff, probe, limits, "
                                   "budget, share).")
    _config_argument(p)
    p.add_argument("space", nargs="?", help="only this space")
    p.add_argument("machinetype", nargs="?", help="only this machinetype")
    p.add_argument("-n", "--cycles", type=int, default=1, metavar="N", help="the last N cycles (default 1)")

    p = sub.add_parser("validate", help="check the configuration, or one vacuum pipe, without acting",
                       description="Without PIPE: load the configuration and every space's definitions "
                                   "(fetching pipes), build each space's backend from its options as the "
                                   "daemon would (reading credential files, sending no request) and report "
                                   "every problem. With PIPE (a file or an "
                                   "https URL): check that pipe alone. Exit status 1 on any error.")
    _config_argument(p)
    p.add_argument("pipe", nargs="?", metavar="PIPE_FILE_OR_URL", help="a vacuum pipe to check on its own")
    p.add_argument("--prefix", default="pipe", help="machinetype name prefix for PIPE (default: pipe)")
    p.add_argument("--online", action="store_true",
                   help="also ask each space's cloud: does it answer with these credentials, do the images "
                        "and flavors named exist (backends that can tell: openstack)")
    p.add_argument("--offline", action="store_true",
                   help="fetch nothing and contact no cloud: check the configuration, local pipes, every "
                        "definition and local file, and list what was left unchecked (remote pipes, credentials)")

    p = sub.add_parser("import-vcycle", help="convert a Vcycle configuration into a vacagent one (YAML on stdout)",
                       description="Read a Vcycle configuration as Vcycle does (without FILE|DIR: every .conf in "
                                   "/var/lib/vcycle/shared/vcycle.d, then /etc/vcycle.d, in name order, then "
                                   "/etc/vcycle.conf; a DIR is read as its *.conf in name order; later values "
                                   "win) and print the vacagent site configuration: spaces, machinetypes, vacuum "
                                   "pipes, timings, user_data options and files. Every option not carried over "
                                   "gets a comment saying why; credentials are never copied: the output names the "
                                   "file the backend reads them from and says what to put there. Unreadable input "
                                   "is an error naming file, section and option (exit status 2). See "
                                   "docs/operations.md, 'Moving from Vcycle'.",
                       epilog="examples:\n"
                              "  vacagent import-vcycle > /etc/vacagent/vacagent.yaml\n"
                              "  vacagent import-vcycle /etc/vcycle.conf /etc/vcycle.d --site lab.example.org\n"
                              "  vacagent validate --offline --config /etc/vacagent/vacagent.yaml",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="*", type=Path, metavar="FILE|DIR",
                   help="Vcycle configuration files and directories, read in this order")
    p.add_argument("--site", help="the vacagent site name (default: this host's name)")
    p.add_argument("--vcycle-dir", type=Path, default=Path("/var/lib/vcycle"), metavar="DIR",
                   help="Vcycle's directory, for relative paths of machinetype sections (default: /var/lib/vcycle)")
    p.add_argument("--secrets-dir", type=Path, default=Path("/etc/vacagent"), metavar="DIR",
                   help="where the output points for credential files the operator writes (default: /etc/vacagent)")

    p = sub.add_parser("simulate", help="run policies on a simulated lab and compare them",
                       description="Run the daemon's real cycle (planner, feedback, backoff, reconcile, state "
                                   "store, actuator) on simulated time against a simulated lab and workload, "
                                   "beside Vcycle's algorithm, a static partition and a clairvoyant oracle, and "
                                   "print useful-time fraction, demand served, job waits, fizzle waste, share "
                                   "accuracy and API calls per policy and project. Nothing sleeps: a day of a "
                                   "500-processor lab takes seconds. Scenario format: docs/scenarios.md; "
                                   "figures: docs/benchmarks.md.",
                       epilog="examples:\n"
                              "  vacagent simulate --list\n"
                              "  vacagent simulate steady\n"
                              "  vacagent simulate bursty --policy vacagent,vcycle --plot bursty.png\n"
                              "  vacagent simulate my-lab.json --seed 7 --json > figures.json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", metavar="SCENARIO",
                   help="a scenario file (JSON), or the name of a shipped scenario (see --list)")
    p.add_argument("--policy", "-p", action="append", metavar="NAME",
                   help=f"a policy to run: {', '.join(SIMULATOR_POLICIES)}; repeat or separate with commas "
                        "(default: all). The oracle always runs: demand served is measured against it")
    p.add_argument("--seed", type=int, metavar="N", help="seed of every random draw (default: the scenario's)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    p.add_argument("--plot", type=Path, metavar="OUT.png",
                   help="draw a timeline of machines per project and state, and queue lengths, one panel per "
                        "policy (needs matplotlib: pip install 'vacagent[sim]')")
    p.add_argument("--keep-state", type=Path, metavar="DIR",
                   help="keep each cycle-driven policy's state directory under DIR/POLICY/ (decision records, "
                        "accounting) instead of a temporary directory")
    p.add_argument("--jobs", "-j", type=int, metavar="N",
                   help="run at most N policies at once, in worker processes (default: one per CPU)")
    p.add_argument("--list", action="store_true", help="list the shipped scenarios and exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    p = sub.add_parser("usage", help="useful-time fraction per project and lab-wide, and where the rest went",
                       description="From the state directory alone (accounting lines and open machine "
                                   "records): the useful-time fraction (working / all of the machines' time, "
                                   "in processor-seconds) per group and for the lab over the period, against "
                                   "the lab's 25/50/75%% steps, with the phases that made up the rest: "
                                   "starting, idle, lost, draining (docs/ledger.md).")
    _state_arguments(p)
    p.add_argument("--since", metavar="DATE", help="start of the period (YYYY-MM-DD or ISO time, UTC; "
                                                   "default: 7 days before --until)")
    p.add_argument("--until", metavar="DATE", help="end of the period (default: now)")
    p.add_argument("--by", choices=usage.BY, default="project", help="group by (default: project, the "
                                                                     "machinetype's name up to its first hyphen)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="draw the phases stacked over time, one panel "
                                                                "per group (needs matplotlib: vacagent[sim])")

    p = sub.add_parser("health", help="one ISO week's health, compared with another: are they comparable?",
                       description="From the state directory alone (accounting and decision records): boot "
                                   "latency, abort and fizzle rates per machinetype, cloud API error rate and "
                                   "latency per operation, heartbeat lateness, time in backoff, capacity and "
                                   "quota refusals, the useful fraction; then a verdict on whether the two "
                                   "weeks are comparable, naming each figure that moved past its threshold "
                                   "(docs/operations.md).")
    _state_arguments(p)
    p.add_argument("--week", metavar="ISO-WEEK", help="the week to report, e.g. 2026-W48 (default: this week)")
    p.add_argument("--compare", metavar="ISO-WEEK", help="the week to compare with (default: the week before)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _state_arguments(parser: argparse.ArgumentParser) -> None:
    _config_argument(parser)
    parser.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="read this state directory (a copy, another host's) instead of the configuration's")


def _state_dir(args: argparse.Namespace) -> Path:
    return args.state_dir if args.state_dir else config.load(args.config).state_dir


def _print_resolved(label: str, resolved: definitions.Resolved) -> bool:
    for name in sorted(resolved.machinetypes):
        mt = resolved.machinetypes[name]
        print(f"{label}: ok {name} (processors {mt.processors}, target_share {mt.target_share:g})")
    for warning in resolved.warnings:
        print(f"{label}: warning: {warning}")
    for message in resolved.errors.values():
        print(f"{label}: error: {message}")
    return not resolved.errors


def _check_options(settings, space: SpaceSettings, scratch: Path) -> bool:
    """Build the space's backend as the daemon would, without a request: its options' errors."""
    try:
        registry.create(space.backend, BackendContext(settings.site, space.name, scratch, space.options))
    except ConfigError as e:
        message = str(e).removeprefix(f"space {space.name}: ")
        print(f"space {space.name}: error: {space.config_file}: spaces.{space.name}.{message}")
        return False
    return True


def _check_online(settings, space: SpaceSettings, machinetypes) -> bool:
    """Ask the space's cloud (a backend with `check(machinetypes) -> [problem]`); print what it says."""
    label = f"space {space.name}"
    try:
        backend = registry.create(space.backend, BackendContext(settings.site, space.name, settings.state_dir,
                                                                space.options))
        check = getattr(backend, "check", None)
        problems = check(machinetypes) if check else None
    except VacagentError as e:
        problems = [str(e)]
    if problems is None:
        print(f"{label}: online: backend {space.backend!r} has nothing to check online")
        return True
    for problem in problems:
        print(f"{label}: error: online: {problem}")
    if not problems:
        print(f"{label}: online: the cloud answers; the images and flavors of {len(machinetypes)} "
              f"machinetype(s) exist")
    return not problems


def cmd_validate(args: argparse.Namespace) -> int:
    now = SystemClock().now()
    with tempfile.TemporaryDirectory() as cache:
        fetcher = offline.LocalOnlyFetcher(Path(cache)) if args.offline else Fetcher(Path(cache))
        if args.pipe:
            source = config.resolve_location(args.pipe, Path.cwd())
            if args.offline and "://" in source:
                print(f"not checked: {source} (remote: not fetched)")
                return 0
            space = SpaceSettings(
                name="validate", backend="none", options={}, limits=SpaceLimits(1),
                pipes=(PipeSettings(source=source, prefix=args.prefix, config_file="(command line)"),),
            )
            return 0 if _print_resolved(args.pipe, definitions.resolve_space(space, fetcher, now)) else 1
        settings = config.load(args.config)
        if args.offline:
            report = offline.check(settings, Path(cache), now)
            for line in report.lines:
                print(line)
            for line in report.unchecked:
                print(f"not checked: {line}")
            print(f"configuration {'valid' if report.ok else 'INVALID'} (offline): {', '.join(settings.files)}")
            return 0 if report.ok else 1
        ok = True
        for space in settings.spaces.values():
            label = f"space {space.name}"
            if space.backend not in BACKENDS:
                print(f"{label}: error: {space.config_file}: spaces.{space.name}.backend: "
                      f"{space.backend!r} is unknown (known: {', '.join(sorted(BACKENDS))})")
                ok = False
            else:
                ok = _check_options(settings, space, Path(cache)) and ok
            resolved = definitions.resolve_space(space, fetcher, now)
            ok = _print_resolved(label, resolved) and ok
            if args.online and space.backend in BACKENDS:
                ok = _check_online(settings, space, list(resolved.machinetypes.values())) and ok
        print(f"configuration {'valid' if ok else 'INVALID'}: {', '.join(settings.files)}")
        return 0 if ok else 1


def cmd_import_vcycle(args: argparse.Namespace) -> int:
    sections, files = vcycle_read.read(args.sources)
    host = socket.getfqdn()
    sys.stdout.write(vcycle_import.import_vcycle(sections, files, args.site or host, host, args.vcycle_dir,
                                                 args.secrets_dir))
    return 0


def cmd_once(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    logs.setup(settings.log_level, settings.log_format)
    clock = SystemClock()
    failed = 0
    for space_settings in settings.spaces.values():
        if args.space and space_settings.name != args.space:
            continue
        space = cycle.build(settings, space_settings, LogReporter(), clock)
        try:
            fence = coordinator.borrow(settings, space, clock)
        except coordinator.SpaceHeld as e:
            print(e, file=sys.stderr)
            failed += 1
            continue
        try:
            record = cycle.run_once(space, clock.now())
        except Exception as e:  # noqa: BLE001 - report every space, then fail
            print(f"space {space.name}: cycle failed: {type(e).__name__}: {e}", file=sys.stderr)
            failed += 1
            continue
        finally:
            coordinator.give_back(fence, clock)
        created = sum(len(v) for v in record["created"].values())
        print(f"space {space.name}: {record['machines_total']} machines, created {created}, "
              f"deleted {len(record['deleted'])}, closed {len(record['closed'])}")
        for mt, reason in sorted(record["held"].items()):
            print(f"  {mt}: held: {reason}")
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    report = status.status(settings, SystemClock().now(), args.space)
    if args.json:
        json.dump(report, sys.stdout, indent=1)
        print()
    else:
        for line in status.format_status(report, machines=not args.no_machines):
            print(line)
    return 0


def cmd_why(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    for line in status.why(settings, args.space, args.machinetype, max(1, args.cycles), SystemClock().now()):
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        settings = config.load(args.config)
        level, form = settings.log_level, settings.log_format
    except ConfigError:
        level, form = "info", "kv"  # the daemon reports the error itself
    logs.setup(level, form)
    return Daemon(args.config).run()


def cmd_simulate(args: argparse.Namespace) -> int:
    from vacagent.sim import command

    return command.run(args)


def cmd_usage(args: argparse.Namespace) -> int:
    now = SystemClock().now()
    try:
        until = usage.parse_time(args.until) if args.until else now
        since = usage.parse_time(args.since) if args.since else until - 7 * 86400
    except ValueError as e:
        print(f"vacagent usage: {e}", file=sys.stderr)
        return 2
    if since >= until:
        print("vacagent usage: --since must be before --until", file=sys.stderr)
        return 2
    if args.plot:
        from vacagent import usage_plot  # matplotlib: only now, and only if installed

        usage_plot.check()
    report, found, skipped = usage.usage(_state_dir(args), since, until, now, args.by)
    if args.json:
        json.dump({**report, "notes": skipped}, sys.stdout, indent=1)
        print()
    else:
        for line in usage.format_report(report, skipped):
            print(line)
    if args.plot:
        starts, per_group = usage.series(found, args.by, since, until)
        usage_plot.draw(report, starts, per_group, args.plot)
        print(f"usage: plot written to {args.plot}", file=sys.stderr)
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    now = SystemClock().now()
    try:
        week = args.week or health.week_of(now)
        other = args.compare or health.previous_week(week)
        health.week_range(week), health.week_range(other)
    except ValueError as e:
        print(f"vacagent health: {e}", file=sys.stderr)
        return 2
    state_dir = _state_dir(args)
    mine, theirs = health.week_health(state_dir, week, now), health.week_health(state_dir, other, now)
    verdict = health.compare(mine, theirs)
    if args.json:
        json.dump({"week": mine, "compared_with": theirs, "verdict": verdict}, sys.stdout, indent=1)
        print()
    else:
        for line in health.format_report(mine, theirs, verdict):
            print(line)
    return 0


COMMANDS = {"run": cmd_run, "once": cmd_once, "status": cmd_status, "why": cmd_why, "validate": cmd_validate,
            "import-vcycle": cmd_import_vcycle,
            "simulate": cmd_simulate, "usage": cmd_usage,
            "health": cmd_health}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"vacagent {args.command}: configuration error:\n{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `vacagent status | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
