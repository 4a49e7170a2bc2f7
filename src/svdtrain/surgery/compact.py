"""compact: a copy of a factored model made only of standard torch layers."""

from __future__ import annotations

import torch
from torch import nn

from svdtrain.layers import KINDS, FactoredWeight, kind_for, plain_type
from svdtrain.linalg import check_positive_int
from svdtrain.surgery.plan import can_swap, paired
from svdtrain.surgery.timing import faster_form
from svdtrain.surgery.trace import trace_forward
from svdtrain.surgery.walk import by_module, copy_model, replace_modules, require_factored_weights

CHOICES = ("macs", "measured")
FORMS = ("pair", "dense")


def _factors(handle: FactoredWeight) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(t.detach() for t in handle.factors)


@torch.no_grad()
def _bake(module: nn.Module, params: list[str]) -> None:
    """Replace the parametrized ``params`` by plain parameters holding their current values.

    Not ``parametrize.remove_parametrizations``: that deletes the weight's property from the
    parametrized class, which a deep copy shares with the model it was copied from, and so
    would break the original model too.
    """
    values = {p: getattr(module, p).detach().clone() for p in params}
    for param in params:
        del module.parametrizations[param]
    cls, original_cls = type(module), type(module).__bases__[0]
    if not module.parametrizations:
        del module.parametrizations
        module.__class__ = original_cls
    else:  # other parametrizations stay: a fresh class without the baked weights' properties
        module.__class__ = type(cls.__name__, (original_cls,), {k: v for k, v in cls.__dict__.items() if k not in params})
    for param, value in values.items():
        setattr(module, param, nn.Parameter(value))
    kind_for(module).refresh(module)


def _chosen_pairs(
    handles: dict[str, FactoredWeight], fqn: str, shape: torch.Size | None, read_outside: set[str],
    forms: dict[str, str], choose: str, timing: dict,
) -> set[str]:  # fmt: skip
    module = next(iter(handles.values())).module
    kind = kind_for(module)
    if not can_swap(module, fqn, read_outside):
        forced = [h.name for h in handles.values() if forms.get(h.name) == "pair"]
        if forced:
            raise ValueError(f"{forced[0]!r} cannot deploy as a pair: its module's type must stay (a subclass, "
                             "or its weight is read outside its forward)")
        return set()
    pairs = paired(handles, fqn, shape, read_outside)  # the MACs rule count_macs uses too
    for param, handle in handles.items():
        forced = forms.get(handle.name)
        if forced == "pair" and kind.pair_macs(module, param, shape, handle.rank) is None:
            raise ValueError(f"{handle.name!r} has no pair form; it deploys dense")
        if forced == "pair":
            pairs.add(param)
        elif forced == "dense":
            pairs.discard(param)
    if choose == "measured" and pairs and len(handles) == 1 and shape is not None:
        (param,) = pairs
        dense = _deployed(copy_model(module), set(), handles)
        pair = _deployed(copy_model(module), {param}, handles)
        inputs = kind.sample_inputs(module, shape, handles[param].U)
        if faster_form(dense, pair, inputs, **timing) is dense:
            pairs = set()
    return pairs


def deploy_one(module: nn.Module, handle: FactoredWeight, *, pair: bool) -> nn.Module:
    """``module`` (a private copy holding the one factored weight ``handle``) deployed."""
    return _deployed(module, {handle.param} if pair else set(), {handle.param: handle})


def _deployed(module: nn.Module, pairs: set[str], handles: dict[str, FactoredWeight]) -> nn.Module:
    """``module`` (a private copy) deployed with ``pairs`` as thin pairs, the rest dense."""
    copies = {param: FactoredWeight(handle.name, module, param) for param, handle in handles.items()}
    new = kind_for(module).deploy(module, {p: _factors(copies[p]) for p in pairs})
    if new is module:
        _bake(module, list(handles))
    return new


