"""SVDConv: nn.Conv1d / nn.Conv2d in SVD form, channel-wise or spatial-wise.

channel (any kernel, 1-d or 2-d): W.reshape(out, in*k) = U diag(s) Vh, deployed as a
    k conv with r filters (the layer's stride/padding/dilation) then a 1x1 conv to out.
spatial (2-d only): M (in*kh, out*kw) = U diag(s) Vh, deployed as a kh x 1 conv with r
    filters (vertical stride/padding/dilation) then a 1 x kw conv (horizontal ones).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from svdtrain.layers.base import SVDLayer
from svdtrain.layers.registry import UnsupportedLayer, register
from svdtrain.linalg import check_scheme, initial_factors, kernel_to_matrix, matrix_to_kernel

_CONV = {1: (nn.Conv1d, F.conv1d), 2: (nn.Conv2d, F.conv2d)}


def _out_len(length: int, kernel: int, stride: int, padding: int | str, dilation: int) -> int:
    if padding == "same":
        return length
    pad = 0 if padding == "valid" else padding
    return (length + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _padded_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, ...],
    padding: tuple[int, ...] | str,
    dilation: tuple[int, ...],
    padding_mode: str,
) -> torch.Tensor:
    """F.convNd with nn.ConvNd's padding modes (non-zero modes pad explicitly first)."""
    conv = _CONV[weight.dim() - 2][1]
    if padding_mode == "zeros" or padding == "valid":
        return conv(x, weight, bias, stride, padding, dilation)
    # Reflect/replicate/circular with numeric padding (``same`` with those is rejected at build).
    pads = [p for p in reversed(padding) for _ in range(2)]
    return conv(F.pad(x, pads, mode=padding_mode), weight, bias, stride, 0, dilation)


