"""Cuts and the compact model for a model FSDP2 has sharded (DTensor factors).

The rank rules read a whole model: MACs traced on an example, spectra, a copy to prune. So
rank 0 gathers the full state dict (``torch.distributed.checkpoint.state_dict``, on its CPU,
as FSDP's full checkpoints do) into a copy of the model's structure taken before sharding
(FSDP2 modules cannot be deep-copied), decides and cuts there, and the cut factors go back
into each process's shards at the shapes FSDP2 holds, the dropped slots zero: a masked cut
(:mod:`svdtrain.train.rank_masks`). FSDP2's parameters keep their shapes, so its parameter
groups, the optimizer and a scheduler keep working; :func:`gathered` also gives the compact
model its whole copy at the end.
"""

from __future__ import annotations

import copy
import pickle
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor, distribute_tensor

from svdtrain.surgery import factored_weights
from svdtrain.surgery.walk import copy_model
from svdtrain.train.distributed import Distributed


Value = TypeVar("Value")


def uses_fsdp(model: nn.Module) -> bool:
    """Whether FSDP2 manages part of the model (its parameters may be sharded DTensors, or, after
    a forward without a backward, plain tensors gathered for a moment)."""
    return any(isinstance(module, FSDPModule) for module in model.modules())


def reshard(model: nn.Module) -> None:
    """Every FSDP2 module back to its shards (a forward with no backward leaves some gathered)."""
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


def skeleton_of(model: nn.Module) -> nn.Module:
    """The model's structure with every tensor on the meta device (no memory: parameters,
    buffers, the tensors a module keeps in lists such as an RNN's flat weights): what
    :func:`gathered` fills. Take it before ``fully_shard`` (FSDP2 modules cannot be copied)."""
    memo: dict[int, torch.Tensor] = {}
    for module in model.modules():
        kept = [t for v in vars(module).values() if isinstance(v, list) for t in v if isinstance(t, torch.Tensor)]
        for tensor in [*module._parameters.values(), *module._buffers.values(), *kept]:
            if tensor is not None and id(tensor) not in memo:
                meta = torch.empty_like(tensor, device="meta")
                memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
    return copy_model(model, memo)


@contextmanager
def gathered(model: nn.Module, skeleton: nn.Module, dist: Distributed) -> Iterator[nn.Module | None]:
    """Within the block: on rank 0 a whole copy of the sharded ``model`` on the CPU, None on the
    other processes: the full state dict assigned into a copy of ``skeleton`` (so in the state's
    dtype, with no second copy; tied parameters tied again), buffers from ``model`` (FSDP2 does
    not shard them). Every process must enter it: gathering is collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    reshard(model)
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not dist.is_main:
        yield None
        return
    whole = copy.deepcopy(skeleton)
    tied = _tied_parameters(whole)
    whole.load_state_dict(state, strict=False, assign=True)  # factored weights take the state's ranks as they load
    del state
    for places in tied:
        first = getattr(*places[0])
        for module, name in places[1:]:
            module._parameters[name] = first
    live = dict(model.named_buffers(remove_duplicate=False))
    for name, _ in whole.named_buffers(remove_duplicate=False):
        owner, _, leaf = name.rpartition(".")
        whole.get_submodule(owner)._buffers[leaf] = live[name].detach().cpu()
    missing = [name for name, p in whole.named_parameters() if p.is_meta]
    if missing:
        raise ValueError(f"the gathered state dict has no value for {missing[0]!r}")
    yield whole


def decided(dist: Distributed, decide: Callable[[], Value], *, share: bool = True) -> Value | None:
    """``decide()`` on rank 0, its result on every process (``share=False``: on rank 0, None
    elsewhere); an error there is raised on every process (they would wait for rank 0 in the
    next collective otherwise)."""
    outcome: tuple[bool, object] | None = None
    if dist.is_main:
        try:
            outcome = (True, decide())
        except Exception as error:  # raised on every process below
            outcome = (False, error)
            try:
                pickle.dumps(error)
            except Exception:
                outcome = (False, RuntimeError(f"{type(error).__name__}: {error}"))
    sent = (True, None) if dist.is_main and outcome[0] and not share else outcome  # unshared: rank 0's alone
    ok, value = dist.broadcast(sent)
    if not ok:
        raise value
    return outcome[1] if dist.is_main else value


def scatter_cut(model: nn.Module, whole: nn.Module | None, ranks: dict[str, int], dist: Distributed) -> None:
    """Write rank 0's cut factors (``whole``, None elsewhere) into every process's shards of
    ``model``'s full-size factors: the first ``ranks[name]`` slots, the rest zero. Collective."""
    cut = factored_weights(whole) if whole is not None else None
    with torch.no_grad():
        for name, handle in factored_weights(model).items():
            k = ranks[name]
            for i, (param, axis) in enumerate(zip(handle.factors, (1, 0, 0))):
                local = param.to_local() if isinstance(param, DTensor) else param
                full = torch.zeros(param.shape, dtype=param.dtype, device=local.device)
                if cut is not None:
                    full.narrow(axis, 0, k).copy_(cut[name].factors[i])
                if isinstance(param, DTensor):
                    local.copy_(distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=0).to_local())
                else:
                    dist.broadcast_tensors([full])
                    local.copy_(full)


def _tied_parameters(model: nn.Module) -> list[list[tuple[nn.Module, str]]]:
    """The places (module, name) of each parameter held in more than one (a tied head)."""
    places: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for name, param in module._parameters.items():
            if param is not None:
                places.setdefault(id(param), []).append((module, name))
    return [found for found in places.values() if len(found) > 1]
