"""SVDCallback: Lightning with SVD training, to a compact model that computes the same."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

L = pytest.importorskip("lightning")

import svdtrain  # noqa: E402
from svdtrain.integrations.lightning import SVDCallback  # noqa: E402


class _Module(L.LightningModule):
    def __init__(self, net: nn.Module, svd: svdtrain.SVDTraining | None) -> None:
        super().__init__()
        self.net, self.svd = net, svd

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        return loss + self.svd.loss() if self.svd is not None else loss

    def configure_optimizers(self):
        return torch.optim.SGD(svdtrain.train.param_groups(self.net, 0.05), momentum=0.9)


def _loader():
    generator = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 3, 4, 4, generator=generator),
                                          torch.randint(0, 10, (32,), generator=generator))  # fmt: skip
    return torch.utils.data.DataLoader(data, batch_size=8)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 4 * 4, 10))  # fmt: skip


def _trainer(epochs: int, callbacks=()) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))  # fmt: skip


def test_gradual_cuts_then_fine_tuning_end_in_a_compact_model_with_the_same_outputs():
    net = _net()
    x = next(iter(_loader()))[0]
    svd = svdtrain.SVDTraining(net, svdtrain.SVDTrainingConfig(target_reduction=2.0, gradual_cuts=2), example=x[:1])
    module = _Module(net, svd)
    _trainer(2, [SVDCallback(svd)]).fit(module, _loader())
    assert svd.cuts == 2 and svd.pruned
    assert svdtrain.count_macs(net, x[:1]) <= svd.baseline_macs / 2
    _trainer(1).fit(module, _loader())  # fine-tuning: configure_optimizers sees the pruned factors
    net.eval()
    small = svd.compact().eval()
    torch.testing.assert_close(small(x), net(x), rtol=1e-4, atol=1e-5)


def test_a_training_step_without_the_regularizers_is_refused():
    net = _net()
    svd = svdtrain.SVDTraining(net)
    with pytest.raises(RuntimeError, match="svd.loss"):
        _trainer(1, [SVDCallback(svd)]).fit(_Module(net, None), _loader())


def test_a_fit_resumed_from_a_checkpoint_after_a_cut_ends_with_the_same_ranks_and_weights(tmp_path):
    config = svdtrain.SVDTrainingConfig(target_reduction=3.0, gradual_cuts=2)
    x = next(iter(_loader()))[0][:1]

    def fit(epochs: int, ckpt_path=None, save=False):
        torch.manual_seed(1)  # what Lightning's seeding would fix: the same start for both runs
        net = _net()
        svd = svdtrain.SVDTraining(net, config, example=x)
        saving = [L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1)] if save \
            else []  # fmt: skip
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=save,
                            callbacks=[SVDCallback(svd), *saving])  # fmt: skip
        trainer.fit(_Module(net, svd), _loader(), ckpt_path=ckpt_path)
        return net, svd

    whole, whole_svd = fit(3, save=True)
    first = next(tmp_path.glob("epoch=0-*.ckpt"))  # after the first epoch and its cut
    resumed, resumed_svd = fit(3, ckpt_path=first)
    assert (resumed_svd.cuts, resumed_svd.steps, resumed_svd.pruned) == (2, whole_svd.steps, True)
    assert svdtrain.train.checkpoint.ranks_of(resumed) == svdtrain.train.checkpoint.ranks_of(whole)
    for (key, value), other in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(other, value, msg=key)
