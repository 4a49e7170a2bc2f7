import pytest
import torch
from torch import nn

from svdtrain.train import recalibrate_batchnorm


def test_batchnorm_recalibration_measures_the_data():
    model = nn.Sequential(nn.BatchNorm1d(3))
    model.eval()
    data = [(torch.randn(64, 3) * 2 + 5, torch.zeros(64)) for _ in range(4)]
    recalibrate_batchnorm(model, data, max_batches=4)
    inputs = torch.cat([x for x, _ in data])
    torch.testing.assert_close(model[0].running_mean, inputs.mean(0), atol=1e-5, rtol=0)
    assert not model.training and model[0].momentum == 0.1  # mode and momentum restored
    assert torch.allclose(model[0].running_var, inputs.var(0), rtol=0.1)


def test_batchnorm_recalibration_stops_after_max_batches():
    model = nn.Sequential(nn.BatchNorm1d(1))
    data = [(torch.full((8, 1), float(i)), None) for i in range(10)]
    recalibrate_batchnorm(model, data, max_batches=2)
    assert model[0].running_mean.item() == 0.5


def test_lazy_regularization_keeps_the_average_pull():
    import svdtrain
    from svdtrain.train import Regularization

    model = svdtrain.decompose(nn.Sequential(nn.Linear(6, 5)), init="random")
    eager = Regularization(1.0, 0.1, "hoyer")
    lazy = Regularization(1.0, 0.1, "hoyer", every=3)
    per_step = [float(lazy.loss(model, step)) for step in range(6)]
    assert per_step[1:3] == [0.0, 0.0] and per_step[4:6] == [0.0, 0.0]
    assert sum(per_step) == pytest.approx(6 * float(eager.loss(model)), rel=1e-6)


@pytest.mark.parametrize("every", [0, -2, 1.5, True])
def test_bad_lazy_interval_is_refused(every):
    from svdtrain.train import Regularization

    with pytest.raises(ValueError, match="every"):
        Regularization(1.0, every=every)


class _Twice(nn.Module):
    """One Linear applied twice: its factored weight is read twice per forward."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.shared(torch.tanh(self.shared(x)))))


def _rebuilds(model):
    """Counts calls of each SVDWeight parametrization (one call = one rebuild of W)."""
    import svdtrain

    calls = {"n": 0}
    for handle in svdtrain.factored_weights(model).values():
        handle.parametrization.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    return calls


def test_train_step_rebuilds_each_weight_once_and_keeps_exact_gradients():
    import copy

    import svdtrain
    from svdtrain.train import train_epoch

    model = svdtrain.decompose(_Twice(), init="random")
    reference = copy.deepcopy(model)
    batch = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]

    calls = _rebuilds(model)
    train_epoch(model, batch, torch.optim.SGD(model.parameters(), lr=0.5))
    assert calls["n"] == 2  # shared and head, once each, though shared is read twice

    # The same step without the cache: the same update, bit for bit up to float rounding.
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.5)
    inputs, targets = batch[0]
    torch.nn.functional.cross_entropy(reference(inputs), targets).backward()
    optimizer.step()
    for (name, got), (_, expected) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7, msg=name)


def test_training_steps_see_updated_weights():
    """The cache lives for one step: the next step's forward rebuilds from the updated factors."""
    import svdtrain
    from svdtrain.train import evaluate, train_epoch

    model = svdtrain.decompose(_Twice(), init="random")
    inputs, targets = torch.randn(16, 4), torch.randint(0, 3, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = [train_epoch(model, [(inputs, targets)], optimizer)["loss"] for _ in range(5)]
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0]  # not stuck on stale weights

    calls = _rebuilds(model)
    evaluate(model, [(inputs, targets)] * 3)
    assert calls["n"] == 2  # three batches, each weight rebuilt once


