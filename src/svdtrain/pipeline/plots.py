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


def plot_compare(rows: list[dict], metric: str, target: float, path: Path) -> None:
    """``svdtrain compare``'s curves: the test metric per epoch (left) and the share of sum(s^2)
    a cut at the target would keep (right, SVD-training epochs), one colour per method, one
    line per seed; a dashed line where the cut falls."""
    plt = _pyplot()
    scale = 100 if metric == "accuracy" else 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colours: dict[str, str] = {}
    for row in rows:
        curve = row["curve"]
        if not curve:
            continue
        label = row["method"] if row["method"] not in colours else None  # a method's first seed names it
        colour = colours.setdefault(row["method"], f"C{len(colours)}")
        left.plot([p["epoch"] for p in curve], [scale * p["test"] for p in curve], color=colour, label=label, lw=1.2)
        energy = [p for p in curve if "target_energy" in p]
        before = row.get("target_energy_before")
        if energy or before is not None:
            xs = ([0] if before is not None else []) + [p["epoch"] for p in energy]
            ys = ([before] if before is not None else []) + [p["target_energy"] for p in energy]
            right.plot(xs, ys, color=colour, marker="." if len(xs) < 3 else None, label=label, lw=1.2)
        cut = next((p["epoch"] for p in curve if p["stage"] == "finetune"), None)
        if cut and cut > 1:
            left.axvline(cut - 0.5, color=colour, ls=":", lw=0.8)
    left.set_xlabel("epoch (all stages)")
    left.set_ylabel("test accuracy (%)" if metric == "accuracy" else f"validation {metric}")
    right.set_xlabel("SVD-training epoch (0: the starting model)")
    right.set_ylabel(f"share of sum(s^2) left that a {target:g}x cut keeps")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path)
