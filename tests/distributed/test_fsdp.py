"""SVD training under FSDP2 on 2 CPU processes (gloo). The regularizers computed on the shards: their
values and gradients, and a whole training step's gradients, equal the unsharded model's
(relative 1e-5), with FSDP2's default placement (rows) and with Vh sharded along its long side.
A sharded checkpoint (torch.distributed.checkpoint) resumes to the uninterrupted run."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def test_a_sharded_run_checkpointed_with_dcp_resumes_to_the_uninterrupted_factors(tmp_path):
    """torch.distributed.checkpoint saves each process's shards of the SVD form (and Adam's);
    fresh processes load them and SVDTraining's state, and two more steps end where four did."""
    worker = Path(__file__).with_name("fsdp_resume_worker.py")
    for mode in ("whole", "first", "resumed"):
        done = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", str(worker), mode, str(tmp_path)],
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    whole, resumed = (json.loads((tmp_path / f"{mode}-0.json").read_text()) for mode in ("whole", "resumed"))
    assert resumed["steps"] == whole["steps"] == 4
    assert resumed["checksum"] == pytest.approx(whole["checksum"], rel=1e-6)


def _run(worker: Path, mode: str, out: Path, processes: int = 2) -> dict:
    command = [torchrun, "--standalone", f"--nproc_per_node={processes}"] if mode != "single" else [sys.executable]
    done = subprocess.run([*command, str(worker), mode, str(out)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    path = out / f"{mode}-0.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_cuts_fine_tuning_and_compact_under_fsdp2_match_one_process(tmp_path):
    """Two gradual cuts and fine-tuning under FSDP2 (decided on rank 0's gathered copy, scattered
    into the shards) end with one process's ranks on both processes' batches, and the compact
    models agree within float tolerance; the compact model is plain torch, on rank 0 only."""
    worker = Path(__file__).with_name("fsdp_cut_worker.py")
    single, sharded = _run(worker, "single", tmp_path), _run(worker, "sharded", tmp_path)
    assert sharded["ranks"] == single["ranks"]
    assert sum(sharded["ranks"].values()) < 15 + 33 + 6  # something was cut
    assert sharded["rezeroes"] and single["rezeroes"]  # uneven shards (15, 33: 8 + 7, 17 + 16) included
    assert sharded["plain_torch"] and "outputs" not in json.loads((tmp_path / "sharded-1.json").read_text())
    a, b = (torch.tensor(run["outputs"]) for run in (sharded, single))
    assert float((a - b).norm() / b.norm()) < 1e-5


def test_a_sharded_run_stopped_after_a_cut_resumes_to_the_same_ranks_and_model(tmp_path):
    worker = Path(__file__).with_name("fsdp_cut_worker.py")
    whole = _run(worker, "sharded", tmp_path)
    _run(worker, "first", tmp_path)
    resumed = _run(worker, "resumed", tmp_path)
    assert resumed["ranks"] == whole["ranks"]
    a, b = (torch.tensor(run["outputs"]) for run in (resumed, whole))
    assert float((a - b).abs().max()) < 1e-6


def test_lightning_model_parallel_strategy_cuts_like_one_process(tmp_path):
    """Lightning's FSDP2 strategy (fully_shard in configure_model), SVDCallback's masked cuts at
    epoch ends and its prune at the end: one process's ranks and compact model."""
    pytest.importorskip("lightning")
    worker = Path(__file__).with_name("fsdp_cut_worker.py")
    single, lightning = _run(worker, "single", tmp_path), _run(worker, "lightning", tmp_path)
    assert lightning["ranks"] == single["ranks"] and lightning["plain_torch"]
    a, b = (torch.tensor(run["outputs"]) for run in (lightning, single))
    assert float((a - b).norm() / b.norm()) < 1e-5
