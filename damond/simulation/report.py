"""What a run prints and writes: the summary table, the JSON file, the plot."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from damond.simulation.run import ContextResult, SimulationResult
from damond.simulation.scoring import BAND_BP


def format_summary(result: SimulationResult) -> str:
    header = (
        f"{'context':<12} {'metric':<22} {'node':>4} {'target':>7} {'final':>7} "
        f"{'to goal':>9} {'overshoot':>9} {'migrated':>12} {'ping-pong':>12} {'held':>6}"
    )
    lines = [f"simulated {result.duration_s:g} s", header]
    for c in result.contexts:
        ttg = "never" if c.time_to_goal_s is None else f"{c.time_to_goal_s:.0f} s"
        lines.append(
            f"{c.name:<12} {c.goal_metric:<22} {c.node:>4} {c.target_bp:>7} {c.final_bp:>7} "
            f"{ttg:>9} {c.overshoot_bp:>9} {_mib(c.migrated_bytes):>12} "
            f"{_mib(c.pingpong_bytes):>12} {_held(c):>6}"
        )
    lines.append(
        f"churn (bytes moved against the net change): {_mib(result.churn_bytes)}, "
        f"{_mib(round(result.churn_bytes_per_hour))} per hour"
    )
    described = f": {result.description.strip()}" if result.description else ""
    lines.append(f"seed {result.seed}{described}")
    lines.append(
        "(basis points; time to goal: from when the metric stays within ±100 bp; "
        "overshoot: the furthest past the target after crossing it, per phase; "
        "held: simulated seconds held still)"
    )
    return "\n".join(lines)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def _held(c: ContextResult) -> str:
    return f"{c.held_s:.0f} s"


def write_json(result: SimulationResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")


class PlotUnavailable(Exception):
    pass


def write_plot(result: SimulationResult, path: Path) -> None:
    """A PNG of each context's metric, target and band over simulated time, with the
    scheduled changes (shifts, goal changes, set sizes) marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: install it with  pip install 'damond[plot]'"
        ) from None
    n = max(1, len(result.contexts))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.8 * n), squeeze=False, sharex=True)
    changes = result.marks[1:-1]
    for ax, ctx in zip(axes[:, 0], result.contexts, strict=False):
        s = ctx.series
        low = [t - BAND_BP for t in s.target_bp]
        high = [t + BAND_BP for t in s.target_bp]
        ax.fill_between(
            s.t_s, low, high, step="post", color="tab:red", alpha=0.15,
            label=f"target ±{BAND_BP} bp",
        )  # fmt: skip
        ax.step(s.t_s, s.target_bp, where="post", color="tab:red", linestyle="--", label="target")
        points = s.measured_points()
        ax.plot([t for t, _ in points], [v for _, v in points], color="tab:blue", label="value")
        for i, m in enumerate(changes):
            ax.axvline(
                m.t_s, color="grey", linestyle=":", label="scheduled change" if i == 0 else None
            )
            ax.annotate(
                str(i + 1), (m.t_s, 0.97), xycoords=("data", "axes fraction"),
                xytext=(2, 0), textcoords="offset points", fontsize="x-small", va="top",
            )  # fmt: skip
        ax.set_title(f"{ctx.name}: {ctx.goal_metric} of node {ctx.node}, target {_targets(ctx)} bp")
        ax.set_ylabel("basis points")
        ax.legend(loc="best", fontsize="small")
    axes[0, 0].set_xlim(0, max(result.duration_s, 1.0))
    axes[-1, 0].set_xlabel("simulated time (s)")
    if changes:
        listed = "; ".join(f"{i + 1}: {m.label} at {m.t_s:g} s" for i, m in enumerate(changes))
        fig.text(0.01, 0.005, textwrap.fill(listed, 160), fontsize="x-small", va="bottom")
    title = textwrap.wrap(" ".join(result.description.split()), 150)
    if title:
        fig.suptitle("\n".join(title), fontsize="small")
    top = 1 - 0.12 * len(title) / (2.8 * n)
    fig.tight_layout(rect=(0, 0.04 if changes else 0, 1, top))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _targets(ctx: ContextResult) -> str:
    """The targets in force over the run, in order (``6000 -> 5000`` after a change)."""
    seen: list[int] = []
    for t in ctx.series.target_bp:
        if not seen or seen[-1] != t:
            seen.append(t)
    return " -> ".join(str(t) for t in seen) or str(ctx.target_bp)
