"""decompose: rewrite a model's Linear / Conv layers in SVD form, in place."""

from __future__ import annotations

import logging
import warnings
from typing import Callable

from torch import nn

from svdtrain.layers import UnsupportedLayer, handler_for
from svdtrain.linalg import check_init, check_scheme, resolve_rank
from svdtrain.surgery.walk import replace_modules, svd_layers

log = logging.getLogger(__name__)

FilterFn = Callable[[nn.Module, str], bool]


def decompose(
    model: nn.Module,
    scheme: str = "channel",
    init: str = "svd",
    filter_fn: FilterFn | None = None,
    rank: int | float | None = None,
) -> nn.Module:
    """Replace, in place, every supported layer of ``model`` by its SVD form; returns ``model``.

    Args:
        model: any module holding nn.Linear / nn.Conv1d / nn.Conv2d layers.
        scheme: ``"channel"`` (out x in*k*k) or ``"spatial"`` (in*kh x out*kw) for 2-d convs.
        init: ``"svd"`` keeps the function exactly (exact SVD of the weights); ``"random"``
            is the paper's from-scratch initialization; ``"svd_lowrank"`` computes only the
            top ``rank`` triplets by randomized SVD (fast for large layers; needs ``rank``).
        filter_fn: ``filter_fn(module, qualified_name) -> bool`` picks the layers; default all.
        rank: keep only this many singular values per layer from the start (an int, or a
            fraction of each layer's full rank): truncated SVD in one call. Default: all.

    Layers that cannot be decomposed (grouped convs, Linear subclasses such as
    MultiheadAttention's out_proj, ...) stay dense and are listed in one warning.

    Raises:
        ValueError: unknown scheme/init, a model already decomposed, or nothing to decompose.

    Example:
        >>> net = decompose(nn.Sequential(nn.Linear(8, 4)))
        >>> type(net[0]).__name__
        'SVDLinear'
    """
    check_scheme(scheme)
    check_init(init)
    if init == "svd_lowrank" and rank is None:
        raise ValueError("init 'svd_lowrank' computes only the top singular values: give rank=")
    resolve_rank(rank, 1)  # a bad rank fails here, before any layer changes
    existing = svd_layers(model)
    if existing:
        raise ValueError(f"model is already decomposed (it holds SVD layer {existing[0][0]!r}); decompose once")
    if handler_for(model) is not None:
        raise ValueError("decompose rewrites the layers inside a model; wrap a bare layer, e.g. nn.Sequential(layer)")

    replacements: dict[int, nn.Module] = {}
    skipped: list[str] = []
    for name, module in model.named_modules():
        handler = handler_for(module)
        conv_like = isinstance(module, nn.modules.conv._ConvNd)  # Conv3d, ConvTranspose*: listed as skipped
        if (handler is None and not conv_like) or (filter_fn is not None and not filter_fn(module, name)):
            continue
        if handler is None:
            skipped.append(f"{name} (no SVD form for {type(module).__name__})")
            continue
        try:
            replacements[id(module)] = handler(module, scheme=scheme, init=init, rank=rank)
        except UnsupportedLayer as why:
            skipped.append(f"{name} ({why})")
    if not replacements:
        detail = f"; left dense: {', '.join(skipped)}" if skipped else ""
        raise ValueError(f"no layer to decompose: no supported Linear/Conv layer was selected{detail}")
    replace_modules(model, replacements)
    if skipped:
        warnings.warn(f"svdtrain.decompose left {len(skipped)} layer(s) dense: {'; '.join(skipped)}", stacklevel=2)
    log.info("decomposed %d layers (scheme=%s, init=%s)", len(replacements), scheme, init)
    return model
