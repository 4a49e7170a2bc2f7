"""decompose: in-place parametrization (modules keep type and .weight), schemes/inits, weights
left dense with one warning, filter_fn, explicit weights=, sharing and tying, training, errors."""

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import svdtrain
from svdtrain import decompose, factored_weights


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


NAMES = ["features.0.weight", "features.2.weight", "blocks.0.weight", "head.fc.weight"]


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_decompose_factors_supported_weights_in_place_and_keeps_function(scheme):
    model = SmallNet()
    x = torch.randn(2, 3, 10, 7)
    ref = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left dense here, so no warning
        out = decompose(model, scheme=scheme)
    assert out is model
    weights = factored_weights(model)
    assert list(weights) == NAMES
    assert [w.view for w in weights.values()] == [scheme, scheme, "channel", "matrix"]  # Conv1d: channel only
    assert weights["features.0.weight"].module is model.features[0] and weights["head.fc.weight"].param == "weight"
    assert not parametrize.is_parametrized(model.features[1])
    _close(model(x), ref)


def test_modules_keep_their_type_weight_and_attributes():
    model = SmallNet()
    shapes = {name: p.shape for name, p in model.named_parameters()}
    decompose(model)
    for module, cls in [(model.features[0], nn.Conv2d), (model.features[2], nn.Conv2d),
                        (model.blocks[0], nn.Conv1d), (model.head["fc"], nn.Linear)]:  # fmt: skip
        assert isinstance(module, cls) and parametrize.is_parametrized(module, "weight")
        assert isinstance(module.weight, torch.Tensor) and not isinstance(module.weight, nn.Parameter)
    assert model.features[2].stride == (2, 2) and model.blocks[0].padding_mode == "circular"
    for name in NAMES:
        assert model.get_submodule(name.rpartition(".")[0]).weight.shape == shapes[name]
    state = model.state_dict()
    assert "features.0.parametrizations.weight.original1" in state and "features.0.bias" in state
    assert "features.0.weight" not in state


def test_a_parametrized_model_trains():
    torch.manual_seed(0)
    model = decompose(SmallNet())
    x, y = torch.randn(4, 3, 10, 7), torch.randint(0, 10, (4,))
    nn.functional.cross_entropy(model(x), y).backward()
    for name, handle in factored_weights(model).items():
        for p in handle.factors:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.head["fc"].weight.detach().clone()
    opt.step()
    assert not torch.equal(model.head["fc"].weight, before)  # the weight follows its trained factors


def test_decompose_twice_raises():
    model = decompose(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(ValueError, match=r"already decomposed.*'0\.weight'.*decompose once"):
        decompose(model)


@pytest.mark.parametrize("layer", [nn.Linear(3, 4), nn.Conv2d(2, 3, 3), nn.Conv1d(2, 3, 3)])
def test_bare_layer_decomposes_in_place(layer):
    x = torch.randn(2, 3) if isinstance(layer, nn.Linear) else torch.randn(1, 2, *(5,) * (layer.weight.dim() - 2))
    ref = layer(x)
    cls = type(layer)
    assert decompose(layer) is layer
    assert isinstance(layer, cls) and list(factored_weights(layer)) == ["weight"]
    _close(layer(x), ref)
    with pytest.raises(ValueError, match=r"already decomposed \(weight 'weight' is factored\)"):
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
    with pytest.raises(ValueError, match="no weight to decompose: no supported weight matrix was selected$"):
        decompose(model)


def test_only_unsupported_weights_raises_and_names_them():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Embedding(5, 3))
    with pytest.raises(ValueError, match=r"no weight to decompose.*not factored: 0\.weight \(grouped convolution"
                                         r".*; 1\.weight \(no svdtrain entry for Embedding\)"):  # fmt: skip
        decompose(model)


