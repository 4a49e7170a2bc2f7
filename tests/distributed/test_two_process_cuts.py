"""Gradual cuts and the prune on 2 CPU processes (gloo), each on its own data: in an own DDP loop
(masked cuts, or shrinking ones with a re-wrap), under Hugging Face Trainer and under Lightning's
DDP strategy. Every process must end with the same ranks and the same factors, at the target."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torchrun = shutil.which("torchrun") or shutil.which("torchrun", path=os.path.dirname(sys.executable))
WORKER = Path(__file__).with_name("two_process_cuts.py")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(torchrun is None, reason="torchrun is not installed")]


@pytest.mark.parametrize("mode", ["own-masked", "own-rewrap", "hf", "lightning"])
def test_every_process_ends_with_the_same_ranks_and_factors(tmp_path, mode):
    if mode == "hf":
        pytest.importorskip("transformers")
        pytest.importorskip("accelerate")
    if mode == "lightning":
        pytest.importorskip("lightning")
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(WORKER), mode, str(tmp_path)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = (json.loads((tmp_path / f"{mode}-{rank}.json").read_text()) for rank in (0, 1))
    assert first["ranks"] == second["ranks"] and first["macs_ok"] and first["cuts"] == 2
    assert first["checksum"] == pytest.approx(second["checksum"], rel=1e-6)
