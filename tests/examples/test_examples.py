"""Each example runs with --quick, as a user would run it (a subprocess, from the repository root)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [
    pytest.param("own_loop.py", [], id="own_loop"),
    pytest.param("custom_layer.py", [], id="custom_layer", marks=pytest.mark.slow),
    pytest.param("lightning_cnn.py", ["lightning"], id="lightning_cnn", marks=pytest.mark.slow),
    pytest.param("hf_trainer_gpt2.py", ["transformers", "accelerate"], id="hf_trainer_gpt2", marks=pytest.mark.slow),
    pytest.param("cli_from_checkpoint.sh", [], id="cli_from_checkpoint", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("script, needs", EXAMPLES)
def test_the_example_runs_quick(script, needs, tmp_path):
    pytest.importorskip("sklearn")
    for module in needs:
        pytest.importorskip(module)
    path = ROOT / "examples" / script
    command = ["bash", str(path), "--quick"] if script.endswith(".sh") else [sys.executable, str(path), "--quick"]
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path), "PYTHONPATH": str(ROOT / "src"),
           "PYTHONWARNINGS": "ignore"}  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip()
