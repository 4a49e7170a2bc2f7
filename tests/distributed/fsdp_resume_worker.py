"""Run by torchrun on 2 processes (tests/distributed/test_fsdp.py): SVD training under FSDP2
checkpointed with torch.distributed.checkpoint (sharded: each process writes its shards) and
resumed in fresh processes; writes OUT/<mode>-<rank>.json with the factors' checksum.
MODE: whole (4 steps), first (2 steps, then a checkpoint), resumed (load it, 2 more steps)."""

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import fully_shard

import dcp_state  # beside this script
import svdtrain
from exit_cleanly import leave  # beside this script
from svdtrain.surgery.sharded_groups import mark_factors, shard_placement

MODE, OUT = sys.argv[1], sys.argv[2]


def main() -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    svd = svdtrain.SVDTraining(model, svdtrain.SVDTrainingConfig(sparsity_weight=0.01))
    mark_factors(model)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, shard_placement_fn=shard_placement)
    fully_shard(model)
    optimizer = torch.optim.Adam(svd.param_groups(1e-2))
    start = 0
    if MODE == "resumed":
        saved = dcp_state.load(model, optimizer, OUT)
        svd.load_state_dict(saved["svd"])
        start = saved["step"]
    stop = 2 if MODE == "first" else 4
    for step in range(start, stop):
        generator = torch.Generator().manual_seed(100 * step + rank)
        x, y = torch.randn(8, 16, generator=generator), torch.randint(0, 8, (8,), generator=generator)
        loss = F.cross_entropy(model(x), y) + svd.loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if MODE == "first":
        dcp_state.save(model, optimizer, {"svd": svd.state_dict(), "step": stop}, OUT)
    factors = [p.full_tensor() for h in svdtrain.factored_weights(model).values() for p in h.factors]
    with open(os.path.join(OUT, f"{MODE}-{rank}.json"), "w") as file:
        json.dump({"checksum": float(sum(f.double().abs().sum() for f in factors)), "steps": svd.steps}, file)


if __name__ == "__main__":
    main()
    leave()
