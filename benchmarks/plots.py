"""Plots shared by the search benchmarks."""
from pathlib import Path


def plot_best_so_far(curves: dict, path: Path, title: str) -> None:
    """``curves``: label -> list of runs, each the best objective so far after each trial (fractions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for (label, runs), color in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red")):
        for i, run in enumerate(runs):
            ax.plot(range(1, len(run) + 1), [100 * v for v in run], color=color, alpha=0.8,
                    label=label if i == 0 else None)
    ax.set_xlabel("trials")
    ax.set_ylabel("best objective so far (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
