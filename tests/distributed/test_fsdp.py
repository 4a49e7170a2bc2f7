"""SVD training's regularizers under FSDP2 on 2 CPU processes (gloo): computed on the shards, their
values and gradients, and a whole training step's gradients, equal the unsharded model's
(relative 1e-5), with FSDP2's default placement (rows) and with Vh sharded along its long side."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torchrun = shutil.which("torchrun") or shutil.which("torchrun", path=os.path.dirname(sys.executable))
WORKER = Path(__file__).with_name("fsdp_worker.py")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(torchrun is None, reason="torchrun is not installed")]


@pytest.mark.parametrize("mode", ["rows", "long"])
def test_the_terms_and_a_step_on_shards_equal_the_unsharded_model(tmp_path, mode):
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(WORKER), mode, str(tmp_path)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        worst = json.loads((tmp_path / f"{mode}-{rank}.json").read_text())
        assert set(worst) == {"orthogonality", "hoyer", "hoyer_square", "l1", "tail_l1", "step"}
        assert all(difference < 1e-5 for difference in worst.values()), worst
