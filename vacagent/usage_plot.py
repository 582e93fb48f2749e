"""`vacagent usage --plot`: the ledger's phases stacked over time, one panel per project.

Each panel stacks, in processor-hours per hour, working (green) at the
bottom, then idle, lost, starting and draining; each band is labelled at
its thickest point inside the panel, and the panel's title gives the useful
fraction against the lab's steps, so that nobody hunts for a legend.
matplotlib (the `sim` extra) is imported here only.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vacagent.ledger import PHASES

COLOURS = {"working": "#2ca02c", "idle": "#ffbb78", "lost": "#d62728", "starting": "#9ecae1",
           "draining": "#bdbdbd"}


def check() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SystemExit("vacagent usage --plot needs matplotlib: pip install 'vacagent[sim]'") from None


def draw(report: dict[str, Any], starts: list[float], per_group: dict[str, dict[str, list[float]]],
         out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(per_group) or ["(no machines)"]
    width = (report["until"] - report["since"]) / max(1, len(starts))
    times = [datetime.fromtimestamp(t + width / 2, timezone.utc) for t in starts]
    fig, axes = plt.subplots(len(groups), 1, figsize=(12, 1.0 + 2.4 * len(groups)), sharex=True, squeeze=False)
    for ax, group in zip(axes[:, 0], groups):
        phases = per_group.get(group, {})
        layers = [[v / width for v in phases.get(p, [0.0] * len(starts))] for p in PHASES]
        if times:
            ax.stackplot(times, layers, colors=[COLOURS[p] for p in PHASES], linewidth=0)
            bottom = [0.0] * len(times)
            for phase, layer in zip(PHASES, layers):
                k = max(range(len(layer)), key=lambda i: layer[i])
                if layer[k] > 0:
                    ax.text(times[k], bottom[k] + layer[k] / 2, phase, ha="center", va="center", fontsize=8)
                bottom = [b + v for b, v in zip(bottom, layer)]
        entry = report["groups"].get(group)
        fraction = entry["useful_fraction"] if entry else None
        useful = "-" if fraction is None else f"{fraction:.0%}"
        ax.set_title(f"{group}: useful {useful}, step {entry['step'] if entry else '-'}", loc="left", fontsize=10)
        ax.set_ylabel("processors")
        ax.grid(axis="y", alpha=0.3)
    lab = report["lab"]["useful_fraction"]
    fig.suptitle(f"useful time by {report['by']}, {report['since_iso']} .. {report['until_iso']}: lab "
                 f"{'-' if lab is None else f'{lab:.0%}'} (steps 25/50/75%)", x=0.01, ha="left", fontsize=11,
                 fontweight="bold")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
