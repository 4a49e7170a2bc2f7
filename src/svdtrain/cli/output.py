"""The results table the CLI prints."""

from __future__ import annotations


def format_report(report: dict) -> str:
    """Accuracy / MACs / params of baseline vs compact, then the rank kept per factored weight."""
    base, small = report["baseline"], report["compact"]
    width = max([28, *(len(layer["name"]) for layer in report["layers"])])
    lines = [
        f"{'model':<10} {'accuracy':>9} {'MACs':>12} {'params':>10}",
        f"{'baseline':<10} {base['accuracy']:>9.4f} {base['macs']:>12,} {base['params']:>10,}",
        f"{'compact':<10} {small['accuracy']:>9.4f} {small['macs']:>12,} {small['params']:>10,}",
        f"MACs reduction {base['macs'] / small['macs']:.2f}x, accuracy change "
        f"{100 * (small['accuracy'] - base['accuracy']):+.2f} points",
        "",
        f"{'weight':<{width}} {'rank':>5} / {'full':<5}",
    ]
    lines += [f"{layer['name']:<{width}} {layer['rank']:>5} / {layer['full_rank']:<5}" for layer in report["layers"]]
    return "\n".join(lines)
