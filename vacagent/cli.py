"""The `vacagent` command line.

    vacagent run       the daemon (what systemd runs)
    vacagent once      one cycle of every space, then exit
    vacagent status    machines, processors and backoff per space and machinetype
    vacagent why       why the last cycle(s) created, deleted or held back
    vacagent validate  check the configuration, or one vacuum pipe, without acting
    vacagent simulate  run policies on a simulated lab and compare them (no cloud, no config)
    vacagent usage     how much of the lab's time was useful, per project and lab-wide
    vacagent health    one week's health and whether it compares with another week
    vacagent import-vcycle  a Vcycle configuration as a vacagent site configuration

Every command takes `--config FILE` (default /etc/vacagent/vacagent.yaml,
or $VACAGENT_CONFIG).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from vacagent import (__version__, config, cycle, definitions, health, logs, status, usage, validate_offline,
                      vcycle_import)
from vacagent.backends.registry import BACKENDS
from vacagent.clock import SystemClock
from vacagent.config import PipeSettings, SpaceSettings
from vacagent.daemon import Daemon
from vacagent.errors import ConfigError
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
                                   "(fetching pipes) and report every problem. With PIPE (a file or an "
                                   "https URL): check that pipe alone. Exit status 1 on any error.")
    _config_argument(p)
    p.add_argument("pipe", nargs="?", metavar="PIPE_FILE_OR_URL", help="a vacuum pipe to check on its own")
    p.add_argument("--offline", action="store_true",
                   help="check the configuration, every local file and every definition readable without network; "
                        "fetch no remote pipe, contact no cloud, and list what was not checked")
    p.add_argument("--prefix", default="pipe", help="machinetype name prefix for PIPE (default: pipe)")

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

    p = sub.add_parser("import-vcycle", help="convert a Vcycle configuration to a vacagent site configuration",
                       description="Read a Vcycle configuration as Vcycle does (FILEs, or DIRs of *.conf, in the "
                                   "order given; default /var/lib/vcycle/shared/vcycle.d, /etc/vcycle.d, "
                                   "/etc/vcycle.conf) and print a vacagent site configuration (YAML), with a "
                                   "comment on every option not carried over and why. Secrets are never copied: "
                                   "the comments say where to put them. Then: vacagent validate --offline.")
    p.add_argument("paths", nargs="*", metavar="FILE|DIR")
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


def cmd_validate(args: argparse.Namespace) -> int:
    now = SystemClock().now()
    if args.offline:
        if args.pipe and config.resolve_location(args.pipe, Path.cwd()).startswith(("http://", "https://")):
            print(f"{args.pipe}: not checked: remote (--offline)")
            return 0
        if not args.pipe:
            ok, lines = validate_offline.validate(args.config, now)
            print("\n".join(lines))
            return 0 if ok else 1
    with tempfile.TemporaryDirectory() as cache:
        fetcher = Fetcher(Path(cache))
        if args.pipe:
            source = config.resolve_location(args.pipe, Path.cwd())
            space = SpaceSettings(
                name="validate", backend="none", options={}, limits=SpaceLimits(1),
                pipes=(PipeSettings(source=source, prefix=args.prefix, config_file="(command line)"),),
            )
            return 0 if _print_resolved(args.pipe, definitions.resolve_space(space, fetcher, now)) else 1
        settings = config.load(args.config)
        ok = True
        for space in settings.spaces.values():
            label = f"space {space.name}"
            if space.backend not in BACKENDS:
                print(f"{label}: error: {space.config_file}: spaces.{space.name}.backend: "
                      f"{space.backend!r} is unknown (known: {', '.join(sorted(BACKENDS))})")
                ok = False
            ok = _print_resolved(label, definitions.resolve_space(space, fetcher, now)) and ok
        print(f"configuration {'valid' if ok else 'INVALID'}: {', '.join(settings.files)}")
        return 0 if ok else 1


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
            record = cycle.run_once(space, clock.now())
        except Exception as e:  # noqa: BLE001 - report every space, then fail
            print(f"space {space.name}: cycle failed: {type(e).__name__}: {e}", file=sys.stderr)
            failed += 1
            continue
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
    for line in status.why(settings, args.space, args.machinetype, max(1, args.cycles)):
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


def cmd_import_vcycle(args: argparse.Namespace) -> int:
    paths = vcycle_import.files(args.paths or vcycle_import.DEFAULT_FILES)
    if not paths:
        print(f"vacagent import-vcycle: no Vcycle configuration in {', '.join(args.paths or vcycle_import.DEFAULT_FILES)}",
              file=sys.stderr)
        return 2
    sys.stdout.write(vcycle_import.convert(vcycle_import.read(paths), [str(p) for p in paths]))
    return 0


COMMANDS = {"run": cmd_run, "once": cmd_once, "status": cmd_status, "why": cmd_why, "validate": cmd_validate,
            "simulate": cmd_simulate, "usage": cmd_usage,
            "health": cmd_health, "import-vcycle": cmd_import_vcycle}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as e:
        print(f"vacagent {args.command}: configuration error:\n{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
