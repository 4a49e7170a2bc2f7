"""A layer type of your own, taught to svdtrain with @svdtrain.register: then it factors, trains,
prunes and deploys as thin pairs like nn.Linear does.

    python examples/custom_layer.py  # seconds (--quick is the same)

A WeightKind says which of the module's weights are matrices, what they cost (MACs) and how
the module deploys at rank r. The layer here is a Linear with a learned output gain.
"""

import argparse
import math

import torch
import torch.nn.functional as F
from torch import nn

import svdtrain


class GainLinear(nn.Module):
    """y = gain * (x W^T) + bias."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / math.sqrt(in_features))  # (out, in)
        self.gain = nn.Parameter(torch.ones(out_features))  # (out,)
        self.bias = nn.Parameter(torch.zeros(out_features))  # (out,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * F.linear(x, self.weight) + self.bias


@svdtrain.register(GainLinear)
class GainLinearKind(svdtrain.WeightKind):
    def weight_names(self, module: GainLinear) -> list[str]:
        return ["weight"]  # factored as the (out, in) matrix it is

    def tokens(self, module: GainLinear, name: str, input_shape: torch.Size) -> int:
        return math.prod(input_shape[:-1])  # vectors the matrix multiplies per call

    def module_macs(self, module: GainLinear, inputs: tuple, kwargs: dict, output: torch.Tensor) -> int:
        return output.numel() * module.weight.shape[1]

    def pair_macs(self, module: GainLinear, name: str, input_shape: torch.Size | None, rank: int) -> float:
        out_features, in_features = module.weight.shape
        tokens = 1 if input_shape is None else self.tokens(module, name, input_shape)
        return tokens * rank * (in_features + out_features)

    def deploy(self, module: GainLinear, pairs: dict) -> nn.Module:
        if "weight" not in pairs:
            return module  # deploys dense: svdtrain bakes the weight back in
        U, s, Vh = pairs["weight"]  # (out, r), (r,), (r, in)
        first, second = nn.Linear(Vh.shape[1], Vh.shape[0], bias=False), nn.Linear(U.shape[1], U.shape[0])
        with torch.no_grad():
            first.weight.copy_(Vh)
            second.weight.copy_(module.gain.unsqueeze(1) * U * s)  # the gain folded into the second layer
            second.bias.copy_(module.bias)
        return nn.Sequential(first, second)  # plain torch: no svdtrain needed to run it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the same: it takes seconds")
    parser.parse_args()
    torch.manual_seed(0)
    teacher = nn.Linear(64, 64)
    x = torch.randn(256, 64)
    with torch.no_grad():  # a target of rank 8: what pruning should find
        teacher.weight.copy_(torch.randn(64, 8) @ torch.randn(8, 64) / 8)
        y = teacher(x)

    model = nn.Sequential(GainLinear(64, 64), GainLinear(64, 64))
    config = svdtrain.SVDTrainingConfig(sparsity_weight=1e-2, target_reduction=4.0)
    svd = svdtrain.SVDTraining(model, config, example=x[:1])
    print("factored:", list(svdtrain.factored_weights(model)))
    optimizer = torch.optim.Adam(svd.param_groups(lr=1e-2))

    def fit(steps: int) -> float:
        for _ in range(steps):
            loss = F.mse_loss(model(x), y)
            optimizer.zero_grad()
            (loss + svd.loss()).backward()
            optimizer.step()
        return loss.item()

    print(f"SVD training: loss {fit(300):.4f}")
    print("kept ranks:", svd.prune(optimizer))
    print(f"fine-tuned:   loss {fit(100):.4f}")

    small = svd.compact(x[:1])
    print(small)
    torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-4)
    print(f"compact = pruned; MACs {svdtrain.count_macs(small, x[:1]):,} of "
          f"{svd.baseline_macs:,} dense")


if __name__ == "__main__":
    main()
