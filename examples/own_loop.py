"""SVD training in your own loop: a small CNN on scikit-learn's digits, cut to half its MACs.

    python examples/own_loop.py          # about a minute on a CPU
    python examples/own_loop.py --quick  # seconds

Three additions to a plain loop: SVDTraining(model, config), `+ svd.loss()` in each step, and
svd.gradual_cut() / svd.prune() / svd.compact() around the epochs.
"""

import argparse

import torch
import torch.nn.functional as F

import svdtrain
from svdtrain.data import load_digits_split, tensor_batches
from svdtrain.models import DigitsCNN


def fit(model, optimizer, x, y, epochs, regularizer=lambda: 0.0, after_epoch=lambda: None):
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        for inputs, targets in tensor_batches(x, y, 64, generator):
            loss = F.cross_entropy(model(inputs), targets) + regularizer()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        after_epoch()


@torch.no_grad()
def accuracy(model, x, y) -> float:
    return (model.eval()(x).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred examples, one epoch per stage")
    args = parser.parse_args()
    epochs = 1 if args.quick else 8
    torch.manual_seed(0)
    x, y, x_test, y_test = load_digits_split()
    if args.quick:
        x, y = x[:256], y[:256]

    model = DigitsCNN()  # stands for your pretrained model: train it dense first
    fit(model, torch.optim.Adam(model.parameters(), 3e-3), x, y, epochs)
    print(f"dense       accuracy {accuracy(model, x_test, y_test):.3f}  MACs {svdtrain.count_macs(model, x[:1]):,}")

    config = svdtrain.SVDTrainingConfig(sparsity_weight=1e-2, target_reduction=2.0, gradual_cuts=epochs)
    svd = svdtrain.SVDTraining(model, config, example=x[:1])  # decomposes the model in place
    optimizer = torch.optim.Adam(svd.param_groups(lr=1e-3))
    calibration = list(tensor_batches(x, y, 256))  # re-estimates BatchNorm after each cut
    fit(model, optimizer, x, y, epochs, svd.loss, lambda: svd.gradual_cut(optimizer, calibration))
    svd.prune(optimizer, calibration)  # the target is reached: nothing more to cut
    fit(model, optimizer, x, y, max(1, epochs // 2), svd.loss)  # fine-tune: orthogonality term only

    small = svd.compact()  # plain Conv2d / Linear layers
    print(f"compact     accuracy {accuracy(small, x_test, y_test):.3f}  MACs {svdtrain.count_macs(small, x[:1]):,}")


if __name__ == "__main__":
    main()