def test_weights_left_dense_are_listed_in_one_warning_with_the_reason():
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.Conv2d(6, 6, 3, groups=3), nn.Conv2d(6, 6, 1, groups=2), nn.Conv3d(2, 2, 1),
        nn.ConvTranspose2d(6, 2, 3), nn.Conv2d(2, 2, 1),
    )  # fmt: skip
    with pytest.warns(UserWarning) as record:
        decompose(model)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("svdtrain.decompose left 4 weight(s) dense: ")
    assert "1.weight (grouped convolution (groups=3) has no single matrix to factor)" in message
    assert "2.weight (grouped convolution (groups=2) has no single matrix to factor)" in message
    assert "3.weight, 4.weight" not in message  # Conv3d and ConvTranspose2d: one reason each
    assert "3.weight (no svdtrain entry for Conv3d)" in message
    assert "4.weight (no svdtrain entry for ConvTranspose2d)" in message
    assert list(factored_weights(model)) == ["0.weight", "5.weight"]


def test_grouped_conv_stays_dense():
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Conv2d(6, 6, 3, groups=3), nn.Conv2d(6, 2, 1))
    x = torch.randn(1, 3, 7, 7)
    ref = model(x)
    with pytest.warns(UserWarning, match=r"left 1 weight\(s\) dense: 1\.weight \(grouped convolution \(groups=3\)"):
        decompose(model)
    assert list(factored_weights(model)) == ["0.weight", "2.weight"]
    assert type(model[1]) is nn.Conv2d and model[1].groups == 3
    _close(model(x), ref)


def test_same_padding_with_reflect_is_factored():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding="same", padding_mode="reflect"), nn.Conv2d(4, 2, 3))
    x = torch.randn(1, 3, 6, 6)
    ref = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decompose(model)
    assert list(factored_weights(model)) == ["0.weight", "1.weight"]
    _close(model(x), ref)


class Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.attn(x, x, x, need_weights=False)[0])


def test_multihead_attention_projections_are_factored_and_keep_the_module():
    model = Attn().eval()
    x = torch.randn(2, 5, 8)
    ref = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decompose(model)
    assert list(factored_weights(model)) == ["attn.in_proj_weight", "attn.out_proj.weight", "fc.weight"]
    assert isinstance(model.attn, nn.MultiheadAttention)
    assert isinstance(model.attn.out_proj, nn.modules.linear.NonDynamicallyQuantizableLinear)
    _close(model(x), ref)


def test_filter_fn_is_respected_and_gets_module_and_name():
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.Conv1d(1, 2, 3))
    seen = []

    def keep_second(module, name):
        seen.append((type(module).__name__, name))
        return name == "2"

    decompose(model, filter_fn=keep_second)
    assert seen == [("Linear", "0"), ("Linear", "2"), ("Conv1d", "3")]
    assert list(factored_weights(model)) == ["2.weight"]
    assert type(model[0]) is nn.Linear and type(model[3]) is nn.Conv1d


def test_filter_fn_excluding_everything_raises():
    with pytest.raises(ValueError, match="no weight to decompose"):
        decompose(nn.Sequential(nn.Linear(3, 3)), filter_fn=lambda m, n: False)


def test_filter_fn_hides_unselected_unsupported_weights_from_the_warning():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Linear(3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decompose(model, filter_fn=lambda m, n: isinstance(m, nn.Linear))
    assert list(factored_weights(model)) == ["1.weight"]


def test_filter_fn_keeps_selected_unsupported_weights_in_the_warning():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Linear(3, 3), nn.Conv2d(2, 2, 3, groups=2))
    with pytest.warns(UserWarning, match=r"left 1 weight\(s\) dense: 2\.weight \(grouped"):
        decompose(model, filter_fn=lambda m, n: n != "0")


