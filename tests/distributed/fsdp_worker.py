"""Run by torchrun on 2 processes (tests/distributed/test_fsdp.py): SVD training's regularizers on
factors FSDP2 sharded, against the same model unsharded in each process: the terms' values and
gradients, and a whole training step (task loss on each process's own batch plus the terms).
Writes OUT/<mode>-<rank>.json with the worst relative differences."""

import copy
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import fully_shard

import svdtrain
from exit_cleanly import leave  # beside this script
from svdtrain.surgery.sharded_groups import mark_factors, shard_placement

MODE, OUT = sys.argv[1], sys.argv[2]  # MODE: rows (FSDP2's default placement) or long (Vh along n)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / max(float(b.norm()), 1e-12))


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 33), nn.ReLU(), nn.Linear(33, 8), nn.ReLU(), nn.Linear(8, 32), nn.ReLU(),
                          nn.Linear(32, 5))  # fmt: skip  (33: an uneven shard)
    svdtrain.decompose(model)
    with torch.no_grad():  # away from the orthogonal start, where the terms are ~0
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference = copy.deepcopy(model)
    if MODE == "long":
        mark_factors(model)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, shard_placement_fn=shard_placement if MODE == "long" else None)
    fully_shard(model)
    terms = {"orthogonality": svdtrain.orthogonality_loss,
             "hoyer": lambda m: svdtrain.sparsity_loss(m, "hoyer", scales={"2.weight": 3.0}),
             "hoyer_square": lambda m: svdtrain.sparsity_loss(m, "hoyer_square"),
             "l1": lambda m: svdtrain.sparsity_loss(m, "l1"),
             "tail_l1": lambda m: svdtrain.surgery.losses.tail_l1_loss(
                 m, {"0.weight": torch.arange(16) >= 10, "4.weight": torch.arange(8) >= 3})}  # fmt: skip
    generator = torch.Generator().manual_seed(7)
    batches = [(torch.randn(6, 16, generator=generator), torch.randint(0, 5, (6,), generator=generator))
               for _ in range(world)]  # fmt: skip
    regularization = svdtrain.train.Regularization(1.0, 0.01, "hoyer")
    terms["step"] = lambda m: (F.cross_entropy(m(batches[rank][0]), batches[rank][1]) if m is model else sum(
        F.cross_entropy(m(x), y) for x, y in batches) / world) + regularization.loss(m)  # fmt: skip
    worst = {}
    for name, term in terms.items():
        for net in (model, reference):
            net.zero_grad(set_to_none=True)
        sharded, plain = term(model), term(reference)
        sharded.backward()
        plain.backward()
        value = sharded.detach().clone()
        dist.all_reduce(value)  # the terms are alike on every process; the task loss is each one's own batch's
        differences = [abs(float(value) / world - float(plain)) / max(abs(float(plain)), 1e-12)]
        for p, q in zip(model.parameters(), reference.parameters()):
            if q.grad is not None:  # a shard without a gradient: none of its values is in the term
                differences.append(_relative(p.grad.full_tensor() if p.grad is not None else 0 * q.grad, q.grad))
        worst[name] = max(differences)
    with open(os.path.join(OUT, f"{MODE}-{rank}.json"), "w") as file:
        json.dump(worst, file)


if __name__ == "__main__":
    main()
    leave()
