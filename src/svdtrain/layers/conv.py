"""nn.Conv1d / nn.Conv2d, factored channel-wise or spatial-wise.

channel (any kernel, 1-d or 2-d): W.reshape(out, in*k) = U diag(s) Vh, deployed as a k conv
    with r filters (the layer's stride/padding/dilation) then a 1x1 conv to out.
spatial (2-d only): M (in*kh, out*kw) = U diag(s) Vh, deployed as a kh x 1 conv with r
    filters (vertical stride/padding/dilation) then a 1 x kw conv (horizontal ones).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from svdtrain.layers.registry import Factors, UnsupportedLayer, WeightKind, plain_type, register, view_of

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}


def _out_len(length: int, kernel: int, stride: int, padding: int | str, dilation: int) -> int:
    if padding == "same":
        return length
    pad = 0 if padding == "valid" else padding
    return (length + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _scheme(conv: nn.Module, view: str) -> str:
    return "channel" if conv.weight.dim() == 3 else view


def _out_sizes(conv: nn.Module, input_shape: torch.Size) -> list[int]:
    dims = len(conv.kernel_size)
    paddings = (conv.padding,) * dims if isinstance(conv.padding, str) else conv.padding
    return [
        _out_len(n, k, s, p, d)
        for n, k, s, p, d in zip(input_shape[-dims:], conv.kernel_size, conv.stride, paddings, conv.dilation)
    ]


def _part_args(conv: nn.Module, scheme: str) -> tuple[dict, dict]:
    """Stride/padding/dilation of the first and second thin conv."""
    dims = len(conv.kernel_size)
    if scheme == "channel":
        first = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation)
        return first, dict(stride=(1,) * dims, padding=(0,) * dims, dilation=(1,) * dims)
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    ph, pw = (conv.padding, conv.padding) if isinstance(conv.padding, str) else conv.padding
    first = dict(stride=(sh, 1), padding=ph if isinstance(ph, str) else (ph, 0), dilation=(dh, 1))
    second = dict(stride=(1, sw), padding=pw if isinstance(pw, str) else (0, pw), dilation=(1, dw))
    return first, second


@torch.no_grad()
def _conv(template: nn.Module, in_c: int, kernel: torch.Tensor, bias: torch.Tensor | None, **args) -> nn.Module:
    conv = _CONV[kernel.dim() - 2](
        in_c, kernel.shape[0], tuple(kernel.shape[2:]), bias=bias is not None, padding_mode=template.padding_mode,
        device=kernel.device, dtype=kernel.dtype, **args,
    )  # fmt: skip
    conv.weight.copy_(kernel)
    if bias is not None:
        conv.bias.copy_(bias)
    return conv


def conv_pair(conv: nn.Module, scheme: str, factors: Factors) -> nn.Sequential:
    """Two plain convs computing ``conv`` with the kernel U diag(s) Vh under ``scheme``."""
    U, s, Vh = factors
    r, dims = s.shape[0], len(conv.kernel_size)
    out_c, in_c = conv.out_channels, conv.in_channels
    if scheme == "channel":
        first = Vh.reshape(r, in_c, *conv.kernel_size)  # (r, in, *k)
        second = (U * s).reshape(out_c, r, *(1,) * dims)  # (out, r, 1..)
    else:
        kh, kw = conv.kernel_size
        first = U.T.reshape(r, in_c, kh, 1)  # (r, in, kh, 1)
        second = (s[:, None] * Vh).reshape(r, out_c, kw).permute(1, 0, 2).unsqueeze(2)  # (out, r, 1, kw)
    first_args, second_args = _part_args(conv, scheme)
    return nn.Sequential(_conv(conv, in_c, first, None, **first_args), _conv(conv, r, second, conv.bias, **second_args))


@register(nn.Conv1d)
@register(nn.Conv2d)
class ConvKind(WeightKind):
    def weight_names(self, module: nn.Module) -> list[str]:
        if module.groups != 1:
            raise UnsupportedLayer(f"grouped convolution (groups={module.groups}) has no single matrix to factor")
        return ["weight"]

    def view(self, module: nn.Module, name: str, scheme: str) -> str:
        return _scheme(module, scheme)

    def tokens(self, module: nn.Module, name: str, input_shape: torch.Size) -> int:
        dims = len(module.kernel_size)
        batch = input_shape[0] if len(input_shape) == dims + 2 else 1
        return batch * math.prod(_out_sizes(module, input_shape))

    def pair_macs(self, module: nn.Module, name: str, input_shape: torch.Size | None, rank: int) -> float | None:
        if module.padding_mode != "zeros" and module.padding == "same":
            return None  # nn.Conv's own "same" padding of non-zero modes has no split into two parts
        scheme = view_of(module, name)
        in_c, out_c, k = module.in_channels, module.out_channels, module.kernel_size
        if scheme == "channel":
            per_position = rank * (in_c * math.prod(k) + out_c)
        else:
            per_position = rank * (in_c * k[0] * self._width_ratio(module, input_shape) + out_c * k[1])
        positions = 1 if input_shape is None else self.tokens(module, name, input_shape)
        return positions * per_position

    @staticmethod
    def _width_ratio(conv: nn.Module, input_shape: torch.Size | None) -> float:
        """Spatial scheme: first-part width / output width (the first part runs at full width).
        Without a shape, an upper bound per output column."""
        if input_shape is not None:
            return input_shape[-1] / _out_sizes(conv, input_shape)[-1]
        if conv.padding == "same":
            return 1.0
        pw = 0 if conv.padding == "valid" else conv.padding[1]
        return conv.stride[1] + max(0, conv.dilation[1] * (conv.kernel_size[1] - 1) - 2 * pw)

    def module_macs(self, module: nn.Module, inputs: tuple, kwargs: dict, output: torch.Tensor) -> int:
        return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    def matrix_inputs(self, module: nn.Module, name: str, inputs: tuple, kwargs: dict) -> torch.Tensor | None:
        """Channel-wise: the input patches (in*k per output position), as F.unfold lays them out,
        which is the kernel's own (in, *k) order. Spatial-wise: the vertical patches (in*kh) the
        first thin conv sees at every row it computes and every input column, in M's (in, kh)
        row order; summing them over the kw columns an output reads treats those columns as
        independent (the cross-column correlations are left out)."""
        x = inputs[0] if inputs else kwargs.get("input")
        if not isinstance(x, torch.Tensor) or module.padding_mode != "zeros" or module.padding == "same":
            return None
        padding = (0,) * len(module.kernel_size) if module.padding == "valid" else module.padding
        if x.dim() == len(module.kernel_size) + 1:  # unbatched
            x = x.unsqueeze(0)
        if view_of(module, name) == "spatial":
            kernel = (module.kernel_size[0], 1)
            extra = dict(dilation=(module.dilation[0], 1), padding=(padding[0], 0), stride=(module.stride[0], 1))
        elif len(module.kernel_size) == 1:  # F.unfold is 2-d only: a 1-d conv is a 2-d one of height 1
            x, kernel = x.unsqueeze(2), (1, *module.kernel_size)
            extra = dict(dilation=(1, *module.dilation), padding=(0, *padding), stride=(1, *module.stride))
        else:
            kernel = module.kernel_size
            extra = dict(dilation=module.dilation, padding=padding, stride=module.stride)
        patches = torch.nn.functional.unfold(x, kernel, **extra)  # (B, in*k, positions)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])

    def inputs_enter_rows(self, module: nn.Module, name: str) -> bool:
        return view_of(module, name) == "spatial"

    def deploy(self, module: nn.Module, pairs: dict[str, Factors]) -> nn.Module:
        return conv_pair(module, view_of(module, "weight"), pairs["weight"]) if "weight" in pairs else module

    def swappable(self, module: nn.Module) -> bool:
        return plain_type(module) in (nn.Conv1d, nn.Conv2d)
