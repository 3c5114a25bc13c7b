"""Accuracy-vs-sigma plots (the paper's Figure 3): mean line and p5-p95 band per curve."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from ftcompile.errors import ConfigError
from ftcompile.fileio import write_bytes_atomic


def _pyplot():
    """matplotlib's pyplot on the file-only backend; matplotlib is an extra (the gate needs no plots)."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plots need matplotlib, which is not installed: pip install 'ftcompile[plot]', or run "
                          "without --plot (harden: with --no-plot).") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(curves: Sequence[tuple[str, Sequence]], path: Path, *, title: str = "Accuracy under drift",
                xlabel: str = "drift sigma", log_x: bool = False, metric: str = "accuracy") -> Path:
    """``curves``: (label, points) where each point has ``x``, ``mean``, ``p5``, ``p95``; ``log_x`` for times."""
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, points in curves:
        xs = [p.x for p in points]
        ax.plot(xs, [100 * p.mean for p in points], marker="o", ms=3, label=label)
        ax.fill_between(xs, [100 * p.p5 for p in points], [100 * p.p95 for p in points], alpha=0.2)
    ax.set_xlabel(xlabel)
    if log_x:
        ax.set_xscale("log")
    ax.set_ylabel(f"{metric} (%), mean and p5-p95")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_bytes_atomic(Path(path), buf.getvalue())


def plot_sensitivity(result, path: Path) -> Path:
    """Horizontal bars: accuracy drop (points) per layer with the 95% CI, most harmful on top."""
    plt = _pyplot()

    rows = [*result.layers, result.all_layers][::-1]
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.35 * len(rows)), dpi=120)
    drops = [100 * r.drop for r in rows]
    # the drop's CI is the mean's CI mirrored around the clean metric
    err = [[100 * (r.drift_ci_high - r.mean) if r.drift_ci_high is not None else 0 for r in rows],
           [100 * (r.mean - r.drift_ci_low) if r.drift_ci_low is not None else 0 for r in rows]]
    colors = ["0.55" if r is result.all_layers else "tab:red" for r in rows]
    ax.barh([r.layer for r in rows], drops, xerr=err, color=colors, capsize=3)
    ax.set_xlabel(f"{result.metric} drop (points) with only this layer drifted, 95% CI")
    ax.set_title(f"layer sensitivity under {result.drift}")
    ax.grid(axis="x", alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return write_bytes_atomic(Path(path), buf.getvalue())
