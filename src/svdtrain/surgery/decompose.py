"""decompose: factor a model's weight matrices as U diag(s) Vh, in place, by parametrization."""

from __future__ import annotations

import logging
import warnings
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

from svdtrain.layers import UnsupportedLayer, factor_weight, kind_for
from svdtrain.linalg import check_init, check_scheme, resolve_rank
from svdtrain.surgery.walk import factored_weights

log = logging.getLogger(__name__)

FilterFn = Callable[[nn.Module, str], bool]


def _owners(model: nn.Module) -> dict[int, list[tuple[str, int, str]]]:
    """id(parameter) -> (name, id(module), attribute) for every path it is reachable under.
    One parameter held by two modules, or under two attributes, is tied; a module shared by
    two parents holds its weights under several names but only once."""
    owners: dict[int, list[tuple[str, int, str]]] = {}
    for fqn, module in model.named_modules(remove_duplicate=False):
        for attr, param in module.named_parameters(recurse=False):
            owners.setdefault(id(param), []).append((f"{fqn}.{attr}" if fqn else attr, id(module), attr))
    return owners


def _candidates(model: nn.Module, scheme: str) -> tuple[dict[str, tuple[nn.Module, str, str]], dict[str, str]]:
    """({weight name: (module, param, view)} factorable, {weight name or module: why not})."""
    owners, seen = _owners(model), set()
    found: dict[str, tuple[nn.Module, str, str]] = {}
    refused: dict[str, str] = {}
    for fqn, module in model.named_modules():
        if id(module) in seen:
            continue
        seen.add(id(module))
        if parametrize.is_parametrized(module):  # other parametrizations' internals are not the model's layers
            seen.update(id(m) for m in module.parametrizations.modules())
        prefix = f"{fqn}." if fqn else ""
        kind = kind_for(module)
        matrices = [n for n, p in module.named_parameters(recurse=False) if sum(d > 1 for d in p.shape) >= 2]
        if kind is None:
            for param in matrices:
                refused[prefix + param] = f"no svdtrain entry for {type(module).__name__}"
            continue
        try:
            names = kind.weight_names(module)
        except UnsupportedLayer as why:
            for param in matrices or [""]:
                refused[(prefix + param).rstrip(".") or type(module).__name__] = str(why)
            continue
        for param in names:
            holders = owners.get(id(getattr(module, param)), [])
            tied = [n for n, holder, attr in holders if (holder, attr) != (id(module), param)]
            if tied:
                refused[prefix + param] = (f"tied to {tied[0]}: decompose(untie=[{prefix + param!r}]) factors "
                                           "its own copy")  # fmt: skip
            elif parametrize.is_parametrized(module, param):
                refused[prefix + param] = "already parametrized (weight_norm, spectral_norm, ...)"
            elif not getattr(module, param).is_floating_point():  # factors in its dtype would round it
                refused[prefix + param] = f"a {getattr(module, param).dtype} weight: only floating-point weights factor"
            else:
                found[prefix + param] = (module, param, kind.view(module, param, scheme))
        for param in matrices:
            if param not in names:
                refused.setdefault(prefix + param, f"not a factorizable weight of {type(module).__name__}")
    return found, refused


def factorizable(model: nn.Module, scheme: str = "channel") -> dict[str, tuple[nn.Module, str, str]]:
    """{weight name: (module, parameter name, matrix view)} of every weight :func:`decompose`
    would factor, without factoring it (a model on the meta device too)."""
    return _candidates(model, scheme)[0]


