"""nn.LSTM / nn.GRU / nn.RNN: each layer's input-to-hidden ``weight_ih_l{k}[_reverse]``
(gates*hidden x in) and hidden-to-hidden ``weight_hh_l{k}[_reverse]`` (gates*hidden x hidden)
are factored separately, as the paper's official LSTM code does.

Training runs the module's own fused kernel on the rebuilt weights. Deployed, a unidirectional
layer's W_ih becomes a Linear(in, r) feeding that layer (``svdtrain.deploy.StackedRNN``);
W_hh and bidirectional layers stay dense (see StackedRNN for why)."""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from svdtrain.deploy import StackedLSTM, StackedRNN
from svdtrain.layers.linear import linear_pair
from svdtrain.layers.registry import Factors, UnsupportedLayer, WeightKind, plain_type, register, weight_shape

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_NAME = re.compile(r"weight_(ih|hh)_l(\d+)(_reverse)?$")


def _layer_input_size(rnn: nn.RNNBase, layer: int) -> int:
    return rnn.input_size if layer == 0 else rnn.hidden_size * (2 if rnn.bidirectional else 1)


@register(nn.RNNBase)
class RecurrentKind(WeightKind):
    def weight_names(self, module: nn.RNNBase) -> list[str]:
        if getattr(module, "proj_size", 0) > 0:
            raise UnsupportedLayer(f"LSTM with proj_size={module.proj_size} (projected hidden state) is not supported")
        if module.mode not in _GATES:
            raise UnsupportedLayer(f"unknown RNN mode {module.mode!r}")
        suffixes = ["", "_reverse"] if module.bidirectional else [""]
        return [f"weight_{part}_l{k}{sfx}" for k in range(module.num_layers) for sfx in suffixes for part in ("ih", "hh")]

    def tokens(self, module: nn.Module, name: str, input_shape: torch.Size) -> int:
        return math.prod(input_shape[:-1])  # time steps x batch (a PackedSequence's data: its tokens)

    def pair_macs(self, module: nn.RNNBase, name: str, input_shape: torch.Size | None, rank: int) -> float | None:
        part, _, _ = _NAME.match(name).groups()
        if part == "hh" or module.bidirectional:
            return None
        gates_out, in_size = weight_shape(module, name)
        tokens = 1 if input_shape is None else self.tokens(module, name, input_shape)
        return tokens * rank * (in_size + gates_out)

    def module_macs(self, module: nn.RNNBase, inputs: tuple, kwargs: dict, output: object) -> int:
        data = inputs[0].data if isinstance(inputs[0], nn.utils.rnn.PackedSequence) else inputs[0]
        tokens = math.prod(data.shape[:-1])
        return tokens * sum(weight_shape(module, name).numel() for name in self.weight_names(module))

    def matrix_inputs(self, module: nn.RNNBase, name: str, inputs: tuple, kwargs: dict) -> torch.Tensor | None:
        """The first layer's W_ih multiplies the module's input; deeper layers' inputs and every
        W_hh's hidden states stay inside the fused kernel."""
        part, layer, _ = _NAME.match(name).groups()
        x = inputs[0] if inputs else kwargs.get("input")
        if part == "hh" or layer != "0" or not isinstance(x, torch.Tensor):
            return None
        return x.reshape(-1, x.shape[-1])

    def swappable(self, module: nn.Module) -> bool:
        return plain_type(module) in (nn.LSTM, nn.GRU, nn.RNN)

    def deployed_form(self, deployed: nn.Module, name: str) -> str:
        part, layer, _ = _NAME.match(name).groups()
        return "pair" if part == "ih" and not isinstance(deployed.projections[int(layer)], nn.Identity) else "dense"

    def refresh(self, module: nn.RNNBase) -> None:
        # The last forward's weights, kept for the fused kernel; after a training forward they
        # carry a graph, which copy.deepcopy refuses.
        module._init_flat_weights()

    @torch.no_grad()
    def deploy(self, module: nn.RNNBase, pairs: dict[str, Factors]) -> nn.Module:
        if not pairs:
            return module
        layers, projections = [], []
        for k in range(module.num_layers):
            factors = pairs.get(f"weight_ih_l{k}")
            projection = nn.Identity() if factors is None else linear_pair(factors, None)[0]
            in_size = _layer_input_size(module, k) if factors is None else factors[1].shape[0]
            layer = plain_type(module)(
                in_size, module.hidden_size, num_layers=1, bias=module.bias, batch_first=module.batch_first,
                **({"nonlinearity": module.nonlinearity} if isinstance(module, nn.RNN) else {}),
            ).to(device=module.weight_hh_l0.device, dtype=module.weight_hh_l0.dtype)  # fmt: skip
            weight_ih = getattr(module, f"weight_ih_l{k}") if factors is None else factors[0] * factors[1]
            layer.weight_ih_l0.copy_(weight_ih)  # (gates*hidden, r or in)
            layer.weight_hh_l0.copy_(getattr(module, f"weight_hh_l{k}"))
            if module.bias:
                layer.bias_ih_l0.copy_(getattr(module, f"bias_ih_l{k}"))
                layer.bias_hh_l0.copy_(getattr(module, f"bias_hh_l{k}"))
            layers.append(layer)
            projections.append(projection)
        stacked = StackedLSTM if isinstance(module, nn.LSTM) else StackedRNN
        return stacked(layers, projections, module.dropout).train(module.training)