def compact(
    model: nn.Module, example_input: torch.Tensor | tuple | dict | None = None, *, choose: str = "macs",
    rounds: int = 9, forms: dict[str, str] | None = None, device: str | torch.device | None = None,
    dtype: torch.dtype | None = None, compiled: bool = False,
) -> nn.Module:  # fmt: skip
    """Return a copy of ``model`` in which every factored weight is deployed as plain torch layers.

    A weight becomes a thin pair (rank r) where the pair costs fewer MACs than the dense weight
    and its module can be swapped; otherwise it is baked back into a dense weight of its own
    module (which keeps its type). With ``example_input`` costs use the real input shapes, and a
    module whose weight other code reads directly (seen in that forward pass) stays its own type;
    without it, a bound per token that can only favour dense. ``choose="measured"`` (needs
    ``example_input`` at the batch size you will deploy) also keeps a one-weight module dense
    where its pair, though cheaper in MACs, measures slower (medians of ``rounds`` interleaved
    runs) on ``device`` in ``dtype`` (default: where and as the model is; a GPU is synchronized
    around each run), in torch eager or, with ``compiled``, each form under ``torch.compile``
    (where the model will run compiled: one compile per layer and form). ``forms`` ({weight
    name: "pair" | "dense"}) overrides the choice, e.g. to rebuild a saved structure. ``model``
    is not changed.

    Raises:
        ValueError: no factored weights, factors holding NaN or inf (a diverged training), an
            unknown ``choose`` or form, "measured" without ``example_input``, or a forced pair
            for a weight with no pair form.
    """
    if choose not in CHOICES:
        raise ValueError(f"unknown choose {choose!r}; valid values are {', '.join(CHOICES)}")
    check_positive_int("rounds", rounds)
    if choose == "measured" and example_input is None:
        raise ValueError("choose='measured' times each layer on its real input shape: give example_input")
    forms = dict(forms or {})
    bad = {n: f for n, f in forms.items() if f not in FORMS}
    if bad:
        raise ValueError(f"unknown form {next(iter(bad.values()))!r} for {next(iter(bad))!r}; valid forms: pair, dense")
    unknown = sorted(set(forms) - set(require_factored_weights(model)))
    if unknown:
        raise ValueError(f"forms names unknown factored weight(s): {', '.join(map(repr, unknown))}")
    _check_finite(require_factored_weights(model))
    new = copy_model(model)
    trace = trace_forward(new, example_input) if example_input is not None else None
    replacements: dict[int, nn.Module] = {}
    for fqn, handles in by_module(require_factored_weights(new)).items():
        shape = trace.shapes.get(fqn) if trace else None
        outside = trace.read_outside if trace else set()
        module = next(iter(handles.values())).module
        timing = dict(rounds=rounds, device=device, dtype=dtype, compiled=compiled)
        pairs = _chosen_pairs(handles, fqn, shape, outside, forms, choose, timing)
        deployed = _deployed(module, pairs, handles)
        if deployed is not module:
            replacements[id(module)] = deployed
    if id(new) in replacements:
        return replacements[id(new)]
    replace_modules(new, replacements)
    for kind in {id(kind): kind for kind in KINDS.values()}.values():
        kind.settle(new)
    return new


def _check_finite(handles: dict[str, FactoredWeight]) -> None:
    """Refuse non-finite factors: their compact model would compute NaN (``decompose`` refuses such weights too)."""
    for name, handle in handles.items():
        for factor, values in zip(("U", "s", "Vh"), _factors(handle)):
            if not torch.isfinite(values).all():
                raise ValueError(f"factored weight {name!r} holds NaN or inf in its {factor} (did training diverge?); "
                                 "nothing was compacted")  # fmt: skip


def deployed_forms(model: nn.Module, compact_model: nn.Module) -> dict[str, str]:
    """{weight name: "pair" | "dense"}: how ``compact`` deployed each factored weight of ``model``."""
    modules = dict(compact_model.named_modules())
    forms = {}
    for name, handle in require_factored_weights(model).items():
        fqn = name[: -len(handle.param)].rstrip(".")
        deployed = modules.get(fqn)
        same_type = type(deployed) is plain_type(handle.module)
        forms[name] = "dense" if same_type or deployed is None else handle.kind.deployed_form(deployed, handle.param)
    return forms
