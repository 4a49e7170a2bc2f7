"""The regularizers on factors sharded by FSDP2 (``fully_shard``: DTensor parameters), computed
on each process's shards with two all-reduces a step, whatever the number of weights.

A Gram matrix that contracts over the sharded dimension is the sum of its shards' Gram
matrices: U (m, r) sharded by rows gives U^T U as one sum over processes, and so does Vh (r, n)
sharded along n, its long side (:func:`shard_placement` asks ``fully_shard`` for that; with
FSDP2's default, rows, Vh is gathered whole, which costs its full size). The sums of |s| and
s^2 are sums of the shards' sums; the largest |s|, which only scales the Hoyer ratio, is a max.

Every process computes the same loss from the same sums, so the gradient of a process's shard
is the derivative through the sum it contributed to: the all-reduce's backward passes the
gradient through unchanged (:class:`_SumOverProcesses`), and the gradients land in the
parameters' sharded ``.grad`` directly, beside what FSDP reduce-scatters for the task loss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor, Shard

from svdtrain.linalg import check_sparsity_kind
from svdtrain.linalg.penalties import hoyer_from_sums
from svdtrain.surgery.walk import factored_weights, require_factored_weights


def is_sharded(model: nn.Module) -> bool:
    """Whether the model's factors are DTensors (FSDP2 has sharded them); False without factors."""
    return any(isinstance(p, DTensor) for w in factored_weights(model).values() for p in w.factors)


