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
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from svdtrain.surgery import factored_weights
from svdtrain.surgery.walk import copy_model
from svdtrain.train.distributed import Distributed


def skeleton_of(model: nn.Module) -> nn.Module:
    """The model's structure with its parameters on the meta device (no memory), buffers kept:
    what :func:`gathered` fills. Take it before ``fully_shard``."""
    memo = {id(p): nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad) for p in model.parameters()}
    return copy_model(model, memo)


@contextmanager
def gathered(model: nn.Module, skeleton: nn.Module, dist: Distributed) -> Iterator[nn.Module | None]:
    """Within the block: on rank 0 a whole copy of the sharded ``model`` on the CPU (its full
    state dict loaded into a copy of ``skeleton``), None on the other processes. Every process
    must enter it: gathering is collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not dist.is_main:
        yield None
        return
    whole = copy.deepcopy(skeleton)
    for module in whole.modules():
        for name, param in module._parameters.items():
            if param is not None:
                module._parameters[name] = nn.Parameter(torch.empty_like(param, device="cpu"), param.requires_grad)
    whole.load_state_dict(state)  # factored weights take the state's ranks as they load
    del state
    yield whole


def scatter_cut(model: nn.Module, whole: nn.Module | None, ranks: dict[str, int]) -> None:
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
                    Distributed.current().broadcast_tensors([full])
                    local.copy_(full)
