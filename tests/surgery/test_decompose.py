"""decompose: in-place rewriting, schemes/inits, skipped layers, filter_fn, sharing, errors."""

import warnings

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain import SVDConv, SVDLinear, decompose, svd_layers


def _close(out, ref):
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, (3, 2), stride=2))
        self.blocks = nn.ModuleList([nn.Conv1d(8, 4, 3, padding=1, padding_mode="circular")])
        self.head = nn.ModuleDict({"fc": nn.Linear(4 * 6, 10)})

    def forward(self, x):
        x = self.features(x)  # (N, 8, 4, 3) for a 10 x 7 input
        x = x.flatten(2)  # (N, 8, 12)
        x = self.blocks[0](x)[..., ::2]  # (N, 4, 6)
        return self.head["fc"](x.flatten(1))


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_decompose_replaces_supported_layers_in_place_and_keeps_function(scheme):
    model = SmallNet()
    x = torch.randn(2, 3, 10, 7)
    ref = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is skipped here, so no warning
        out = decompose(model, scheme=scheme)
    assert out is model
    assert isinstance(model.features[0], SVDConv) and model.features[0].scheme == scheme
    assert isinstance(model.features[2], SVDConv) and model.features[2].scheme == scheme
    assert isinstance(model.blocks[0], SVDConv) and model.blocks[0].scheme == "channel"  # Conv1d
    assert isinstance(model.head["fc"], SVDLinear)
    assert isinstance(model.features[1], nn.ReLU)
    assert [name for name, _ in svd_layers(model)] == ["features.0", "features.2", "blocks.0", "head.fc"]
    _close(model(x), ref)


def test_decompose_twice_raises():
    model = decompose(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(ValueError, match=r"already decomposed.*'0'.*decompose once"):
        decompose(model)


def test_decompose_an_svd_layer_itself_raises():
    layer = SVDLinear.from_linear(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="already decomposed"):
        decompose(layer)


@pytest.mark.parametrize("bad", ["row", "Channel", ""])
def test_unknown_scheme_raises(bad):
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"unknown scheme .*valid schemes are channel, spatial"):
        decompose(model, scheme=bad)
    assert type(model[0]) is nn.Linear  # untouched


@pytest.mark.parametrize("bad", ["zeros", "SVD", "kaiming"])
def test_unknown_init_raises(bad):
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match=r"unknown init .*valid inits are svd, svd_lowrank, random"):
        decompose(model, init=bad)
    assert type(model[0]) is nn.Linear


@pytest.mark.parametrize("model", [nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), nn.Sequential(), nn.Identity()])
def test_nothing_to_decompose_raises(model):
    with pytest.raises(ValueError, match="no layer to decompose"):
        decompose(model)


@pytest.mark.parametrize("layer", [nn.Linear(3, 4), nn.Conv2d(2, 3, 3), nn.Conv1d(2, 3, 3)])
def test_bare_layer_raises(layer):
    with pytest.raises(ValueError, match=r"bare layer.*nn\.Sequential\(layer\)"):
        decompose(layer)


def test_only_unsupported_layers_raises_and_names_them():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4))
    with pytest.raises(ValueError, match=r"no layer to decompose.*left dense: 0 \(grouped convolution"):
        decompose(model)


def test_grouped_conv_stays_dense_with_warning():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Conv2d(6, 6, 3, groups=3), nn.Conv2d(6, 2, 1))
    x = torch.randn(1, 3, 7, 7)
    ref = model(x)
    with pytest.warns(UserWarning, match=r"left 1 layer\(s\) dense: 1 \(grouped convolution \(groups=3\)"):
        decompose(model)
    assert isinstance(model[0], SVDConv) and isinstance(model[2], SVDConv)
    assert type(model[1]) is nn.Conv2d and model[1].groups == 3
    _close(model(x), ref)


def test_same_padding_with_reflect_stays_dense_with_warning():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding="same", padding_mode="reflect"), nn.Conv2d(4, 2, 3))
    with pytest.warns(UserWarning, match=r"0 \(padding='same' with padding_mode='reflect'\)"):
        decompose(model)
    assert type(model[0]) is nn.Conv2d and isinstance(model[1], SVDConv)


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.attn(x, x, x, need_weights=False)[0])


def test_multihead_attention_out_proj_stays_dense_with_warning():
    model = Attn().eval()
    x = torch.randn(2, 5, 8)
    ref = model(x)
    with pytest.warns(UserWarning, match=r"left 1 layer\(s\) dense: attn\.out_proj \(.*subclass of Linear"):
        decompose(model)
    assert type(model.attn.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    assert isinstance(model.fc, SVDLinear)
    _close(model(x), ref)


def test_filter_fn_is_respected_and_gets_module_and_name():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.Conv1d(1, 2, 3))
    seen = []

    def keep_second(module, name):
        seen.append((type(module).__name__, name))
        return name == "2"

    decompose(model, filter_fn=keep_second)
    assert seen == [("Linear", "0"), ("Linear", "2"), ("Conv1d", "3")]
    assert type(model[0]) is nn.Linear and isinstance(model[2], SVDLinear) and type(model[3]) is nn.Conv1d