def test_proximal_l1_reaches_exact_zeros_and_scales_pick_the_weights():
    import svdtrain
    from svdtrain.train import Regularization, train_epoch

    torch.manual_seed(0)
    model = svdtrain.decompose(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)))
    batches = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(20)]
    spared = {"0.weight": 0.0, "2.weight": 1.0}  # the first layer's term weighs nothing
    before = model[0].parametrizations.weight.original1.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_epoch(model, batches, optimizer, Regularization(sparsity_weight=2.0, sparsity_kind="l1", scales=spared,
                                                          proximal=True))  # fmt: skip
    s_first, s_last = (svdtrain.factored_weights(model)[n].s.detach() for n in ("0.weight", "2.weight"))
    assert (s_last == 0).sum() >= 1 and (s_first != 0).all()  # exact zeros only where it pulls
    assert not torch.equal(s_first, before)  # still trained by the task


def test_proximal_needs_l1():
    from svdtrain.train import Regularization

    with pytest.raises(ValueError, match="proximal sparsity step needs sparsity kind l1"):
        Regularization(sparsity_weight=1.0, sparsity_kind="hoyer", proximal=True)


def test_sparsity_scales_weigh_each_weight():
    import svdtrain

    model = svdtrain.decompose(nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 6)))
    plain = svdtrain.sparsity_loss(model, "l1")
    half = svdtrain.sparsity_loss(model, "l1", {"0.weight": 0.5, "1.weight": 0.5})
    torch.testing.assert_close(half, plain / 2)


def test_budget_tail_pulls_only_the_marked_values():
    import svdtrain
    from svdtrain.train import Regularization, train_epoch

    torch.manual_seed(0)
    model = svdtrain.decompose(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)))
    s = svdtrain.factored_weights(model)["0.weight"].s
    tails = {"0.weight": torch.arange(8) >= 5}  # the three smallest values of the first layer
    before = s.detach().clone()
    regularization = Regularization(sparsity_weight=1.0, tails=tails, proximal=True)  # any kind: the tail is L1
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    train_epoch(model, [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(10)], optimizer, regularization)
    after = svdtrain.factored_weights(model)["0.weight"].s.detach()
    assert (after[5:] == 0).all() and (after[:5] != 0).all()
    assert not torch.equal(after[:5], before[:5])
    loss = Regularization(sparsity_weight=2.0, tails=tails).loss(model)
    torch.testing.assert_close(loss, 2.0 * after[5:].abs().sum())


def test_bf16_autocast_keeps_the_regularizers_and_factor_products_in_float32():
    import svdtrain
    from svdtrain.train import Regularization, train_epoch

    torch.manual_seed(0)
    model = svdtrain.decompose(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)))
    with torch.autocast("cpu", torch.bfloat16):
        assert model[0].weight.dtype == torch.float32  # the rebuilt weight: float32, cast by the op
        assert svdtrain.orthogonality_loss(model).dtype == torch.float32
        assert svdtrain.sparsity_loss(model, "hoyer").dtype == torch.float32
        assert model(torch.randn(2, 8)).dtype == torch.bfloat16
    batches = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(5)]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    metrics = train_epoch(model, batches, optimizer, Regularization(1.0, 0.01), precision="bf16")
    assert torch.isfinite(torch.tensor(metrics["loss"])) and all(p.dtype == torch.float32 for p in model.parameters())


def test_a_compiled_model_trains_like_the_eager_one():
    import copy

    import svdtrain
    from svdtrain.train import Regularization, train_epoch

    torch.manual_seed(0)
    eager = svdtrain.decompose(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)))
    compiled = copy.deepcopy(eager)
    batches = [(torch.randn(16, 8), torch.randint(0, 3, (16,))) for _ in range(3)]
    results = []
    for model, net in ((eager, eager), (compiled, torch.compile(compiled))):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        results.append(train_epoch(net, batches, optimizer, Regularization(1.0, 0.01)))
    assert results[1]["loss"] == pytest.approx(results[0]["loss"], rel=1e-4)
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
