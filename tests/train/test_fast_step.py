"""The fast training step: grouped regularizers equal the per-weight sums, no host sync hides
a divergence, and the compiled step is one graph."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

import svdtrain
from svdtrain.models import build_model
from svdtrain.surgery import factored_weights
from svdtrain.train import Distillation, Regularization, StepLoss, TrainingDiverged, train_epoch


def _ortho_reference(factor):
    a = factor.double()
    gram = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    return ((gram - torch.eye(len(gram), dtype=gram.dtype)) ** 2).sum() / len(gram) ** 2


def _sparsity_reference(s, kind):
    s = s.double().abs()
    if kind == "l1":
        return s.sum()
    if not s.any():
        return s.sum() * 0
    ratio = s.sum() / s.norm()
    return ratio - 1 if kind == "hoyer" else ratio**2 - 1


class Mixed(nn.Module):
    """Convolutions, an LSTM and attention: factor shapes of every kind, several sharing a shape."""

    def __init__(self):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 8, 3), nn.Conv2d(8, 16, 1))
        self.lstm = nn.LSTM(16, 12, num_layers=2)
        self.attention = nn.MultiheadAttention(12, 2)
        self.head = nn.Linear(12, 5)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
@pytest.mark.parametrize("kind", ["l1", "hoyer", "hoyer_square"])
def test_grouped_regularizers_equal_the_per_weight_sums(scheme, kind):
    torch.manual_seed(0)
    model = svdtrain.decompose(Mixed(), scheme=scheme)
    weights = factored_weights(model)
    assert len({tuple(w.U.shape) for w in weights.values()}) < len(weights)  # some groups hold several
    with torch.no_grad():
        next(iter(weights.values())).s.zero_()  # an all-zero spectrum among the rest
    names = list(weights)
    scales = {name: 0.5 + i for i, name in enumerate(names[::2])}
    tails = {name: torch.rand(w.rank) < 0.5 for name, w in list(weights.items())[1::2]}
    ortho = sum(_ortho_reference(w.U) + _ortho_reference(w.Vh) for w in weights.values())
    sparsity = sum(_sparsity_reference(w.s, kind) * scales.get(n, 1.0) for n, w in weights.items())
    tail = sum(weights[n].s.double()[m].abs().sum() * scales.get(n, 1.0) for n, m in tails.items())
    lazy = 3
    for regularization, expected in [
        (Regularization(0.7, 0.0, kind), 0.7 * ortho),
        (Regularization(0.0, 0.3, kind, scales=scales), 0.3 * sparsity),
        (Regularization(0.7, 0.3, kind, every=lazy, scales=scales), lazy * (0.7 * ortho + 0.3 * sparsity)),
        (Regularization(0.0, 0.3, kind, scales=scales, tails=tails), 0.3 * tail),
    ]:
        got = regularization.loss(model, step=0)
        torch.testing.assert_close(got.double(), expected.float().double(), rtol=1e-5, atol=1e-6)
    assert Regularization(0.7, 0.3, kind, every=lazy).loss(model, step=1) == 0.0


def test_grouped_regularizer_gradients_equal_the_per_weight_ones():
    torch.manual_seed(1)
    model = svdtrain.decompose(Mixed(), scheme="channel")
    weights = factored_weights(model)
    Regularization(1.0, 0.1, "hoyer").loss(model).backward()
    grouped = [p.grad.clone() for w in weights.values() for p in w.factors]
    model.zero_grad()
    reference = sum(_ortho_reference(w.U) + _ortho_reference(w.Vh) + 0.1 * _sparsity_reference(w.s, "hoyer")
                    for w in weights.values())  # fmt: skip
    reference.backward()
    for got, want in zip(grouped, (p.grad for w in weights.values() for p in w.factors)):
        torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-6)


def _aten_events(fn) -> int:
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for event in prof.events() if event.name.startswith("aten::"))


def test_grouping_cuts_the_ops_of_a_step():
    """Counted as the issue counted (torch.profiler aten events, ResNet-20 channel-wise, batch 8):
    the regularizers' forward is a few ops per group, not per weight (measured 265 against
    2,111), and the whole step well under the per-weight step (2,388 against 6,126)."""
    from svdtrain.linalg import orthogonality_penalty, sparsity_penalty

    model = svdtrain.decompose(build_model("resnet20", 10), scheme="channel")
    weights = factored_weights(model).values()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))

    def per_weight():
        return (sum(orthogonality_penalty(w.U) + orthogonality_penalty(w.Vh) for w in weights)
                + 1e-3 * sum(sparsity_penalty(w.s) for w in weights))  # fmt: skip

    terms = Regularization(1.0, 1e-3, "hoyer").bind(model)
    assert _aten_events(terms) * 6 <= _aten_events(per_weight)
    step = StepLoss(model, Regularization(1.0, 1e-3, "hoyer"))
    grouped_step = _aten_events(lambda: step((x, y))[0].backward())
    per_weight_step = _aten_events(lambda: (F.cross_entropy(model(x), y) + per_weight()).backward())
    assert grouped_step * 2 <= per_weight_step


def _tiny_batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g)) for _ in range(n)]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        return self.head(F.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("fused", [True, False])
def test_a_nan_at_step_k_names_step_k_though_checked_later(fused):
    torch.manual_seed(0)
    model = svdtrain.decompose(Tiny())
    batches = _tiny_batches(10)
    batches[6] = (torch.full_like(batches[6][0], float("nan")), batches[6][1])  # step 7
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    with pytest.raises(TrainingDiverged, match=r"^training diverged at step 7: the loss is not finite; ") as caught:
        train_epoch(model, batches, optimizer, Regularization(1.0, 1e-3), check_every=4)
    assert not hasattr(optimizer, "found_inf")  # the caller's next step with this optimizer is its own
    if fused:  # the bad update was skipped on the device: the model is the last finite one
        assert "every parameter is finite" in str(caught.value)
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_non_finite_gradient_norm_is_named_with_its_step():
    torch.manual_seed(0)
    model = svdtrain.decompose(Tiny())
    batches = _tiny_batches(5)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, fused=True)
    real_backward = torch.Tensor.backward
    calls = {"n": 0}

    def backward(self, *args, **kwargs):  # step 3's gradients overflow; its loss is finite
        real_backward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            model.head.bias.grad.fill_(float("inf"))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.Tensor, "backward", backward)
        with pytest.raises(TrainingDiverged, match=r"^training diverged at step 3: the gradient norm is inf; "):
            train_epoch(model, batches, optimizer, grad_clip=1.0, check_every=10)


def test_no_step_reads_the_device_on_the_host(monkeypatch):
    """Syncs happen at the checks only: one per window, plus the statistics at the end."""
    model = svdtrain.decompose(Tiny())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    reads = {"n": 0}
    for name in ("item", "__bool__", "__float__", "__int__", "tolist"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, _real=real, **kwargs):
            reads["n"] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    train_epoch(model, _tiny_batches(12), optimizer, Regularization(1.0, 1e-3), check_every=4)
    assert reads["n"] <= 12 // 4 + 2


@pytest.mark.parametrize("tails", [False, True])
def test_the_compiled_step_is_one_graph_with_regularizers_and_distillation(tails):
    torch.manual_seed(0)
    model = svdtrain.decompose(build_model("resnet20", 10), scheme="spatial")
    masks = {name: torch.arange(w.rank) > w.rank // 2 for name, w in factored_weights(model).items()}
    regularization = Regularization(1.0, 1e-3, "hoyer", tails=masks if tails else None,
                                    scales={name: 2.0 for name in list(masks)[:3]})  # fmt: skip
    step = StepLoss(model, regularization, distillation=Distillation(build_model("resnet20", 10)), precision="bf16")
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    explanation = torch._dynamo.explain(step._eager)((x, y), True)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_the_compiled_step_trains_like_the_eager_one():
    torch.compiler.reset()  # earlier tests' graphs must not use up the recompile limit
    torch.manual_seed(0)
    model = svdtrain.decompose(Tiny())
    twin = copy.deepcopy(model)
    regularization = Regularization(1.0, 1e-3, "hoyer")
    batches = _tiny_batches(4)
    results = []
    for net, mode in ((model, None), (twin, "default")):
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2, fused=True)
        step = StepLoss(net, regularization, compile=mode)
        results.append(train_epoch(net, batches, optimizer, regularization, step_loss=step))
    assert _compiled_graphs() > 0  # it did compile, and did not fall back to eager
    assert results[0]["loss"] == pytest.approx(results[1]["loss"], rel=1e-4)
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", [None, "default"])
def test_tails_updated_between_epochs_reach_the_step_eager_and_compiled(mode):
    torch.compiler.reset()
    torch.manual_seed(0)
    model = svdtrain.decompose(Tiny())
    weights = factored_weights(model)
    tails = {name: torch.arange(w.rank) >= w.rank - 1 for name, w in weights.items()}
    regularization = Regularization(0.0, 1.0, "l1", tails=tails)
    step = StepLoss(model, regularization, compile=mode)
    x, y = _tiny_batches(1)[0]
    plain = F.cross_entropy(model(x), y)
    for keep in (1, 2):  # the caller's update between epochs, in place
        tails.update({name: torch.arange(w.rank) >= w.rank - keep for name, w in weights.items()})
        step.refresh()
        expected = sum(w.s[-keep:].abs().sum() for w in weights.values())
        torch.testing.assert_close(step((x, y))[0] - plain, expected, rtol=1e-5, atol=1e-6)


def test_a_stale_tail_mask_is_a_clear_error():
    model = svdtrain.decompose(Tiny())
    name, weight = next(iter(factored_weights(model).items()))
    with pytest.raises(ValueError, match=f"tail mask for '{name}' has {weight.rank + 1} values, its weight {weight.rank}"):
        Regularization(0.0, 1.0, "l1", tails={name: torch.ones(weight.rank + 1, dtype=torch.bool)}).loss(model)


def test_an_unknown_compile_mode_is_refused():
    with pytest.raises(ValueError, match="unknown compile mode 'fast'"):
        StepLoss(svdtrain.decompose(Tiny()), compile="fast")


def test_momentum_sgd_steps_on_after_a_cut_replaced_some_factors():
    """Pruning replaces only the factors it shrinks; fused SGD needs every parameter of a group
    to hold a momentum buffer or none (a traceback otherwise, at the first step after the cut)."""
    from svdtrain.train.optimizer import optimizer_follows

    torch.manual_seed(0)
    model = svdtrain.decompose(Tiny())
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9, fused=True)
    train_epoch(model, _tiny_batches(2), optimizer)
    weight = next(iter(factored_weights(model).values()))
    with optimizer_follows(model, optimizer):
        weight.keep_(weight.rank - 1)
    train_epoch(model, _tiny_batches(2), optimizer)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_weighted_sparsity_stays_float32_under_bf16_autocast():
    model = svdtrain.decompose(Mixed())
    scales = {name: 1.0 + i / 7 for i, name in enumerate(factored_weights(model))}
    regularization = Regularization(0.0, 1.0, "hoyer", scales=scales)
    with torch.autocast("cpu", torch.bfloat16):
        term = regularization.loss(model)
    assert term.dtype == torch.float32
    torch.testing.assert_close(term, regularization.loss(model))


def test_an_optimizer_that_cannot_skip_a_step_is_checked_every_step():
    torch.manual_seed(0)
    model = svdtrain.decompose(Tiny())
    batches = _tiny_batches(6)
    batches[2] = (torch.full_like(batches[2][0], float("nan")), batches[2][1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=False)
    with pytest.raises(TrainingDiverged, match="at step 3: the loss is not finite; every parameter is finite"):
        train_epoch(model, batches, optimizer, check_every=50)  # stopped before stepping on the NaN