def test_explicit_weights_factor_exactly_those_and_warn_about_nothing():
    model = nn.Sequential(nn.Linear(4, 4), nn.Conv2d(2, 2, 3, groups=2), nn.Linear(4, 4), nn.Linear(4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decompose(model, weights=["3.weight", "0.weight", "3.weight"])
    assert list(factored_weights(model)) == ["0.weight", "3.weight"]
    assert not parametrize.is_parametrized(model[2])


@pytest.mark.parametrize("name, message", [
    ("fc.weight", r"'fc\.weight' is not a weight matrix of this model"),
    ("0.bias", r"'0\.bias' is not a weight matrix of this model"),
    ("1.weight", r"cannot factor '1\.weight': grouped convolution \(groups=2\)"),
    ("2.weight", r"cannot factor '2\.weight': no svdtrain entry for Embedding"),
    ("3.weight_hr_l0", r"cannot factor '3\.weight_hr_l0': LSTM with proj_size=2"),
])  # fmt: skip
def test_explicit_weights_naming_something_unfactorable_raise_before_any_change(name, message):
    model = nn.Sequential(nn.Linear(4, 4), nn.Conv2d(2, 2, 3, groups=2), nn.Embedding(5, 4),
                          nn.LSTM(3, 4, proj_size=2))  # fmt: skip
    with pytest.raises(ValueError, match=message):
        decompose(model, weights=["0.weight", name])
    assert not factored_weights(model)


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6)
        self.hidden = nn.Linear(6, 6)
        self.head = nn.Linear(6, 10, bias=False)
        self.head.weight = self.embed.weight  # GPT-2 style tying

    def forward(self, tokens):
        return self.head(torch.tanh(self.hidden(self.embed(tokens))))


def test_a_tied_weight_stays_dense_with_a_warning_and_is_refused_by_name():
    model = Tied()
    tokens = torch.randint(0, 10, (2, 5))
    ref = model(tokens)
    with pytest.warns(UserWarning, match=r"head\.weight \(tied to embed\.weight: decompose\(untie=\['head\.weight'\]"):
        decompose(model)
    assert list(factored_weights(model)) == ["hidden.weight"]
    assert model.head.weight is model.embed.weight
    _close(model(tokens), ref)
    with pytest.raises(ValueError, match=r"cannot factor 'head\.weight': tied to embed\.weight"):
        decompose(Tied(), weights=["head.weight"])


@pytest.mark.filterwarnings("ignore:svdtrain.decompose left")
def test_untie_gives_a_tied_weight_its_own_copy_and_factors_it():
    model = Tied()
    tokens = torch.randint(0, 10, (2, 5))
    ref, embedding = model(tokens), model.embed.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"untied head\.weight from embed\.weight to factor it: its own copy adds 60 "
                                         r"parameters \(240 bytes\)"):  # fmt: skip
        decompose(model, untie=["head.weight"])
    assert list(factored_weights(model)) == ["hidden.weight", "head.weight"]
    assert torch.equal(model.embed.weight, embedding) and model.embed.weight.requires_grad
    _close(model(tokens), ref)
    model.embed.weight.data.add_(1.0)  # the embedding no longer moves the head
    assert not torch.equal(model.head.weight, model.embed.weight)


def test_untie_leaves_an_untied_weight_alone_and_refuses_what_is_not_a_parameter():
    model = nn.Sequential(nn.Linear(4, 4))
    x = torch.randn(2, 4)
    ref = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing was tied: nothing to say
        decompose(model, untie=["0.weight"])
    _close(model(x), ref)
    for bad in (["1.weight"], "0.weight"):
        with pytest.raises(ValueError, match=r"untie"):
            decompose(nn.Sequential(nn.Linear(4, 4)), untie=bad)