def test_filter_fn_excluding_everything_raises():
    with pytest.raises(ValueError, match="no layer to decompose"):
        decompose(nn.Sequential(nn.Linear(3, 3)), filter_fn=lambda m, n: False)


def test_filter_fn_hides_unsupported_layers_from_the_warning():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Linear(3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decompose(model, filter_fn=lambda m, n: isinstance(m, nn.Linear))
    assert isinstance(model[1], SVDLinear)


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.again = self.fc  # same module under two names
        self.seq = nn.Sequential(self.fc, nn.Tanh())

    def forward(self, x):
        return self.seq(self.again(self.fc(x)))


def test_shared_module_stays_shared():
    model = Shared()
    x = torch.randn(3, 4)
    ref = model(x)
    decompose(model)
    assert isinstance(model.fc, SVDLinear)
    assert model.fc is model.again is model.seq[0]
    assert len(svd_layers(model)) == 1
    assert len(list(model.parameters())) == 4  # U, s, Vh, bias once
    _close(model(x), ref)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_random_init_shapes_and_trainable(scheme):
    model = nn.Sequential(nn.Conv2d(3, 6, (3, 2)), nn.Flatten(), nn.Linear(6 * 3 * 4, 5))
    decompose(model, scheme=scheme, init="random")
    conv, fc = model[0], model[2]
    m, n = (6, 3 * 3 * 2) if scheme == "channel" else (3 * 3, 6 * 2)
    assert conv.U.shape == (m, min(m, n)) and conv.Vh.shape == (min(m, n), n) and conv.s.shape == (min(m, n),)
    assert fc.U.shape == (5, 5) and fc.s.shape == (5,) and fc.Vh.shape == (5, 72)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(4, 3, 5, 5), torch.randn(4, 5)
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_decompose_accepts_double_models_and_keeps_dtype():
    model = nn.Sequential(nn.Linear(5, 4), nn.Conv1d(1, 2, 2)).double()
    decompose(model)
    assert all(p.dtype == torch.float64 for p in model.parameters())


def test_public_api_exports():
    for name in ["decompose", "prune", "compact", "count_macs", "macs_by_layer", "orthogonality_loss",
                 "sparsity_loss", "singular_values", "SVDConv", "SVDLinear", "SVDLayer"]:  # fmt: skip
        assert hasattr(svdtrain, name)


def test_rank_truncates_to_the_best_approximation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 16), nn.Conv2d(6, 10, 3))
    weights = [model[0].weight.detach().clone(), model[1].weight.detach().reshape(10, -1).clone()]
    decompose(model, rank=4)
    for layer, weight in zip(model, weights):
        assert layer.rank == 4
        U, s, Vh = torch.linalg.svd(weight.double(), full_matrices=False)
        best = (U[:, :4] * s[:4]) @ Vh[:4]
        torch.testing.assert_close(layer.weight_matrix().double(), best, atol=1e-5, rtol=1e-5)


def test_fractional_rank_is_per_layer():
    model = decompose(nn.Sequential(nn.Linear(40, 20), nn.Linear(20, 10)), rank=0.5)
    assert [layer.rank for layer in model] == [10, 5]


def test_randomized_svd_finds_the_top_singular_values():
    torch.manual_seed(0)
    low_rank = torch.randn(300, 8) @ torch.randn(8, 500) + 1e-4 * torch.randn(300, 500)
    linear = nn.Linear(500, 300)
    linear.weight.data = low_rank
    model = decompose(nn.Sequential(linear), init="svd_lowrank", rank=8)
    exact = torch.linalg.svdvals(low_rank.double())[:8]
    torch.testing.assert_close(model[0].s.detach().double().sort(descending=True).values, exact, rtol=1e-4, atol=0)
    residual = torch.linalg.matrix_norm(model[0].weight_matrix() - low_rank) / torch.linalg.matrix_norm(low_rank)
    assert residual < 1e-3


@pytest.mark.parametrize("init, rank, message", [
    ("svd_lowrank", None, "give rank="), ("svd", 0, "rank must be"), ("svd", 1.5, "fractional rank"),
    ("svd", "4", "rank must be"), ("svd", True, "rank must be"),
])  # fmt: skip
def test_bad_rank_is_refused_before_any_change(init, rank, message):
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match=message):
        decompose(model, init=init, rank=rank)
    assert type(model[0]) is nn.Linear