class SVDConv(SVDLayer):
    """Conv1d/Conv2d layer in SVD form. See the module docstring for the two schemes."""

    def __init__(
        self,
        U: torch.Tensor,
        s: torch.Tensor,
        Vh: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        kernel_shape: tuple[int, ...],
        stride: tuple[int, ...],
        padding: tuple[int, ...] | str,
        dilation: tuple[int, ...],
        padding_mode: str = "zeros",
        scheme: str = "channel",
    ) -> None:
        super().__init__(U, s, Vh, bias)
        self.scheme = check_scheme(scheme)
        self.out_channels, self.in_channels, *kernel = kernel_shape
        self.kernel_size = tuple(kernel)
        self.dims = len(self.kernel_size)
        if scheme == "spatial" and self.dims != 2:
            raise ValueError("the spatial scheme needs a 2-d convolution")
        self.stride, self.padding, self.dilation = tuple(stride), padding, tuple(dilation)
        self.padding_mode = padding_mode

    @classmethod
    def from_conv(
        cls, conv: nn.Conv1d | nn.Conv2d, *, scheme: str = "channel", init: str = "svd", rank: int | float | None = None
    ) -> SVDConv:
        """SVD form of ``conv`` (``rank``: keep only that many, see ``initial_factors``).
        A Conv1d always uses the channel scheme."""
        check_scheme(scheme)
        if type(conv) not in (nn.Conv1d, nn.Conv2d):
            raise UnsupportedLayer(f"{type(conv).__name__} is a subclass of a conv with its own forward")
        if conv.groups != 1:
            raise UnsupportedLayer(f"grouped convolution (groups={conv.groups}) has no single matrix to factor")
        if conv.padding_mode != "zeros" and isinstance(conv.padding, str) and conv.padding != "valid":
            raise UnsupportedLayer(f"padding={conv.padding!r} with padding_mode={conv.padding_mode!r}")
        if conv.weight.dim() == 3:
            scheme = "channel"
        U, s, Vh = initial_factors(kernel_to_matrix(conv.weight, scheme), init, rank)
        return cls(
            U, s, Vh, conv.bias,
            kernel_shape=tuple(conv.weight.shape), stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, padding_mode=conv.padding_mode, scheme=scheme,
        )  # fmt: skip

    # -- shapes and costs ------------------------------------------------------------
    def _kernel_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels, *self.kernel_size)

    def _part_args(self) -> tuple[dict, dict]:
        """Stride/padding/dilation of the first and second thin conv."""
        if self.scheme == "channel":
            first = dict(stride=self.stride, padding=self.padding, dilation=self.dilation)
            second = dict(stride=(1,) * self.dims, padding=(0,) * self.dims, dilation=(1,) * self.dims)
            return first, second
        (sh, sw), (dh, dw) = self.stride, self.dilation
        if isinstance(self.padding, str):
            ph = pw = self.padding
        else:
            ph, pw = self.padding
        first = dict(stride=(sh, 1), padding=ph if isinstance(ph, str) else (ph, 0), dilation=(dh, 1))
        second = dict(stride=(1, sw), padding=pw if isinstance(pw, str) else (0, pw), dilation=(1, dw))
        return first, second

    def _out_sizes(self, input_shape: torch.Size) -> list[int]:
        spatial = input_shape[-self.dims :]
        paddings = (self.padding,) * self.dims if isinstance(self.padding, str) else self.padding
        return [
            _out_len(n, k, s, p, d)
            for n, k, s, p, d in zip(spatial, self.kernel_size, self.stride, paddings, self.dilation)
        ]

    def _batch(self, input_shape: torch.Size) -> int:
        return input_shape[0] if len(input_shape) == self.dims + 2 else 1

    def dense_macs(self, input_shape: torch.Size) -> int:
        positions = self._batch(input_shape) * math.prod(self._out_sizes(input_shape))
        return positions * self.out_channels * self.in_channels * math.prod(self.kernel_size)

    def _factored_macs_per_position(self, width_ratio: float) -> float:
        """Pair MACs per output position; ``width_ratio`` = first-part width / output width."""
        if self.scheme == "channel":
            return self.rank * (self.in_channels * math.prod(self.kernel_size) + self.out_channels)
        kh, kw = self.kernel_size
        return self.rank * (self.in_channels * kh * width_ratio + self.out_channels * kw)

    def factored_macs(self, input_shape: torch.Size) -> int:
        out_sizes = self._out_sizes(input_shape)
        positions = self._batch(input_shape) * math.prod(out_sizes)
        ratio = input_shape[-1] / out_sizes[-1] if self.scheme == "spatial" else 1.0
        return round(positions * self._factored_macs_per_position(ratio))

    def factored_is_cheaper(self, input_shape: torch.Size | None = None) -> bool:
        if input_shape is not None:
            return self.factored_macs(input_shape) < self.dense_macs(input_shape)
        ratio = 1.0  # spatial: bound the first part's width per output column from above
        if self.scheme == "spatial" and self.padding != "same":
            pw = 0 if self.padding == "valid" else self.padding[1]
            ratio = self.stride[1] + max(0, self.dilation[1] * (self.kernel_size[1] - 1) - 2 * pw)
        dense = self.out_channels * self.in_channels * math.prod(self.kernel_size)
        return self._factored_macs_per_position(ratio) < dense

    # -- forward ---------------------------------------------------------------------
    def _dense_kernel(self) -> torch.Tensor:
        return matrix_to_kernel(self.weight_matrix(), self.scheme, self._kernel_shape())  # (out, in, *k)

    def _factor_kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernels of the first (r filters) and second (out filters) thin conv."""
        r = self.rank
        if self.scheme == "channel":
            first = self.Vh.reshape(r, self.in_channels, *self.kernel_size)  # (r, in, *k)
            second = (self.U * self.s).reshape(self.out_channels, r, *(1,) * self.dims)  # (out, r, 1..)
            return first, second
        kh, kw = self.kernel_size
        first = self.U.T.reshape(r, self.in_channels, kh, 1)  # (r, in, kh, 1)
        scaled = (self.s[:, None] * self.Vh).reshape(r, self.out_channels, kw)  # (r, out, kw)
        second = scaled.permute(1, 0, 2).unsqueeze(2)  # (out, r, 1, kw)
        return first, second

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        return _padded_conv(
            x, self._dense_kernel(), self.bias, self.stride, self.padding, self.dilation, self.padding_mode
        )

    def forward_factored(self, x: torch.Tensor) -> torch.Tensor:
        first_kernel, second_kernel = self._factor_kernels()
        first, second = self._part_args()
        h = _padded_conv(x, first_kernel, None, padding_mode=self.padding_mode, **first)  # (N, r, ...)
        return _padded_conv(h, second_kernel, self.bias, padding_mode=self.padding_mode, **second)

    # -- conversions -----------------------------------------------------------------
    def _new_conv(self, in_c: int, out_c: int, kernel: torch.Tensor, bias: torch.Tensor | None, **args) -> nn.Module:
        conv_cls = _CONV[self.dims][0]
        conv = conv_cls(
            in_c, out_c, tuple(kernel.shape[2:]), bias=bias is not None, padding_mode=self.padding_mode, **args
        )
        conv = conv.to(device=kernel.device, dtype=kernel.dtype)
        with torch.no_grad():
            conv.weight.copy_(kernel)
            if bias is not None:
                conv.bias.copy_(bias)
        return conv

    @torch.no_grad()
    def to_dense(self) -> nn.Module:
        args = dict(stride=self.stride, padding=self.padding, dilation=self.dilation)
        return self._new_conv(self.in_channels, self.out_channels, self._dense_kernel(), self.bias, **args)

    @torch.no_grad()
    def to_factored(self) -> nn.Sequential:
        first_kernel, second_kernel = self._factor_kernels()
        first_args, second_args = self._part_args()
        first = self._new_conv(self.in_channels, self.rank, first_kernel, None, **first_args)
        second = self._new_conv(self.rank, self.out_channels, second_kernel, self.bias, **second_args)
        return nn.Sequential(first, second)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, scheme={self.scheme}, "
            f"rank={self.rank}/{self.full_rank}, bias={self.bias is not None}"
        )


register(nn.Conv1d)(SVDConv.from_conv)
register(nn.Conv2d)(SVDConv.from_conv)
