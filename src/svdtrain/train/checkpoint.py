"""Checkpoints: reading users' dense weights, and saving/restoring SVD models as data.

An SVD model is saved as its state dict plus {weight name: rank} (names as
``svdtrain.factored_weights`` gives them, e.g. ``"layer1.0.conv1.weight"``); loading rebuilds
the architecture from the config, factors those weights and shrinks each to its rank before
loading the state dict, so no pickled module is ever needed (timm's pruned-model spec, in
spirit).
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from svdtrain.bounds import brief, read_file
from svdtrain.io import atomic_write, atomic_write_text
from svdtrain.surgery import decompose, factored_weights
from svdtrain.surgery.walk import tied_names


class CorruptCheckpoint(ValueError):
    """A checkpoint whose bytes do not match its recorded checksum, or cannot be read."""


def checksum_path(path: str | Path) -> Path:
    """Where the SHA-256 of the checkpoint at ``path`` is kept: ``<name>.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def file_checksum(path: str | Path) -> str:
    """The SHA-256 of the checkpoint at ``path``: the one :func:`save_checkpoint` recorded beside
    it (checked on every load and by :func:`damage`, so not computed again), else computed,
    reading in blocks (stage files can be large)."""
    recorded = _recorded_checksum(Path(path))
    if recorded is not None:
        return recorded
    digest = hashlib.sha256()  # not hashlib.file_digest: Python 3.11+
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def previous_path(path: str | Path) -> Path:
    """Where the checkpoint before the one at ``path`` is kept: ``<stem>.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(path: str | Path, payload: dict[str, Any], *, keep_previous: bool = False) -> None:
    """Write ``payload`` atomically, then its checksum. With ``keep_previous`` the file it
    replaces moves to :func:`previous_path` first, so a crash at any moment leaves one good
    checkpoint (the new one, or the one before it)."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    # Every step below leaves a readable state if the process dies right after it: a checksum
    # moves (or goes) before its data, so no data file is ever paired with another's checksum.
    previous = previous_path(path)
    if keep_previous and path.exists():
        checksum_path(previous).unlink(missing_ok=True)
        if checksum_path(path).exists():
            os.replace(checksum_path(path), checksum_path(previous))
        os.replace(path, previous)
    else:
        checksum_path(path).unlink(missing_ok=True)
    atomic_write(path, lambda f: f.write(data), mode="wb")
    atomic_write_text(checksum_path(path), hashlib.sha256(data).hexdigest() + "\n")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, its checksum verified where one was written.

    Raises:
        FileNotFoundError: no such file.
        CorruptCheckpoint: the bytes do not match the checksum, or do not unpickle.
    """
    path = Path(path)
    data = read_file(path, what="checkpoint")  # a regular file: /dev/zero would be read until memory ran out
    expected = _recorded_checksum(path)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise CorruptCheckpoint(f"{path} is corrupted (its bytes do not match {checksum_path(path).name})")
    if not data.startswith((b"PK", b"\x80")):  # torch.save writes a zip archive (older versions a pickle)
        raise CorruptCheckpoint(f"{path} is not a PyTorch checkpoint (torch.save writes a zip archive or a pickle)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        detail = (str(error).splitlines() or [""])[0]  # some say no more than a number (a pickle opcode)
        raise CorruptCheckpoint(f"{path} is not a readable checkpoint (torch.load: {type(error).__name__}"
                                f"{': ' + detail if detail else ''})") from None


def _recorded_checksum(path: Path) -> str | None:
    """The SHA-256 recorded beside the checkpoint at ``path`` (a line of 65 bytes), or None."""
    recorded = checksum_path(path)
    if not recorded.exists():
        return None
    return read_file(recorded, what="checksum file", limit=CHECKSUM_BYTES).decode("ascii", errors="replace").strip()


CHECKSUM_BYTES = 1024


def damage(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted (its bytes do not match its checksum),
    or None: good, or written without a checksum (by an older svdtrain)."""
    path = Path(path)
    expected = _recorded_checksum(path)
    if expected is None:
        return None
    if hashlib.sha256(read_file(path, what="checkpoint")).hexdigest() != expected:
        return f"{path} is corrupted (its bytes do not match {checksum_path(path).name})"
    return None


def load_latest_good(path: str | Path, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or the one before it when that one is missing or bad (said
    in one line); None when neither is there."""
    path = Path(path)
    for candidate in (path, previous_path(path)):
        if not candidate.exists():
            continue
        try:
            state = load_checkpoint(candidate)
        except CorruptCheckpoint as bad:
            log(f"WARNING {bad}; trying the one before it")
            continue
        if candidate != path:
            log(f"resuming from {candidate.name}, the checkpoint before the latest")
            for damaged in (path, checksum_path(path)):  # so the next save keeps the good one as previous
                damaged.unlink(missing_ok=True)
        return state
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a file holding one or ``{"state_dict": ...}``; DataParallel's
    ``module.`` prefix removed."""
    data = load_checkpoint(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(f"{path} holds no state dict (a dict of tensors, or one under 'state_dict')")
    return {key.removeprefix("module."): value for key, value in data.items()}


def load_matching(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict that names the first mismatched key in a one-line error."""
    expected = model.state_dict()
    # Checkpoints from PyTorch < 0.4.1 predate BatchNorm's step counter; it is not a weight.
    state = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **state}
    for key in expected:
        if key not in state:
            raise ValueError(f"{source} does not match the model: missing key {key!r}")
        if state[key].shape != expected[key].shape:
            raise ValueError(
                f"{source} does not match the model: {key!r} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(expected[key].shape)}"
            )
    extra = [key for key in state if key not in expected]
    if extra:
        raise ValueError(f"{source} does not match the model: unexpected key {brief(extra[0])}")
    model.load_state_dict(state)


def ranks_of(model: nn.Module) -> dict[str, int]:
    """{weight name: rank} of every factored weight."""
    return {name: handle.rank for name, handle in factored_weights(model).items()}


def rebuild_svd_model(dense: nn.Module, scheme: str, ranks: dict[str, int]) -> nn.Module:
    """Factor exactly the weights named in ``ranks`` (randomly: the state dict comes next) and
    shrink each to its rank; ``dense`` is changed in place and returned.

    Raises:
        ValueError: a name that is not a factorizable weight of ``dense`` (e.g. a checkpoint
            keyed by module names, as svdtrain wrote before weights became the unit), or a
            rank out of range.
    """
    modules = dict(dense.named_modules())
    old = [name for name in ranks if name in modules]
    if old:
        raise ValueError(f"the saved ranks name module {brief(old[0])}, not a weight: a checkpoint from an older "
                         f"svdtrain (ranks were per module then); re-run its stages with this version")
    untie = sorted(tied_names(dense) & set(ranks))  # an output head untied when it was factored
    model = decompose(dense, scheme=scheme, init="random", weights=list(ranks), untie=untie)
    shrink_to(model, ranks)
    return model


def shrink_to(model: nn.Module, ranks: dict[str, int]) -> None:
    """Cut each factored weight named in ``ranks`` to its rank (values to be loaded next)."""
    handles = factored_weights(model)
    for name, rank in ranks.items():
        handle = handles.get(name)
        if handle is None:
            raise ValueError(f"the saved ranks name {brief(name)}, which is not a factored weight of the model")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= handle.rank:
            raise ValueError(f"the rank saved for {brief(name)} must be an integer in [1, {handle.rank}], "
                             f"got {brief(rank)}")
        if rank < handle.rank:
            handle.keep_(rank)
