"""Run by torchrun on 2 processes (tests/distributed/test_two_process_cuts.py): gradual cuts in an
own DDP loop (masked, or physical with a re-wrap), under Hugging Face Trainer and under
Lightning's DDP strategy, each process on its own data. Each process writes its ranks and a
checksum of its factors to OUT/<mode>-<rank>.json."""

import json
import os
import sys
import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import svdtrain

warnings.filterwarnings("ignore")
MODE, OUT = sys.argv[1], sys.argv[2]
CONFIG = svdtrain.SVDTrainingConfig(target_reduction=3.0, gradual_cuts=2, calibration="whiten")


def _net() -> nn.Module:
    torch.manual_seed(0)  # one start on every process
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 4 * 4, 10))  # fmt: skip


def _batches(rank: int, count: int = 4) -> list:
    generator = torch.Generator().manual_seed(1 + rank)  # each process its own data
    return [(torch.randn(8, 3, 4, 4, generator=generator), torch.randint(0, 10, (8,), generator=generator))
            for _ in range(count)]  # fmt: skip


def _write(svd: svdtrain.SVDTraining, model: nn.Module) -> None:
    factors = [p.detach() for h in svdtrain.factored_weights(model).values() for p in h.factors]
    result = {"ranks": {n: h.rank for n, h in svdtrain.factored_weights(model).items()},
              "checksum": float(sum(f.double().abs().sum() for f in factors)), "cuts": svd.cuts,
              "macs_ok": svdtrain.count_macs(model, svd.example) <= svd.baseline_macs / svd.config.target_reduction}
    with open(os.path.join(OUT, f"{MODE}-{dist.get_rank()}.json"), "w") as file:
        json.dump(result, file)


def own_loop(masked: bool) -> None:
    dist.init_process_group("gloo")
    rank, net = dist.get_rank(), _net()
    batches = _batches(rank)
    svd = svdtrain.SVDTraining(net, CONFIG, example=batches[0][0][:1])
    wrapped = nn.parallel.DistributedDataParallel(net)
    optimizer = torch.optim.Adam(svd.param_groups(1e-2))
    for _ in range(CONFIG.gradual_cuts + 1):
        for x, y in batches:
            loss = F.cross_entropy(wrapped(x), y) + svd.loss()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            svd.after_step(optimizer)
        svd.gradual_cut(optimizer, batches, masked=masked)
        if not masked:  # the factors shrank: DDP holds the parameters it was built with
            wrapped = nn.parallel.DistributedDataParallel(net)
    svd.prune(optimizer, batches)
    _write(svd, net)


def hf_trainer() -> None:
    import transformers

    from svdtrain.integrations.hf_trainer import SVDTrainer

    class Tokens(torch.utils.data.Dataset):
        ids = torch.randint(0, 64, (32, 16), generator=torch.Generator().manual_seed(0))

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2,
                                                                 n_head=4))  # fmt: skip
    config = svdtrain.SVDTrainingConfig(target_reduction=2.0, gradual_cuts=2, calibration="whiten")
    svd = svdtrain.SVDTraining(model, config, example=Tokens.ids[:1])
    args = transformers.TrainingArguments(output_dir=os.path.join(OUT, "hf"), per_device_train_batch_size=4,
                                          num_train_epochs=3, use_cpu=True, ddp_backend="gloo", report_to=[],
                                          save_strategy="no", disable_tqdm=True, learning_rate=1e-3)  # fmt: skip
    trainer = SVDTrainer(model=model, args=args, train_dataset=Tokens(), svd=svd)
    trainer.train()
    assert dist.is_initialized() and dist.get_world_size() == 2, "Trainer ran without DDP"
    _write(svd, model)


def lightning() -> None:
    import lightning as L

    from svdtrain.integrations.lightning import SVDCallback

    class Module(L.LightningModule):
        def __init__(self, net, svd):
            super().__init__()
            self.net, self.svd = net, svd

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y) + self.svd.loss()

        def configure_optimizers(self):
            return torch.optim.Adam(self.svd.param_groups(1e-2))

    net = _net()
    data = torch.utils.data.TensorDataset(*(torch.cat(t) for t in zip(*_batches(0, 8))))
    svd = svdtrain.SVDTraining(net, CONFIG, example=data[0][0][None])
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[SVDCallback(svd)])  # fmt: skip
    trainer.fit(Module(net, svd), torch.utils.data.DataLoader(data, batch_size=8))
    assert dist.is_initialized() and dist.get_world_size() == 2, "Lightning ran without DDP"
    _write(svd, net)


if __name__ == "__main__":
    {"own-masked": lambda: own_loop(True), "own-rewrap": lambda: own_loop(False), "hf": hf_trainer,
     "lightning": lightning}[MODE]()  # fmt: skip
    if torch.distributed.is_initialized():  # gloo torn down at exit without this may abort a process
        torch.distributed.destroy_process_group()