def shard_placement(param: nn.Parameter) -> Shard | None:
    """For ``fully_shard(module, shard_placement_fn=shard_placement)``: every Vh tagged by
    :func:`mark_factors` sharded along its long side, n, so its Gram matrix is a sum over shards
    too (where n divides evenly: FSDP2 shards other dimensions than rows only so); every other
    parameter as FSDP2 shards it by default (rows)."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    return Shard(1) if getattr(param, "_svdtrain_vh", False) and param.shape[1] % world == 0 else None


def mark_factors(model: nn.Module) -> None:
    """Tag each Vh so :func:`shard_placement` can tell it from other parameters (``fully_shard``
    hands it parameters, not names). Call before ``fully_shard``."""
    for weight in require_factored_weights(model).values():
        weight.Vh._svdtrain_vh = True


def check_tail_masks(tails: dict[str, torch.Tensor], ranks: dict[str, int]) -> None:
    """Refuse a tail mask for a weight the model lacks, or of another length than its s."""
    for name, mask in tails.items():
        if name not in ranks:
            raise ValueError(f"tail mask for {name!r}: the model has no such factored weight")
        if len(mask) != ranks[name]:
            raise ValueError(f"tail mask for {name!r} has {len(mask)} values, its weight {ranks[name]}")


class ShardedFactorGroups:
    """:class:`svdtrain.surgery.groups.FactorGroups`' terms for DTensor factors (same values)."""

    def __init__(self, model: nn.Module, scales: dict[str, float] | None = None,
                 tails: dict[str, torch.Tensor] | None = None) -> None:  # fmt: skip
        self.weights = require_factored_weights(model)
        self.scale_of = {name: (scales or {}).get(name, 1.0) for name in self.weights}
        self.tails: dict[str, torch.Tensor] = {}
        if tails is not None:
            self.set_tails(tails)

    def set_tails(self, tails: dict[str, torch.Tensor]) -> None:
        check_tail_masks(tails, {name: weight.rank for name, weight in self.weights.items()})
        self.tails = dict(tails)

    def orthogonality(self) -> torch.Tensor:
        """Sum over factored weights of ||U^T U - I||^2/r^2 + ||Vh Vh^T - I||^2/r^2."""
        local, whole = [], []  # Gram matrices summed over processes, and those of factors gathered whole
        for weight in self.weights.values():
            for factor in (weight.U, weight.Vh):
                (local if _contracts_over_shards(factor) else whole).append(factor)
        grams = [_local_gram(factor) for factor in local]
        summed = _sum_over_processes(grams) if grams else []
        grams = summed + [_gram(factor.full_tensor() if isinstance(factor, DTensor) else factor) for factor in whole]
        total = 0.0
        for gram in grams:
            k = gram.shape[-1]
            total = total + (gram - torch.eye(k, dtype=gram.dtype, device=gram.device)).pow(2).sum() / (k * k)
        return total

    def sparsity(self, kind: str = "hoyer") -> torch.Tensor:
        """Sum over factored weights of the sparsity of s, each times its scale."""
        check_sparsity_kind(kind)
        values = [_local(weight.s).float().abs() for weight in self.weights.values()]
        if kind == "l1":
            sums = _sum_over_processes([torch.stack([v.sum() for v in values])])[0]
            return sum(self.scale_of[name] * sums[i] for i, name in enumerate(self.weights))
        peaks = torch.stack([v.detach().amax() if v.numel() else v.new_zeros(()) for v in values])
        if dist.is_initialized():
            dist.all_reduce(peaks, op=dist.ReduceOp.MAX)
        safe = torch.where(peaks > 0, peaks, torch.ones_like(peaks))
        scaled = [v / safe[i] for i, v in enumerate(values)]
        sums = _sum_over_processes([torch.stack([torch.stack([v.sum(), v.pow(2).sum()]) for v in scaled])])[0]
        penalties = hoyer_from_sums(sums[:, 0], sums[:, 1], peaks > 0, kind)
        return sum(self.scale_of[name] * penalties[i] for i, name in enumerate(self.weights))

    def tail_l1(self) -> torch.Tensor:
        """Sum over factored weights of the L1 norm of the singular values their tail masks mark."""
        terms = []
        for name, weight in self.weights.items():
            if name in self.tails:
                mask = _local_slice(weight.s, self.tails[name].to(weight.s.device))
                terms.append((_local(weight.s).float().abs() * mask).sum() * self.scale_of[name])
        return _sum_over_processes([torch.stack(terms)])[0].sum() if terms else torch.zeros(())


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose backward passes the gradient through: every process computes the
    same loss from the sum, so each one's part has the sum's gradient."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor) -> torch.Tensor:
        summed = flat.clone()
        if dist.is_initialized():
            dist.all_reduce(summed)
        return summed

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def _sum_over_processes(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor summed over processes, in one all-reduce."""
    flat = _SumOverProcesses.apply(torch.cat([t.reshape(-1) for t in tensors]))
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _contracts_over_shards(factor: torch.Tensor) -> bool:
    """Whether ``factor``'s smaller Gram matrix sums over the dimension it is sharded along."""
    if not isinstance(factor, DTensor):
        return False
    m, n = factor.shape
    contracted = 1 if m <= n else 0  # A A^T sums over columns, A^T A over rows
    return all(not isinstance(p, Shard) or p.dim == contracted for p in factor.placements)


def _gram(factor: torch.Tensor) -> torch.Tensor:
    factor = factor.float() if factor.dtype in (torch.float16, torch.bfloat16) else factor
    m, n = factor.shape
    return factor @ factor.mT if m <= n else factor.mT @ factor


def _local_gram(factor: DTensor) -> torch.Tensor:
    """This process's part of the smaller Gram matrix, from its shard."""
    m, n = factor.shape
    part = _local(factor)
    part = part.float() if part.dtype in (torch.float16, torch.bfloat16) else part
    return part @ part.mT if m <= n else part.mT @ part


def _local_slice(value: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """The part of ``whole`` (same length as the DTensor ``value``) this process's shard holds."""
    start, length = local_range(value, 0)
    return whole[start: start + length]


def local_range(tensor: torch.Tensor, dim: int) -> tuple[int, int]:
    """(start, length) along ``dim`` of the part of ``tensor`` this process holds: all of it,
    unless a DTensor sharded along ``dim``."""
    if not isinstance(tensor, DTensor):
        return 0, tensor.shape[dim]
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    shape, offset = compute_local_shape_and_global_offset(tensor.shape, tensor.device_mesh, tensor.placements)
    return offset[dim], shape[dim]
