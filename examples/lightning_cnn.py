"""SVD training with PyTorch Lightning: a small CNN on scikit-learn's digits, cut to half its MACs.

    python examples/lightning_cnn.py          # about a minute on a CPU
    python examples/lightning_cnn.py --quick  # seconds

The LightningModule adds `svd.loss()` to its loss (the regularizers change what the model
learns, so they belong in the module); SVDCallback cuts at epoch ends and prunes when training
ends; a second fit fine-tunes; svd.compact() is the compact model.
"""

import argparse

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import svdtrain
from svdtrain.data import load_digits_split
from svdtrain.integrations.lightning import SVDCallback
from svdtrain.models import DigitsCNN


class Digits(L.LightningModule):
    def __init__(self, net: torch.nn.Module, lr: float) -> None:
        super().__init__()
        self.net, self.lr, self.svd = net, lr, None

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        return loss + self.svd.loss() if self.svd is not None else loss

    def configure_optimizers(self):
        return torch.optim.Adam(svdtrain.train.param_groups(self.net, self.lr))  # U, s, Vh never decayed


def trainer(epochs: int, callbacks=()) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))  # fmt: skip


@torch.no_grad()
def accuracy(model, x, y) -> float:
    correct = (model.eval()(x).argmax(1) == y).float().mean().item()
    model.train()  # as the next fit expects it
    return correct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred examples, one epoch per stage")
    args = parser.parse_args()
    epochs = 1 if args.quick else 8
    L.seed_everything(0, verbose=False)
    x, y, x_test, y_test = load_digits_split()
    if args.quick:
        x, y = x[:256], y[:256]
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)

    module = Digits(DigitsCNN(), lr=3e-3)  # stands for your pretrained model: trained dense first
    trainer(epochs).fit(module, loader)
    print(f"dense    accuracy {accuracy(module.net, x_test, y_test):.3f}")

    config = svdtrain.SVDTrainingConfig(sparsity_weight=1e-2, target_reduction=2.0, gradual_cuts=epochs)
    module.svd = svdtrain.SVDTraining(module.net, config, example=x[:1])  # decomposes module.net in place
    module.lr = 1e-3
    trainer(epochs, [SVDCallback(module.svd)]).fit(module, loader)  # cuts each epoch; ends pruned
    trainer(max(1, epochs // 2)).fit(module, loader)  # fine-tunes the pruned model

    small = module.svd.compact()
    print(f"compact  accuracy {accuracy(small, x_test, y_test):.3f}  MACs {svdtrain.count_macs(small, x[:1]):,} "
          f"of {module.svd.baseline_macs:,}")


if __name__ == "__main__":
    main()
