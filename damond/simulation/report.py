"""What a run prints and writes: the summary table, the JSON file, the plot."""

from __future__ import annotations

import json
from pathlib import Path

from damond.simulation.run import SimulationResult
from damond.simulation.scoring import BAND_BP


def format_summary(result: SimulationResult) -> str:
    header = (
        f"{'context':<12} {'metric':<22} {'node':>4} {'target':>7} {'final':>7} "
        f"{'to goal':>9} {'overshoot':>9} {'migrated':>12} {'ping-pong':>12}"
    )
    lines = [f"simulated {result.duration_s:.0f} s", header]
    for c in result.contexts:
        ttg = "never" if c.time_to_goal_s is None else f"{c.time_to_goal_s:.0f} s"
        lines.append(
            f"{c.name:<12} {c.goal_metric:<22} {c.node:>4} {c.target_bp:>7} {c.final_bp:>7} "
            f"{ttg:>9} {c.overshoot_bp:>9} {_mib(c.migrated_bytes):>12} "
            f"{_mib(c.pingpong_bytes):>12}"
        )
    lines.append("(basis points; time to goal: from when the metric stays within ±100 bp)")
    return "\n".join(lines)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def write_json(result: SimulationResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2) + "\n")


class PlotUnavailable(Exception):
    pass


def write_plot(result: SimulationResult, path: Path) -> None:
    """A PNG of each context's metric and target over simulated time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable(
            "--plot needs matplotlib: install it with  pip install 'damond[plot]'"
        ) from None
    fig, axes = plt.subplots(
        len(result.contexts), 1, figsize=(10, 3 * len(result.contexts)), squeeze=False, sharex=True
    )
    for ax, ctx in zip(axes[:, 0], result.contexts, strict=True):
        hist = result.history[ctx.name]
        ax.plot([t for t, _ in hist], [v for _, v in hist], label=f"{ctx.goal_metric}")
        ax.axhline(ctx.target_bp, color="red", linestyle="--", label="target")
        ax.axhspan(ctx.target_bp - BAND_BP, ctx.target_bp + BAND_BP, color="red", alpha=0.1)
        ax.set_title(f"{ctx.name}: node {ctx.node}")
        ax.set_ylabel("basis points")
        ax.legend(loc="best")
    axes[-1, 0].set_xlabel("simulated time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
