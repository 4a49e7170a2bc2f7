"""A sharded run's checkpoint for the FSDP2 workers: model and optimizer shards through
torch.distributed.checkpoint, and beside them (rank 0) a JSON of the run's own state."""

import json
import os

import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict


def save(model, optimizer, state: dict, folder: str) -> None:
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=os.path.join(folder, "ckpt"))
    if dist.get_rank() == 0:
        with open(os.path.join(folder, "state.json"), "w") as file:
            json.dump(state, file)


def load(model, optimizer, folder: str) -> dict:
    """Fill the shards in place; returns the JSON state."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=os.path.join(folder, "ckpt"))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    with open(os.path.join(folder, "state.json")) as file:
        return json.load(file)
