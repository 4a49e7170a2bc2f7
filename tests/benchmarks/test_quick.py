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
