"""SVD training with gradual cuts, fine-tuning and compact, under FSDP2 on 2 processes (run by
torchrun) or in one process on both processes' batches (run by python): the same method, so the
same ranks and, within float tolerance, the same compact model (tests/distributed/test_fsdp.py).
Momentum SGD: Adam turns float noise in a near-zero gradient into a full step (g/|g|), so two
exact runs of it drift apart by 1e-2 in nine steps, which would hide a real difference.
Writes OUT/<mode>-<rank>.json with the ranks and the compact model's outputs on a probe batch.

MODE: single (one process, masked cuts), sharded (2 processes, FSDP2 in an own loop), first
(sharded, stopped after the first cut: a DCP checkpoint), resumed (loads it and runs to the end),
lightning (2 processes, Lightning's ModelParallelStrategy: FSDP2 applied in configure_model)."""

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
from svdtrain.surgery.sharded_groups import is_sharded, local_range, mark_factors, shard_placement

MODE, OUT = sys.argv[1], sys.argv[2]
WORLD, STEPS_PER_EPOCH, SVD_EPOCHS, FINETUNE_EPOCHS = 2, 3, 2, 1


def batch(step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Process ``rank``'s batch at ``step``; every epoch reads the same batches, as a DataLoader does."""
    generator = torch.Generator().manual_seed(100 * (step % STEPS_PER_EPOCH) + rank)
    return torch.randn(8, 15, generator=generator), torch.randint(0, 6, (8,), generator=generator)


def shard(model: nn.Module, mesh=None) -> None:
    mark_factors(model)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh, shard_placement_fn=shard_placement)
    fully_shard(model, mesh=mesh)


def build() -> tuple[nn.Module, svdtrain.SVDTraining]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(15, 47), nn.ReLU(), nn.Linear(47, 33), nn.ReLU(), nn.Linear(33, 6))
    example = torch.randn(4, 15, generator=torch.Generator().manual_seed(1))
    config = svdtrain.SVDTrainingConfig(target_reduction=2.5, gradual_cuts=SVD_EPOCHS, sparsity_weight=0.02,
                                        bn_recalibration_batches=0)  # fmt: skip
    return model, svdtrain.SVDTraining(model, config, example=example)


def rezeroes(svd: svdtrain.SVDTraining) -> bool:
    """Whether after_step zeroes the dropped slots of each process's shards again (values
    written there by hand: training alone leaves them at zero, so it would not tell)."""
    handles = svdtrain.factored_weights(svd.model)
    with torch.no_grad():
        for name, k in svd.masks.live.items():
            for tensor, axis in zip(handles[name].factors, (1, 0, 0)):
                local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
                start, length = local_range(tensor, axis)
                dead = min(max(k - start, 0), length)
                local.narrow(axis, dead, length - dead).fill_(1.0)
    svd.after_step(torch.optim.SGD([torch.zeros(1, requires_grad=True)]))
    for name, k in svd.masks.live.items():
        for tensor, axis in zip(handles[name].factors, (1, 0, 0)):
            whole = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            if whole.narrow(axis, k, whole.shape[axis] - k).abs().sum() != 0 or whole.narrow(axis, 0, k).abs().sum() == 0:
                return False
    return True


def write(svd: svdtrain.SVDTraining, ranks: dict[str, int], rank: int) -> None:
    held = rezeroes(svd)
    small = svd.compact()
    result = {"ranks": ranks, "rezeroes": held}
    if small is not None:
        probe = torch.randn(5, 15, generator=torch.Generator().manual_seed(2))
        result["outputs"] = small(probe).tolist()
        result["plain_torch"] = not svdtrain.factored_weights(small)
    with open(os.path.join(OUT, f"{MODE}-{rank}.json"), "w") as file:
        json.dump(result, file)


def lightning() -> None:
    """The same run through Lightning, each process reading its own batches in order (no
    distributed sampler); SVDCallback cuts at epoch ends and prunes at the end."""
    import lightning as L
    from lightning.pytorch.strategies import ModelParallelStrategy

    from svdtrain.integrations.lightning import SVDCallback

    class Module(L.LightningModule):
        def __init__(self, net: nn.Module, svd: svdtrain.SVDTraining) -> None:
            super().__init__()
            self.net, self.svd = net, svd

        def configure_model(self) -> None:
            shard(self.net, self.device_mesh["data_parallel"])

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y) + self.svd.loss()

        def configure_optimizers(self):
            return torch.optim.SGD(self.svd.param_groups(0.05), momentum=0.9)

    model, svd = build()
    rank = int(os.environ["RANK"])  # torchrun's; Lightning initializes the group in fit
    parts = [batch(step, rank) for step in range(STEPS_PER_EPOCH)]
    data = torch.utils.data.TensorDataset(torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts]))
    trainer = L.Trainer(max_epochs=SVD_EPOCHS + FINETUNE_EPOCHS, accelerator="cpu", devices=WORLD,
                        strategy=ModelParallelStrategy(data_parallel_size=WORLD, tensor_parallel_size=1),
                        use_distributed_sampler=False, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[SVDCallback(svd)])  # fmt: skip
    trainer.fit(Module(model, svd), torch.utils.data.DataLoader(data, batch_size=8))
    assert is_sharded(model), "Lightning ran without FSDP2"
    write(svd, dict(svd.masks.live), dist.get_rank())


def main() -> None:
    if MODE == "lightning":
        return lightning()
    sharded = MODE != "single"
    if sharded:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if sharded else 0
    model, svd = build()
    if sharded:
        shard(model)
    optimizer = torch.optim.SGD(svd.param_groups(0.05), momentum=0.9)
    start = 0
    if MODE == "resumed":
        svd.load_state_dict(dcp_state.load(model, optimizer, OUT))
        start = 1
    for epoch in range(start, SVD_EPOCHS + FINETUNE_EPOCHS):
        for step in range(epoch * STEPS_PER_EPOCH, (epoch + 1) * STEPS_PER_EPOCH):
            parts = [batch(step, rank)] if sharded else [batch(step, r) for r in range(WORLD)]
            x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            loss = F.cross_entropy(model(x), y) + svd.loss()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            svd.after_step(optimizer)
        if epoch < SVD_EPOCHS:
            ranks = svd.gradual_cut(optimizer, masked=True)
        if MODE == "first":
            dcp_state.save(model, optimizer, svd.state_dict(), OUT)
            return
    write(svd, ranks, rank)


if __name__ == "__main__":
    main()
    leave()
