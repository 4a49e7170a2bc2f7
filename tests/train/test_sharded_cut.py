"""Cuts and compact on a model FSDP2 has sharded, in one process (a gloo group of one): the
gather-decide-scatter path runs in the default tests; 2 processes are in tests/distributed."""

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import fully_shard

import svdtrain
from svdtrain.surgery.sharded_groups import is_sharded


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 5))


def _shard(model: nn.Module) -> None:
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)


def _train(model: nn.Module, svd: svdtrain.SVDTraining, optimizer: torch.optim.Optimizer, steps: int = 3) -> None:
    generator = torch.Generator().manual_seed(3)
    for _ in range(steps):
        x, y = torch.randn(8, 12, generator=generator), torch.randint(0, 5, (8,), generator=generator)
        loss = F.cross_entropy(model(x), y) + svd.loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        svd.after_step(optimizer)


def test_a_sharded_cut_matches_a_masked_cut_of_the_same_model(one_process_group):
    example = torch.randn(2, 12)
    config = svdtrain.SVDTrainingConfig(target_reduction=2.0, gradual_cuts=2, bn_recalibration_batches=0)
    plain, sharded = _model(), _model()
    svd_plain = svdtrain.SVDTraining(plain, config, example=example)
    svd_sharded = svdtrain.SVDTraining(sharded, config, example=example)
    _shard(sharded)
    assert is_sharded(sharded) and not is_sharded(plain)
    for model, svd in ((plain, svd_plain), (sharded, svd_sharded)):
        optimizer = torch.optim.SGD(svd.param_groups(0.05), momentum=0.9)
        for _ in range(2):
            _train(model, svd, optimizer)
            svd.gradual_cut(optimizer, masked=True)
        _train(model, svd, optimizer)
    assert svd_sharded.masks.live == svd_plain.masks.live
    assert sum(svd_sharded.masks.live.values()) < 12 + 5
    held = svdtrain.factored_weights(sharded)["0.weight"]
    k = svd_sharded.masks.live["0.weight"]
    assert float(held.s.full_tensor()[k:].abs().sum()) == 0.0  # the dropped slots stay zero through training
    assert svd_sharded.target_energy() == pytest.approx(svd_plain.target_energy(), rel=1e-5)
    small_sharded, small_plain = svd_sharded.compact(), svd_plain.compact()
    assert not svdtrain.factored_weights(small_sharded)
    probe = torch.randn(4, 12)
    torch.testing.assert_close(small_sharded(probe), small_plain(probe), rtol=1e-5, atol=1e-6)


def test_what_fsdp2_cannot_cut_is_refused_in_one_line(one_process_group):
    example = torch.randn(2, 12)
    calibrated = svdtrain.SVDTrainingConfig(target_reduction=2.0, calibration="whiten")
    model = _model()
    svd = svdtrain.SVDTraining(model, calibrated, example=example)
    _shard(model)
    with pytest.raises(ValueError, match="^calibration is not supported under FSDP2") as error:
        svd.prune()
    assert "\n" not in str(error.value)
    late = _model()
    svdtrain.decompose(late)
    _shard(late)
    with pytest.raises(ValueError, match="^SVDTraining was made after fully_shard: target_reduction counts MACs"):
        svdtrain.SVDTraining(late, svdtrain.SVDTrainingConfig(target_reduction=2.0), example=example)
    svd = svdtrain.SVDTraining(late, svdtrain.SVDTrainingConfig(energy=0.1))  # no MACs: made alone
    with pytest.raises(ValueError, match="^SVDTraining was made after fully_shard: cuts and compact"):
        svd.prune()


class _TiedLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.hidden, self.head = nn.Embedding(11, 16), nn.Linear(16, 16), nn.Linear(16, 11, bias=False)
        self.head.weight = self.embed.weight  # tied, as GPT-2's head
        self.register_buffer("offset", torch.full((16,), 0.5), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(self.embed(ids)) + self.offset))


def test_root_only_sharding_after_a_no_grad_forward_ties_and_buffers(one_process_group):
    """FSDP2 on the root alone leaves the parameters gathered after a forward with no backward
    (an evaluation): a cut still takes the sharded path; the whole copy keeps the tied head and
    the non-persistent buffer, so the compact model equals the unsharded one's."""
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(1))
    config = svdtrain.SVDTrainingConfig(target_reduction=1.5, bn_recalibration_batches=0)
    filter_fn = lambda module, name: name == "hidden"  # noqa: E731  (the embedding and tied head stay dense)
    plain, sharded = _TiedLM(), _TiedLM()
    svd_plain = svdtrain.SVDTraining(plain, config, example=ids, filter_fn=filter_fn)
    svd_sharded = svdtrain.SVDTraining(sharded, config, example=ids, filter_fn=filter_fn)
    fully_shard(sharded)
    with torch.no_grad():
        sharded(ids)
    assert not is_sharded(sharded)  # gathered for now: the parameters are plain tensors
    assert svd_sharded.prune() == svd_plain.prune()
    small_sharded, small_plain = svd_sharded.compact(), svd_plain.compact()
    assert small_sharded.head.weight is small_sharded.embed.weight
    assert svdtrain.count_params(small_sharded) == svdtrain.count_params(small_plain)
    torch.testing.assert_close(small_sharded(ids), small_plain(ids))
