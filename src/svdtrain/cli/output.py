"""The results table the CLI prints."""

from __future__ import annotations


def format_report(report: dict) -> str:
    """The judged metric / MACs / params of baseline vs compact, then the rank kept per factored weight."""
    base, small = report["baseline"], report["compact"]
    metric = report.get("metric", "accuracy")  # reports written before the task seam were classification
    width = max([28, *(len(layer["name"]) for layer in report["layers"])])
    if metric == "accuracy":
        change = f"accuracy change {100 * (small['accuracy'] - base['accuracy']):+.2f} points"
    else:
        change = f"{metric} change {100 * (small[metric] / base[metric] - 1):+.2f}%"
    lines = [
        f"{'model':<10} {metric:>9} {'MACs':>12} {'params':>10}",
        f"{'baseline':<10} {base[metric]:>9.4f} {base['macs']:>12,} {base['params']:>10,}",
        f"{'compact':<10} {small[metric]:>9.4f} {small['macs']:>12,} {small['params']:>10,}",
        f"MACs reduction {base['macs'] / small['macs']:.2f}x, {change}",
        "",
        f"{'weight':<{width}} {'rank':>5} / {'full':<5}" + (" form" if _forms(report) else ""),
    ]
    lines += [f"{layer['name']:<{width}} {layer['rank']:>5} / {layer['full_rank']:<5} {layer.get('form', '')}".rstrip()
              for layer in report["layers"]]  # fmt: skip
    return "\n".join(lines)


def _forms(report: dict) -> bool:
    """Whether the report says how each weight deployed (the demo's does not)."""
    return any("form" in layer for layer in report["layers"])
