"""SVDTraining in a loop of one's own: its loss, its cuts (the optimizer following them), its config."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import svdtrain
from svdtrain import SVDTraining, SVDTrainingConfig


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 4 * 4, 10))  # fmt: skip


def _batch():
    return torch.randn(8, 3, 4, 4), torch.randint(0, 10, (8,))


def _train(net: nn.Module, svd: SVDTraining, optimizer: torch.optim.Optimizer, steps: int = 3) -> None:
    x, y = _batch()
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y) + svd.loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_the_config_survives_a_json_round_trip():
    config = SVDTrainingConfig(scheme="spatial", sparsity_kind="l1", target_reduction=3.0, gradual_cuts=4,
                               rank_multiple=8, calibration="whiten")  # fmt: skip
    assert SVDTrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("values", [
    {"scheme": "diagonal"}, {"sparsity_kind": "l2"}, {"ortho_weight": -1.0}, {"sparsity_weight": float("nan")},
    {"regularize_every": 0}, {"target_reduction": 0.5}, {"energy": 1.0}, {"threshold": 0.1, "target_reduction": 2.0},
    {"gradual_cuts": 3}, {"gradual_cuts": -1, "target_reduction": 2.0}, {"rank_multiple": 8},
    {"calibration": "magic"}, {"rank_allocation": "best"}, {"version": 99}, {"colour": "blue"},
])  # fmt: skip
def test_a_bad_config_is_one_line_value_error(values):
    with pytest.raises(ValueError) as error:
        SVDTrainingConfig.from_dict(values)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("values", [[1, 2], [("scheme", "channel")], '{"scheme": "channel"}', None])
def test_from_dict_of_what_is_not_a_mapping_says_it_needs_one(values):
    with pytest.raises(TypeError, match=r"^SVDTrainingConfig\.from_dict takes a mapping of field names to values "
                                        rf"\(as to_dict gives\), got {type(values).__name__}$"):  # fmt: skip
        SVDTrainingConfig.from_dict(values)


def test_a_field_name_that_is_not_a_string_is_named_as_unknown():
    with pytest.raises(ValueError, match=r"^unknown SVDTrainingConfig field\(s\): 1, scheme2$"):
        SVDTrainingConfig.from_dict({1: 2, "scheme2": "channel"})


def test_a_target_needs_an_example():
    with pytest.raises(ValueError, match="example"):
        SVDTraining(_net(), SVDTrainingConfig(target_reduction=2.0))


def test_loss_is_both_terms_lazily_then_orthogonality_alone_once_pruned():
    net = _net()
    config = SVDTrainingConfig(sparsity_weight=0.1, regularize_every=2)
    svd = SVDTraining(net, config)
    expected = svdtrain.train.Regularization(1.0, 0.1, "hoyer", every=2).loss(net)
    torch.testing.assert_close(svd.loss(), expected)
    assert svd.loss() == 0.0  # the lazy step
    svd.prune()  # step 2: regularized
    torch.testing.assert_close(svd.loss(), 2 * svdtrain.orthogonality_loss(net))


def test_gradual_cuts_reach_the_target_and_the_optimizer_follows_them():
    net, (x, _) = _net(), _batch()
    svd = SVDTraining(net, SVDTrainingConfig(target_reduction=4.0, gradual_cuts=2), example=x[:1])
    optimizer = torch.optim.SGD(svd.param_groups(0.01, weight_decay=1e-4), momentum=0.9, fused=True)
    _train(net, svd, optimizer)
    head = svdtrain.factored_weights(net)["4.weight"]
    for _ in range(2):
        svd.gradual_cut(optimizer, [_batch()])
        held = [p for group in optimizer.param_groups for p in group["params"]]
        assert {id(p) for p in held} == {id(p) for p in net.parameters()}
        _train(net, svd, optimizer, steps=1)  # fused SGD takes the groups as they are
    assert svdtrain.count_macs(net, x[:1]) <= svd.baseline_macs / 4
    assert "momentum_buffer" in optimizer.state[head.s]
    ranks = svdtrain.train.checkpoint.ranks_of(net)
    assert svd.gradual_cut(optimizer) == ranks  # every cut made: a loop may go on calling it
    assert svdtrain.train.checkpoint.ranks_of(net) == ranks and svd.cuts == 2


def test_cut_without_gradual_cuts_says_to_prune():
    with pytest.raises(ValueError, match=r"^gradual_cut\(\) makes the config's gradual_cuts, and it has none"):
        SVDTraining(_net()).gradual_cut()


def test_an_already_factored_model_with_another_scheme_is_refused():
    net = _net()
    svdtrain.decompose(net, scheme="spatial")
    with pytest.raises(ValueError, match=r"^the model is already factored with scheme 'spatial', the config says "
                                         r"'channel'"):  # fmt: skip
        SVDTraining(net)
    SVDTraining(net, SVDTrainingConfig(scheme="spatial"))


def _own_loop(net, svd, optimizer, epochs, start=0, stop_after=None):
    """Epochs of an own loop: a fixed batch per epoch, a cut at each epoch end; returns the
    checkpoint taken after epoch ``stop_after``."""
    saved = None
    for epoch in range(start, epochs):
        torch.manual_seed(100 + epoch)
        _train(net, svd, optimizer, steps=2)
        svd.gradual_cut(optimizer, [_batch()])
        if epoch + 1 == stop_after:
            saved = copy.deepcopy({"model": net.state_dict(), "optimizer": optimizer.state_dict(),
                                   "svd": svd.state_dict(), "epoch": epoch + 1})  # fmt: skip
    return saved


def test_an_own_loop_stopped_after_a_cut_resumes_to_the_same_ranks_and_weights(tmp_path):
    config, x = SVDTrainingConfig(target_reduction=3.0, gradual_cuts=3), _batch()[0][:1]
    net = _net()
    svd = SVDTraining(net, config, example=x)
    optimizer = torch.optim.Adam(svd.param_groups(1e-2))
    saved = _own_loop(net, svd, optimizer, epochs=4, stop_after=2)
    torch.save(saved, tmp_path / "ckpt.pt")
    saved = torch.load(tmp_path / "ckpt.pt")  # the documented pattern: SVDTraining state first, then weights
    fresh = _net()
    resumed = SVDTraining(fresh, config, example=x)
    resumed.load_state_dict(saved["svd"])
    fresh.load_state_dict(saved["model"])
    again = torch.optim.Adam(resumed.param_groups(1e-2))
    again.load_state_dict(saved["optimizer"])
    _own_loop(fresh, resumed, again, epochs=4, start=saved["epoch"])
    assert svdtrain.train.checkpoint.ranks_of(fresh) == svdtrain.train.checkpoint.ranks_of(net)
    assert (resumed.steps, resumed.cuts, resumed.baseline_macs) == (svd.steps, svd.cuts, svd.baseline_macs)
    for (name, a), b in zip(net.state_dict().items(), fresh.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_weights_loaded_before_the_svd_state_take_the_saved_ranks_too():
    net, x = _net(), _batch()[0][:1]
    svd = SVDTraining(net, SVDTrainingConfig(target_reduction=2.0), example=x)
    svd.prune()
    fresh = _net()
    resumed = SVDTraining(fresh, svd.config, example=x)
    fresh.load_state_dict(net.state_dict())  # e.g. a framework that restores the model first
    resumed.load_state_dict(svd.state_dict())
    fresh.eval(), net.eval()
    torch.testing.assert_close(fresh(x), net(x))
    assert resumed.pruned


@pytest.mark.parametrize("state, message", [
    ({"steps": 1}, "takes what SVDTraining.state_dict"),
    ({"config": {"sparsity_weight": 0.5}, "steps": 0, "cuts": 0, "pruned": False, "ranks": {}}, "another config "
     r"\(sparsity_weight 0.5 -> 0.001\)"),
    ({"config": {}, "steps": 0, "cuts": 0, "pruned": False, "ranks": {"0.weight": 3}}, "no rank for factored weight "
     "'4.weight'"),
])  # fmt: skip
def test_a_state_from_elsewhere_is_refused_in_one_line(state, message):
    with pytest.raises(ValueError, match=message):
        SVDTraining(_net()).load_state_dict(state)


def test_the_compact_model_computes_what_the_pruned_one_does():
    net, (x, _) = _net(), _batch()
    svd = SVDTraining(net, SVDTrainingConfig(target_reduction=2.0), example=x[:1])
    optimizer = torch.optim.Adam(svd.param_groups(1e-3))
    _train(net, svd, optimizer)
    svd.prune(optimizer, [_batch()])
    _train(net, svd, optimizer, steps=1)  # fine-tuning: Adam starts the replaced factors afresh
    small = svd.compact().eval()
    net.eval()
    assert not svdtrain.factored_weights(small)
    torch.testing.assert_close(small(x), net(x), rtol=1e-4, atol=1e-5)


def test_compact_before_the_target_is_reached_is_refused_naming_the_macs():
    net, (x, _) = _net(), _batch()
    svd = SVDTraining(net, SVDTrainingConfig(target_reduction=2.0, gradual_cuts=2), example=x[:1])
    dense = f"{svd.baseline_macs:,}"
    with pytest.raises(ValueError, match=rf"^compact\(\) before the model reaches target_reduction=2: 0 of 2 gradual "
                                         rf"cuts made, not pruned, it has {dense} MACs of the dense {dense}; call "
                                         r"prune\(\) first$"):  # fmt: skip
        svd.compact()
    svd.gradual_cut()
    with pytest.raises(ValueError, match="1 of 2 gradual cuts made"):
        svd.compact()
    svd.gradual_cut()  # the last cut reaches the target
    assert svdtrain.count_macs(svd.compact(), x[:1]) <= svd.baseline_macs / 2


def test_compact_before_prune_without_a_target_warns():
    svd = SVDTraining(_net(), SVDTrainingConfig())
    with pytest.warns(UserWarning, match=r"compact\(\) before prune\(\): nothing was pruned"):
        svd.compact(_batch()[0][:1])


def test_a_calibrated_cut_reads_batches():
    net, (x, _) = _net(), _batch()
    svd = SVDTraining(net, SVDTrainingConfig(target_reduction=2.0, calibration="whiten"), example=x[:1])
    with pytest.raises(ValueError, match="batches="):
        svd.prune()
    ranks = svd.prune(batches=[_batch(), _batch()])
    assert svdtrain.count_macs(net, x[:1]) <= svd.baseline_macs / 2 and set(ranks) == {"0.weight", "4.weight"}


def test_a_masked_cut_keeps_every_parameter_and_computes_what_a_physical_cut_does():
    """For a wrapped model (DDP, Trainer, Lightning): the same parameters, the dropped slots held
    at zero through training, the zeros dropped by compact()."""
    config, x = SVDTrainingConfig(target_reduction=3.0, gradual_cuts=2), _batch()[0][:1]
    net, twin = _net(), _net()
    masked, physical = SVDTraining(net, config, example=x), SVDTraining(twin, config, example=x)
    optimizer = torch.optim.Adam(masked.param_groups(1e-2))
    _train(net, masked, optimizer)
    twin.load_state_dict(net.state_dict())
    params = [id(p) for p in net.parameters()]
    ranks = masked.gradual_cut(optimizer, masked=True)
    assert ranks == physical.gradual_cut() and [id(p) for p in net.parameters()] == params
    net.eval(), twin.eval()
    torch.testing.assert_close(net(x), twin(x), rtol=1e-5, atol=1e-6)
    net.train()
    _train(net, masked, optimizer, steps=1)
    masked.after_step(optimizer)
    for name, handle in svdtrain.factored_weights(net).items():
        k = ranks[name]
        assert not handle.s[k:].any() and not handle.U[:, k:].any() and not handle.Vh[k:].any(), name
    assert masked.state_dict()["masked_ranks"] == ranks
    masked.gradual_cut(optimizer, masked=True)  # the last: the target
    small = masked.compact().eval()
    assert {n: h.rank for n, h in svdtrain.factored_weights(net).items()} == masked.state_dict()["ranks"]
    net.eval()
    torch.testing.assert_close(small(x), net(x), rtol=1e-4, atol=1e-5)
    assert svdtrain.count_macs(small, x) <= masked.baseline_macs / 3


def test_the_names_of_the_last_release_warn_and_name_the_new_ones():
    net, x = _net(), _batch()[0][:1]
    svd = SVDTraining(net, SVDTrainingConfig(target_reduction=2.0, gradual_cuts=1), example=x)
    with pytest.warns(DeprecationWarning, match=r"^SVDTraining.cut\(\) is now gradual_cut\(\)$"):
        svd.cut()
    with pytest.warns(DeprecationWarning, match=r"^SVDTraining.finish\(\) is now compact\(\)$"):
        assert not svdtrain.factored_weights(svd.finish())
    with pytest.warns(DeprecationWarning, match="svdtrain.deploy.export moved to svdtrain.export"):
        import importlib
        import sys

        sys.modules.pop("svdtrain.deploy.export", None)
        assert importlib.import_module("svdtrain.deploy.export").load_compact is svdtrain.export.load_compact
