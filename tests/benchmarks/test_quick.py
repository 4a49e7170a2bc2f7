"""Each benchmark's --quick mode runs, so the scripts cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted(p for p in (Path(__file__).parents[2] / "benchmarks").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.slow  # 18 scripts as subprocesses, about 100 s: .ci/run runs them with the other slow checks
@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_quick(script, tmp_path):
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, str(script), "--quick", "--json", str(out)], check=True, timeout=300)
    assert json.loads(out.read_text())["benchmark"] == script.stem


def test_comparison_levers_are_the_budget_recipe(monkeypatch):
    """The comparison's "all" (and so its leave-one-out ablation) is what the product's budget
    recipe sets, less the distillation weight every method shares."""
    monkeypatch.syspath_prepend(str(BENCHMARKS[0].parent))
    from svd_vs_truncation import ALL_LEVERS, LEVERS

    from svdtrain.pipeline.config import recipe_values

    assert ALL_LEVERS == {flag: value for flag, value in recipe_values("budget").items() if flag != "distill_weight"}
    ablation = [name for name in LEVERS if name.startswith("all-no-")]
    assert len(ablation) == 5 and all(len(LEVERS[name]) == len(ALL_LEVERS) - 1 for name in ablation)


def _comparison(path, train_limit, seed):
    row = {"method": "truncated", "target_reduction": 3.0, "seed": seed, "final": 0.8, "pruned": 0.4,
           "macs": 1_000_000, "metric": "accuracy"}  # fmt: skip
    path.write_text(json.dumps({"preset": "p", "base_overrides": {"train_limit": train_limit}, "rows": [row]}))
    return str(path)


def test_comparison_replot_merges_one_protocol_only(tmp_path):
    script = str(BENCHMARKS[0].parent / "svd_vs_truncation.py")
    seeds = [_comparison(tmp_path / f"s{seed}.json", 0, seed) for seed in (0, 1)]
    subprocess.run([sys.executable, script, "--replot", *seeds, "--plot", str(tmp_path / "a.png")], check=True)
    assert (tmp_path / "a.png").stat().st_size > 0
    other = _comparison(tmp_path / "subset.json", 10000, 0)
    mixed = subprocess.run([sys.executable, script, "--replot", seeds[0], other, "--plot", str(tmp_path / "b.png")],
                           capture_output=True, text=True)  # fmt: skip
    assert mixed.returncode == 2 and "differ in preset or training data" in mixed.stderr
    assert not (tmp_path / "b.png").exists()
