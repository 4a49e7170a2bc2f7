"""PNG plots of a run: spectra before/after sparsity training, kept ranks, a sweep's front."""

from __future__ import annotations

import math
from pathlib import Path

from svdtrain.io import atomic_write


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as missing:
        raise ImportError("plots need matplotlib: pip install 'svdtrain[pipeline]'") from missing
    return plt


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"), mode="wb")
    _pyplot().close(fig)


def plot_spectra(before: dict[str, list[float]], after: dict[str, list[float]], path: Path) -> None:
    """One panel per factored weight: sorted |s| (log scale) before and after sparsity training."""
    plt = _pyplot()
    names = list(before)
    cols = min(6, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for values, label in ((before[name], "before"), (after.get(name, []), "after")):
            magnitudes = sorted((abs(v) for v in values), reverse=True)
            ax.semilogy(range(1, len(magnitudes) + 1), [max(v, 1e-12) for v in magnitudes], label=label)
        ax.set_title(name, fontsize=7)
        ax.tick_params(which="both", labelsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle("singular values per factored weight (sorted |s|), before and after sparsity training",
                 fontsize=9, y=1.0)  # fmt: skip
    fig.tight_layout()
    _save(fig, path)


def plot_ranks(layers: list[dict], path: Path) -> None:
    """Full and kept rank of each factored weight (``layers``: report.json's entries)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(layers)), 3.2))
    x = range(len(layers))
    ax.bar(x, [layer["full_rank"] for layer in layers], color="lightgray", label="full rank")
    ax.bar(x, [layer["rank"] for layer in layers], color="tab:blue", label="kept rank")
    ax.set_xticks(list(x), [layer["name"] for layer in layers], rotation=90, fontsize=6)
    ax.set_ylabel("rank")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_metric_vs_macs(points: list[dict], baseline: dict, metric: str, path: Path) -> None:
    """Sweep points (label, macs, metric) against the dense baseline; accuracy in percent."""
    plt = _pyplot()
    scale = 100 if metric == "accuracy" else 1
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.scatter([p["macs"] / 1e6 for p in points], [scale * p[metric] for p in points], label="compact")
    for p in points:
        ax.annotate(p["label"], (p["macs"] / 1e6, scale * p[metric]), fontsize=6)
    ax.scatter([baseline["macs"] / 1e6], [scale * baseline[metric]], marker="*", s=120, color="k", label="dense")
    ax.set_xlabel("MMACs per input")
    ax.set_ylabel("test accuracy (%)" if metric == "accuracy" else f"validation {metric}")
    ax.legend(fontsize=7)
    _save(fig, path)