def decompose(
    model: nn.Module,
    scheme: str = "channel",
    init: str = "svd",
    filter_fn: FilterFn | None = None,
    rank: int | float | None = None,
    *,
    weights: Iterable[str] | None = None,
    untie: Iterable[str] = (),
) -> nn.Module:
    """Factor, in place, every supported weight matrix of ``model`` as U diag(s) Vh; returns ``model``.

    Each weight becomes a ``torch.nn.utils.parametrize`` parametrization of its own module, so
    modules keep their type, ``.weight``, hooks and forward. Weights are named
    ``"<module fqn>.<param>"``: ``"fc.weight"``, ``"lstm.weight_hh_l1"``, ``"attn.in_proj_weight"``.

    Args:
        model: any module (or a single layer); Linear, Conv1d/2d, LSTM/GRU/RNN,
            MultiheadAttention and transformers' Conv1D are supported.
        scheme: ``"channel"`` (out x in*k*k) or ``"spatial"`` (in*kh x out*kw) for 2-d convs.
        init: ``"svd"`` keeps the function exactly; ``"random"`` is the paper's from-scratch
            initialization; ``"svd_lowrank"`` computes only the top ``rank`` triplets by
            randomized SVD (fast for large layers; needs ``rank``).
        filter_fn: ``filter_fn(module, module_fqn) -> bool`` picks modules; default all.
        rank: keep only this many singular values per weight from the start (an int, or a
            fraction of each weight's full rank): truncated SVD in one call. Default: all.
        weights: factor exactly these weight names; any that cannot be factored is an error.
        untie: weight names that may be tied to another (GPT-2's ``"lm_head.weight"`` and its
            token embedding): each gets its own copy, a new parameter, which is then factored;
            the other keeps the shared tensor unchanged. A warning states the copy's memory,
            and a Hugging Face config's ``tie_word_embeddings`` becomes False so that
            ``tie_weights()`` and a reload do not tie them again. A name that is not tied is
            left as it is.

    Weights that are not factored (no entry for the module type, a grouped conv, an LSTM with
    proj_size, a weight tied to another such as GPT-2's lm_head and token embedding, unless
    named in ``untie``, an integer or complex weight) are named in one warning with the reason.

    Raises:
        ValueError: unknown scheme/init, a model already decomposed, nothing to decompose, a
            model with weights on the meta device (no values to factor), or a weight in
            ``weights`` or ``untie`` that does not exist or cannot be factored.

    Example:
        >>> net = decompose(nn.Sequential(nn.Linear(8, 4)))
        >>> isinstance(net[0], nn.Linear), list(svdtrain.factored_weights(net))
        (True, ['0.weight'])
    """
    check_scheme(scheme)
    check_init(init)
    if init == "svd_lowrank" and rank is None:
        raise ValueError("init 'svd_lowrank' computes only the top singular values: give rank=")
    resolve_rank(rank, 1)  # a bad rank fails here, before any weight changes
    on_meta = next((name for name, p in model.named_parameters() if p.is_meta), None)
    if on_meta is not None and init != "random":  # random factors need shapes only: a sharded build's first step
        raise ValueError(f"weight {on_meta!r} is on the meta device and has no values to factor: materialize the "
                         "model first (model.to_empty(device=...) and load its state dict), or give init='random' "
                         "for the SVD form's shapes alone (a sharded build)")
    existing = factored_weights(model)
    if existing:
        raise ValueError(f"model is already decomposed (weight {next(iter(existing))!r} is factored); decompose once")
    if isinstance(weights, str):
        raise ValueError(f"weights must be a list of weight names, got the string {weights!r}")
    _untie(model, untie)
    found, refused = _candidates(model, scheme)
    if weights is not None:
        wanted = list(dict.fromkeys(weights))
        for name in wanted:
            if name in refused:
                raise ValueError(f"cannot factor {name!r}: {refused[name]}")
            if name not in found:
                raise ValueError(f"{name!r} is not a weight matrix of this model")
        found = {name: found[name] for name in wanted}
        refused = {}
    if filter_fn is not None:
        fqns = {id(m): fqn for fqn, m in model.named_modules()}
        found = {n: entry for n, entry in found.items() if filter_fn(entry[0], fqns[id(entry[0])])}
        refused = {n: why for n, why in refused.items() if _selected(model, n, filter_fn, fqns)}
    for name, (module, param, _) in found.items():
        weight = getattr(module, param)
        if not weight.is_meta and not torch.isfinite(weight).all():
            raise ValueError(f"weight {name!r} holds NaN or inf; nothing was factored")
    if not found:
        detail = f"; not factored: {_listing(refused)}" if refused else ""
        raise ValueError(f"no weight to decompose: no supported weight matrix was selected{detail}")
    for name, (module, param, view) in found.items():
        factor_weight(module, param, view, init=init, rank=rank)
    if refused:
        warnings.warn(f"svdtrain.decompose left {len(refused)} weight(s) dense: {_listing(refused)}", stacklevel=2)
    log.info("factored %d weights (scheme=%s, init=%s)", len(found), scheme, init)
    return model


def _untie(model: nn.Module, names: Iterable[str]) -> None:
    """Give each weight in ``names`` that is tied to another its own copy, in place."""
    if isinstance(names, str):
        raise ValueError(f"untie must be a list of weight names, got the string {names!r}")
    owners, tied = _owners(model), []
    for name in dict.fromkeys(names):
        fqn, _, param = name.rpartition(".")
        module = dict(model.named_modules()).get(fqn)
        weight = getattr(module, param, None) if module is not None and param else None
        if not isinstance(weight, nn.Parameter):
            raise ValueError(f"untie names {name!r}, which is not a parameter of this model")
        others = [n for n, holder, attr in owners[id(weight)] if (holder, attr) != (id(module), param)]
        if others:
            tied.append((name, module, param, weight, others[0]))
    for name, module, param, weight, other in tied:
        setattr(module, param, nn.Parameter(weight.detach().clone(), requires_grad=weight.requires_grad))
        warnings.warn(f"svdtrain.decompose untied {name} from {other} to factor it: its own copy adds "
                      f"{weight.numel():,} parameters ({weight.numel() * weight.element_size():,} bytes)",
                      stacklevel=3)  # fmt: skip
    config = getattr(model, "config", None)
    if tied and getattr(config, "tie_word_embeddings", False) is True:
        config.tie_word_embeddings = False  # else Hugging Face's tie_weights() and from_pretrained tie them again


def _selected(model: nn.Module, name: str, filter_fn: FilterFn, fqns: dict[int, str]) -> bool:
    fqn = name.rpartition(".")[0]
    try:
        module = model.get_submodule(fqn)
    except AttributeError:
        module = model.get_submodule(name) if name else model
    return filter_fn(module, fqns.get(id(module), fqn))


def _listing(refused: dict[str, str]) -> str:
    """'a, b (reason); c (other reason)': names grouped by reason, in model order."""
    groups: dict[str, list[str]] = {}
    for name, why in refused.items():
        groups.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)} ({why})" for why, names in groups.items())