def test_an_already_parametrized_weight_stays_dense_with_a_warning():
    model = nn.Sequential(nn.Linear(4, 4), nn.utils.parametrizations.weight_norm(nn.Linear(4, 4)), nn.Linear(4, 4))
    x = torch.randn(2, 4)
    ref = model(x)
    with pytest.warns(UserWarning) as record:
        decompose(model)
    (message,) = [str(r.message) for r in record]
    # the weight-normed weight is named once; weight_norm's own tensors are not layers of the model
    assert message == "svdtrain.decompose left 1 weight(s) dense: 1.weight (already parametrized (weight_norm, " \
                      "spectral_norm, ...))"  # fmt: skip
    assert list(factored_weights(model)) == ["0.weight", "2.weight"]
    _close(model(x), ref)
    with pytest.raises(ValueError, match=r"cannot factor '1\.weight': already parametrized"):
        decompose(nn.Sequential(nn.Linear(4, 4), nn.utils.parametrizations.weight_norm(nn.Linear(4, 4))),
                  weights=["0.weight", "1.weight"])  # fmt: skip


def _int_linear(dtype=torch.int64):
    layer = nn.Linear(16, 32, bias=False)
    values = torch.randint(0, 5, (32, 16), generator=torch.Generator().manual_seed(0)).to(dtype)
    layer.weight = nn.Parameter(values, requires_grad=False)
    return layer


@pytest.mark.parametrize("dtype", [torch.int64, torch.int8, torch.bool])
def test_an_integer_weight_stays_dense_and_exact_with_a_warning(dtype):
    model = nn.Sequential(nn.Linear(16, 16), _int_linear(dtype))
    weight = model[1].weight.clone()
    with pytest.warns(UserWarning, match=rf"left 1 weight\(s\) dense: 1\.weight \(a {dtype} weight: only "
                                         r"floating-point weights factor\)"):  # fmt: skip
        decompose(model)
    assert list(factored_weights(model)) == ["0.weight"]
    assert model[1].weight.dtype == dtype and torch.equal(model[1].weight, weight)


def test_an_integer_weight_alone_or_by_name_is_refused_naming_its_dtype():
    with pytest.raises(ValueError, match=r"no weight to decompose.*not factored: weight \(a torch\.int64 weight"):
        decompose(_int_linear())
    with pytest.raises(ValueError, match=r"cannot factor 'weight': a torch\.int64 weight: only floating-point"):
        decompose(_int_linear(), weights=["weight"])


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
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a shared module is not a tied weight
        decompose(model)
    assert isinstance(model.fc, nn.Linear) and parametrize.is_parametrized(model.fc, "weight")
    assert model.fc is model.again is model.seq[0]
    assert list(factored_weights(model)) == ["fc.weight"]
    assert len(list(model.parameters())) == 4  # U, s, Vh, bias once
    _close(model(x), ref)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
def test_random_init_shapes_and_trainable(scheme):
    model = nn.Sequential(nn.Conv2d(3, 6, (3, 2)), nn.Flatten(), nn.Linear(6 * 3 * 4, 5))
    decompose(model, scheme=scheme, init="random")
    weights = factored_weights(model)
    conv, fc = weights["0.weight"], weights["2.weight"]
    m, n = (6, 3 * 3 * 2) if scheme == "channel" else (3 * 3, 6 * 2)
    assert conv.U.shape == (m, min(m, n)) and conv.Vh.shape == (min(m, n), n) and conv.s.shape == (min(m, n),)
    assert fc.U.shape == (5, 5) and fc.s.shape == (5,) and fc.Vh.shape == (5, 72)
    assert model[0].weight.shape == (6, 3, 3, 2)
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
    assert model[0].weight.dtype == torch.float64


def test_public_api_exports():
    for name in ["decompose", "prune", "compact", "compact_spec", "rebuild_compact", "count_macs", "macs_by_layer",
                 "attention_macs", "orthogonality_loss", "sparsity_loss", "singular_values", "factored_weights",
                 "FactoredWeight", "SVDWeight", "WeightKind", "register"]:  # fmt: skip
        assert hasattr(svdtrain, name) and name in svdtrain.__all__
    for gone in ["SVDConv", "SVDLinear", "SVDLayer", "svd_layers"]:
        assert not hasattr(svdtrain, gone)


