"""The compact structure as data: a JSON-able spec of each factored weight's view, rank and
deployed form, and the rebuild of that structure on a freshly built dense model.

A compact model is saved as its state dict plus this spec (timm rebuilds pruned models the
same way), never as a pickled module: build the architecture (your code, or a Hugging Face
config), call :func:`rebuild_compact`, load the state dict.
"""

from __future__ import annotations

from torch import nn

from svdtrain.layers import FactoredWeight
from svdtrain.surgery.compact import compact, deployed_forms
from svdtrain.surgery.decompose import decompose
from svdtrain.surgery.walk import factored_weights, require_factored_weights, tied_names

SPEC_FORMAT = "svdtrain-compact"
SPEC_VERSION = 2


def compact_spec(model: nn.Module, compact_model: nn.Module) -> dict:
    """{"format", "version", "weights": {name: {"view", "rank", "form"}}} for ``compact_model``,
    made by ``compact(model, ...)``."""
    forms = deployed_forms(model, compact_model)
    weights = {
        name: {"view": handle.view, "rank": handle.rank, "form": forms[name]}
        for name, handle in require_factored_weights(model).items()
    }
    return {"format": SPEC_FORMAT, "version": SPEC_VERSION, "weights": weights}


def check_spec(spec: object) -> dict:
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT or spec.get("version") != SPEC_VERSION:
        raise ValueError(f"not a {SPEC_FORMAT} v{SPEC_VERSION} spec")
    weights = spec.get("weights")
    if not isinstance(weights, dict) or not weights:
        raise ValueError("the spec's 'weights' must be a non-empty mapping of weight name to entry")
    for name, entry in weights.items():
        if not isinstance(entry, dict) or not {"view", "rank", "form"} <= set(entry):
            raise ValueError(f"the spec's entry for {name!r} must hold view, rank and form, got {entry!r}")
    return spec


def rebuild_compact(model: nn.Module, spec: dict) -> nn.Module:
    """The compact structure of ``spec`` built on ``model`` (a dense model of the same
    architecture; its weights do not matter and it is changed in place). Load the compact
    state dict into the result. A weight of the spec that is tied in ``model`` (an output
    head untied by ``decompose(untie=...)``) gets its own copy, as it had when saved.

    Raises:
        ValueError: a malformed spec, or one that does not fit ``model``.
    """
    weights = check_spec(spec)["weights"]
    schemes = {entry["view"] for entry in weights.values() if entry["view"] in ("channel", "spatial")}
    scheme = "spatial" if "spatial" in schemes else "channel"
    untie = sorted(tied_names(model) & set(weights))  # an output head untied when it was factored
    decompose(model, scheme=scheme, init="random", weights=list(weights), untie=untie)
    for name, handle in factored_weights(model).items():
        entry = weights[name]
        if handle.view != entry["view"]:
            raise ValueError(f"{name!r} factors as {handle.view} here, the spec says {entry['view']}")
        _keep(handle, entry["rank"])
    return compact(model, forms={name: entry["form"] for name, entry in weights.items()})


def _keep(handle: FactoredWeight, rank: object) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= handle.rank:
        raise ValueError(f"the spec's rank for {handle.name!r} must be an integer in [1, {handle.rank}], got {rank!r}")
    handle.keep_(rank)
