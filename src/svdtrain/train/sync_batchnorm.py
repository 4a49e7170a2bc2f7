"""BatchNorm over the global batch of a distributed run, on any backend.

PyTorch's ``nn.SyncBatchNorm`` runs on GPUs only; on CPU processes (gloo) each would normalize
its own shard, so a CNN trained on N processes would not equal one process at the same global
batch. :class:`GlooSyncBatchNorm` all-reduces the per-channel statistics in the forward pass
and the two gradient sums in the backward pass (the same algebra as ``nn.SyncBatchNorm``), and
:func:`synchronized_batchnorm` swaps it in for the length of a training stage only, so
checkpoints, pruning and exports only ever see plain BatchNorm modules.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _GlobalBatchNorm(torch.autograd.Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias with mean and var over every process's
    examples. Returns y and the global (mean, unbiased var) for the running statistics."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, group):  # x: (N, C, *)
        dtype, x = x.dtype, x.float()  # statistics in float32 whatever autocast gave
        dims, shape = [0, *range(2, x.dim())], (1, -1, *[1] * (x.dim() - 2))
        local = torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.size(1)])])
        dist.all_reduce(local, group=group)
        count = local[-1]
        mean = local[:-1] / count  # (C,)
        centred = x - mean.view(shape)
        squares = centred.square().sum(dims)
        dist.all_reduce(squares, group=group)
        var = squares / count  # biased, for normalizing (C,)
        invstd = torch.rsqrt(var + eps)
        xhat = centred * invstd.view(shape)
        y = xhat if weight is None else xhat * weight.view(shape) + bias.view(shape)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.count, ctx.group, ctx.dtype = count, group, dtype
        unbiased = var * count / (count - 1).clamp(min=1)
        ctx.mark_non_differentiable(mean, unbiased)
        return y.to(dtype), mean, unbiased

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_var):
        xhat, invstd, weight = ctx.saved_tensors
        g = grad_y.float()
        dims, shape = [0, *range(2, g.dim())], (1, -1, *[1] * (g.dim() - 2))
        sum_g, sum_g_xhat = g.sum(dims), (g * xhat).sum(dims)  # this process's: DDP averages w and b
        both = torch.cat([sum_g, sum_g_xhat])
        dist.all_reduce(both, group=ctx.group)
        mean_g, mean_g_xhat = (both / ctx.count).chunk(2)
        scale = invstd if weight is None else invstd * weight
        grad_x = (g - mean_g.view(shape) - xhat * mean_g_xhat.view(shape)) * scale.view(shape)
        grad_weight = None if weight is None else sum_g_xhat.to(weight.dtype)
        grad_bias = None if weight is None else sum_g.to(weight.dtype)
        return grad_x.to(ctx.dtype), grad_weight, grad_bias, None, None


class GlooSyncBatchNorm(_BatchNorm):
    """BatchNorm of any dimension whose training-mode statistics span all processes of
    ``process_group`` (the default group when None); plain BatchNorm in eval mode or in one
    process."""

    def __init__(self, num_features: int, *args, process_group=None, **kwargs) -> None:
        super().__init__(num_features, *args, **kwargs)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        self._check_input_dim(input)
        y, mean, var = _GlobalBatchNorm.apply(input, self.weight, self.bias, self.eps, self.process_group)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / self.num_batches_tracked.item() if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var, factor)
        return y


def _synced(norm: _BatchNorm, device: torch.device) -> nn.Module:
    """A synchronized twin of ``norm`` holding the very same parameters and buffers."""
    kind = nn.SyncBatchNorm if device.type == "cuda" else GlooSyncBatchNorm
    twin = kind(norm.num_features, norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
    for name in ("weight", "bias"):
        setattr(twin, name, getattr(norm, name))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        twin.register_buffer(name, getattr(norm, name))
    return twin.train(norm.training)


@contextmanager
def synchronized_batchnorm(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """Within the block, every BatchNorm module inside ``model`` (in place; not ``model`` itself)
    normalizes over all processes: ``nn.SyncBatchNorm`` on GPUs, :class:`GlooSyncBatchNorm`
    elsewhere. The twins share the originals' tensors, so training updates the originals,
    which are put back on exit."""
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, _BatchNorm) and not isinstance(child, (nn.SyncBatchNorm, GlooSyncBatchNorm)):
                setattr(parent, name, _synced(child, device))
                swapped.append((parent, name, child))
    try:
        yield model
    finally:
        for parent, name, original in swapped:
            original.train(getattr(parent, name).training)
            setattr(parent, name, original)