def test_rank_truncates_to_the_best_approximation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 16), nn.Conv2d(6, 10, 3))
    weights = [model[0].weight.detach().clone(), model[1].weight.detach().reshape(10, -1).clone()]
    decompose(model, rank=4)
    for handle, weight in zip(factored_weights(model).values(), weights):
        assert handle.rank == 4 and handle.full_rank == min(weight.shape)
        U, s, Vh = torch.linalg.svd(weight.double(), full_matrices=False)
        best = (U[:, :4] * s[:4]) @ Vh[:4]
        torch.testing.assert_close(handle.matrix().double(), best, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model[0].weight.double(), factored_weights(model)["0.weight"].matrix().double())


def test_fractional_rank_is_per_weight():
    model = decompose(nn.Sequential(nn.Linear(40, 20), nn.Linear(20, 10)), rank=0.5)
    assert [handle.rank for handle in factored_weights(model).values()] == [10, 5]


def test_randomized_svd_finds_the_top_singular_values():
    torch.manual_seed(0)
    low_rank = torch.randn(300, 8) @ torch.randn(8, 500) + 1e-4 * torch.randn(300, 500)
    linear = nn.Linear(500, 300)
    linear.weight.data = low_rank
    model = decompose(nn.Sequential(linear), init="svd_lowrank", rank=8)
    handle = factored_weights(model)["0.weight"]
    exact = torch.linalg.svdvals(low_rank.double())[:8]
    torch.testing.assert_close(handle.s.detach().double().sort(descending=True).values, exact, rtol=1e-4, atol=0)
    residual = torch.linalg.matrix_norm(handle.matrix() - low_rank) / torch.linalg.matrix_norm(low_rank)
    assert residual < 1e-3


@pytest.mark.parametrize("init, rank, message", [
    ("svd_lowrank", None, "give rank="), ("svd", 0, "rank must be"), ("svd", 1.5, "fractional rank"),
    ("svd", "4", "rank must be"), ("svd", True, "rank must be"),
])  # fmt: skip
def test_bad_rank_is_refused_before_any_change(init, rank, message):
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match=message):
        decompose(model, init=init, rank=rank)
    assert type(model[0]) is nn.Linear and not parametrize.is_parametrized(model[0])


def test_a_weight_with_nan_is_refused_before_anything_is_factored():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"weight '1\.weight' holds NaN or inf; nothing was factored"):
        decompose(model)
    assert not svdtrain.factored_weights(model)


def test_weights_given_as_one_string_is_refused():
    with pytest.raises(ValueError, match="weights must be a list of weight names"):
        decompose(nn.Sequential(nn.Linear(3, 3)), weights="0.weight")


def test_half_precision_weights_factor_by_randomized_svd():
    model = decompose(nn.Sequential(nn.Linear(32, 32)).half(), init="svd_lowrank", rank=4)
    assert svdtrain.factored_weights(model)["0.weight"].U.dtype == torch.float16


def test_random_factors_on_the_meta_device_build_the_svd_form_from_shapes_alone():
    """A sharded build's first step: the SVD form on the meta device, materialized later
    (to_empty) and given its values by a state dict; exact SVD still needs values."""
    import svdtrain

    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    svdtrain.decompose(model, init="random")
    assert all(p.is_meta for p in model.parameters()) and len(svdtrain.factored_weights(model)) == 2
    torch.manual_seed(0)
    reference = svdtrain.decompose(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)))
    model.to_empty(device="cpu")
    model.load_state_dict(reference.state_dict())
    x = torch.randn(3, 8)
    torch.testing.assert_close(model(x), reference(x))
    with torch.device("meta"):
        dense = nn.Linear(8, 16)
    with pytest.raises(ValueError, match="meta device and has no values to factor"):
        svdtrain.decompose(dense, init="svd")
