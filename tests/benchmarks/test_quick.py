"""Each benchmark's --quick mode runs, so the scripts cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted(p for p in (Path(__file__).parents[2] / "benchmarks").glob("*.py") if not p.name.startswith("_"))


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

    from svdtrain.train.config import BUDGET_RECIPE

    assert ALL_LEVERS == {flag: value for flag, value in BUDGET_RECIPE.items() if flag != "distill_weight"}
    ablation = [name for name in LEVERS if name.startswith("all-no-")]
    assert len(ablation) == 5 and all(len(LEVERS[name]) == len(ALL_LEVERS) - 1 for name in ablation)
