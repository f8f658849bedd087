"""Recall as a function of the retrieval budget, one line per stage (2602.00805, figure 3)."""

from __future__ import annotations

from pathlib import Path

from lexedge.runtime.metrics import RECALL_CUTOFFS


def plot_recall_vs_budget(rows: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """Write a PNG of Recall@K against K (log axis) for each row of metrics.

    Args:
        rows: ``{label: metrics}``, metrics holding ``recall@K`` for K in
            :data:`~lexedge.runtime.metrics.RECALL_CUTOFFS`.
        path: the PNG to write.
        title: the plot's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, metrics in rows.items():
        cutoffs = [k for k in RECALL_CUTOFFS if f"recall@{k}" in metrics]
        axis.plot(cutoffs, [metrics[f"recall@{k}"] for k in cutoffs], marker="o",
                  markersize=3, label=label, linestyle="--" if label == "bm25" else "-")
    axis.set_xscale("log")
    axis.set_xticks(list(RECALL_CUTOFFS), [str(k) for k in RECALL_CUTOFFS])
    axis.set_xlabel("retrieval budget K")
    axis.set_ylabel("Recall@K")
    axis.set_ylim(0, 1)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower right")
    if title:
        axis.set_title(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
