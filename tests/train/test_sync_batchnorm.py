"""GlooSyncBatchNorm: two CPU processes, each holding half of a batch, give what one BatchNorm
gives on the whole batch: outputs, running statistics, and gradients (of the input scaled by
the world size, as DDP expects; of weight and bias once averaged, as DDP averages them)."""

import subprocess
import sys

import pytest
import torch
from torch import nn

from svdtrain.train.sync_batchnorm import GlooSyncBatchNorm, synchronized_batchnorm

WORKER = """
import sys, torch, torch.distributed as dist
from svdtrain.train.sync_batchnorm import GlooSyncBatchNorm
rank, folder, shape, momentum = int(sys.argv[1]), sys.argv[2], eval(sys.argv[3]), eval(sys.argv[4])
dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=rank, world_size=2)
case = torch.load(f"{folder}/case.pt")
x = case["x"].chunk(2)[rank].clone().requires_grad_()
norm = GlooSyncBatchNorm(shape[1], momentum=momentum)
norm.load_state_dict(case["state"])
y = norm(x)
(y * case["r"].chunk(2)[rank]).sum().div(x.shape[0]).backward()
torch.save({"y": y.detach(), "x_grad": x.grad, "w_grad": norm.weight.grad, "b_grad": norm.bias.grad,
            "state": norm.state_dict()}, f"{folder}/out{rank}.pt")
dist.destroy_process_group()
"""


@pytest.mark.parametrize("shape, momentum", [((6, 3, 4, 5), 0.1), ((8, 4), None), ((4, 2, 7), 0.5)])
def test_two_processes_equal_one_batchnorm_on_the_whole_batch(tmp_path, shape, momentum):
    torch.manual_seed(0)
    x, r = torch.randn(shape) * 3 + 1, torch.randn(shape)
    reference = GlooSyncBatchNorm(shape[1], momentum=momentum)  # one process: plain BatchNorm
    with torch.no_grad():
        reference.weight.uniform_(0.5, 2), reference.bias.uniform_(-1, 1)
    torch.save({"x": x, "r": r, "state": reference.state_dict()}, tmp_path / "case.pt")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = [subprocess.Popen([sys.executable, str(script), str(rank), str(tmp_path), repr(shape), repr(momentum)],
                                stderr=subprocess.PIPE, text=True) for rank in (0, 1)]  # fmt: skip
    for worker in workers:
        assert worker.wait(timeout=120) == 0, worker.stderr.read()[-2000:]
    outs = [torch.load(tmp_path / f"out{rank}.pt") for rank in (0, 1)]

    x.requires_grad_()
    y = reference(x)
    (y * r).sum().div(shape[0]).backward()
    torch.testing.assert_close(torch.cat([o["y"] for o in outs]), y.detach(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([o["x_grad"] for o in outs]) / 2, x.grad, atol=1e-5, rtol=1e-4)
    for name in ("w_grad", "b_grad"):
        expected = reference.weight.grad if name == "w_grad" else reference.bias.grad
        torch.testing.assert_close((outs[0][name] + outs[1][name]) / 2, expected, atol=1e-5, rtol=1e-4)
    for out in outs:
        for key, value in reference.state_dict().items():
            torch.testing.assert_close(out["state"][key], value, atol=1e-5, rtol=1e-5)


def test_one_process_and_eval_mode_are_plain_batchnorm():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 4)
    plain, synced = nn.BatchNorm1d(3), GlooSyncBatchNorm(3)
    torch.testing.assert_close(synced(x), plain(x))
    torch.testing.assert_close(synced.eval()(x), plain.eval()(x))
    with pytest.raises(ValueError, match="at least 2D"):
        synced(torch.randn(3))


def test_the_swap_lasts_the_block_and_trains_the_originals():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Sequential(nn.BatchNorm2d(4)))
    originals = [model[1], model[2][0]]
    with synchronized_batchnorm(model, torch.device("cpu")):
        twins = [model[1], model[2][0]]
        assert all(isinstance(t, GlooSyncBatchNorm) for t in twins)
        assert twins[0].weight is originals[0].weight and twins[0].running_mean is originals[0].running_mean
        model(torch.randn(2, 3, 6, 6))  # one process: plain statistics, written into the shared buffers
        model.eval()
    assert [model[1], model[2][0]] == originals
    assert originals[0].num_batches_tracked.item() == 1 and not originals[0].training
    assert originals[0].running_mean.abs().sum() > 0
