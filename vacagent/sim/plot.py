"""`--plot`: a PNG timeline of a run, one panel per policy, so that a person
sees at a glance why one policy wins.

Each panel stacks, per project (one colour each), its machines busy with a
job (solid), running idle (lighter) and starting (lightest); machines
stopped or being deleted are grey on top.  Dashed lines, on the right-hand
axis, are each project's queue of waiting jobs.  Shaded spans are the
scenario's incidents.  matplotlib (the `sim` extra) is imported here only.
"""

from __future__ import annotations

from pathlib import Path

from vacagent.sim.simulate import Result

ALPHA = {"busy": 0.95, "idle": 0.5, "starting": 0.22}
STOPPED = (0.25, 0.25, 0.25, 0.55)


def check() -> None:
    """Fail early, before a long run, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("vacagent simulate --plot needs matplotlib: pip install 'vacagent[sim]'") from None


def draw(result: Result, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    scenario = result.scenario
    projects = [p.name for p in scenario.projects]
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(projects)}
    names = list(result.policies)
    fig, axes = plt.subplots(len(names), 1, figsize=(12, 1.2 + 2.5 * len(names)), sharex=True, squeeze=False)
    top = 0.0
    twins = []
    # An incident lasting the whole run (a broken image) would tint every panel: it is in the title instead.
    shaded = [i for i in scenario.incidents if i.end - i.start < 0.9 * scenario.duration]
    for ax, name in zip(axes[:, 0], names):
        trace = result.traces[name]
        s = trace.samples
        hours = [t / 3600 for t in s.times]
        layers, colors = [], []
        for p in projects:
            for state in ("busy", "idle", "starting"):
                layers.append(s.machines.get(p, {}).get(state, [0] * len(hours)))
                colors.append((*colours[p][:3], ALPHA[state]))
        stopped = [sum(s.machines.get(p, {}).get("stopped", [0] * len(hours))[k] for p in projects)
                   for k in range(len(hours))]
        layers.append(stopped)
        colors.append(STOPPED)
        ax.stackplot(hours, *layers, colors=colors, linewidth=0)
        top = max(top, max((sum(col) for col in zip(*layers)), default=0))
        for incident in shaded:
            ax.axvspan(incident.start / 3600, incident.end / 3600, color="red", alpha=0.07, linewidth=0)
            if ax is axes[0, 0]:
                ax.text(incident.start / 3600, 1.0, f" {_label(incident)}", transform=ax.get_xaxis_transform(),
                        fontsize=8, color="darkred", va="top", ha="left")
        twin = ax.twinx()
        for p in projects:
            twin.plot(hours, s.queued.get(p, []), color=colours[p], linestyle="--", linewidth=1.1)
        twins.append(twin)
        total = result.figures[name]["total"]
        wait = "-" if total.wait_mean is None else f"{total.wait_mean / 60:.0f} min"
        ax.set_title(f"{name}: useful {_pct(total.useful_fraction)}, demand served {_pct(total.served)}, "
                     f"mean wait {wait}, fizzle waste {total.fizzle_waste / 3600:,.0f} processor-hours",
                     loc="left", fontsize=10)
        ax.set_ylabel("machines")
        twin.set_ylabel("jobs waiting")
        ax.margins(x=0)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylim(0, top * 1.05 or 1)
    queue_top = max((max(t.get_ylim()[1], 1) for t in twins), default=1)
    for twin in twins:
        twin.set_ylim(0, queue_top)
    axes[-1, 0].set_xlabel("hours")
    handles = [Patch(color=colours[p], label=p) for p in projects]
    example = colours[projects[0]][:3]
    handles += [Patch(color=(*example, ALPHA[s]), label=s) for s in ("busy", "idle", "starting")]
    handles += [Patch(color=STOPPED, label="stopped / deleting")]
    handles += [plt.Line2D([], [], color="black", linestyle="--", label="jobs waiting (right axis)")]
    if shaded:
        handles += [Patch(color="red", alpha=0.15, label="incident")]
    height = fig.get_figheight()
    title = f"scenario {scenario.name}"
    whole = [_label(i) for i in scenario.incidents if i not in shaded]
    if whole:
        title += "  (all along: " + "; ".join(whole) + ")"
    fig.suptitle(title, y=1 - 0.08 / height, fontsize=11, fontweight="bold", x=0.01,
                 ha="left", va="top")
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.3 / height),
               ncol=min(len(handles), 9), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.62 / height))
    fig.savefig(out, dpi=100, pil_kwargs={"optimize": True})
    plt.close(fig)


def _label(incident) -> str:
    if incident.kind == "broken_image":
        return f"{incident.project}: broken image"
    if incident.kind == "capacity_loss":
        return f"{incident.space}: only {incident.processors} processors"
    where = f" ({incident.space})" if incident.space else ""
    return f"{incident.kind.replace('_', ' ')} p={incident.probability:g}{where}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"
