"""Property-based pass over decompose -> prune -> compact on random module trees with random
layer hyper-parameters, every supported layer kind: each case either works with outputs
preserved, or fails with a one-line ValueError. SVDTRAIN_FUZZ_EXAMPLES sets how many cases
(default 25, so the suite stays short; BENCHMARKS.md records a longer pass)."""

import os
import warnings

import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import svdtrain

EXAMPLES = int(os.environ.get("SVDTRAIN_FUZZ_EXAMPLES", "25"))


class Recurrent(nn.Module):
    """An RNN whose output (not its state) feeds the next layer."""

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class SelfAttention(nn.Module):
    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=False)[0]


class Nest(nn.Module):
    """A container around a container: names several levels deep, a residual read."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([inner])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks[0](x)


@st.composite
def conv_stack(draw):
    dims = draw(st.sampled_from([1, 2]))
    channels = draw(st.integers(1, 6))
    layers, size = [], draw(st.integers(6, 10))
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 8))
        kernel = draw(st.integers(1, 3))
        groups = draw(st.sampled_from([1, 1, 1, 2])) if channels % 2 == 0 and out % 2 == 0 else 1
        conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(
            channels, out, kernel, stride=draw(st.integers(1, 2)), padding=draw(st.integers(0, 1)),
            dilation=draw(st.integers(1, 2)), bias=draw(st.booleans()), groups=groups,
        )  # fmt: skip
        layers += [conv, nn.ReLU()]
        channels = out
    shape = (2, layers[0].in_channels, *([size] * dims))
    return nn.Sequential(*layers), torch.randn(shape), draw(st.sampled_from(["channel", "spatial"]))


@st.composite
def linear_stack(draw):
    features = draw(st.integers(1, 12))
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(1, 12))
        layers += [nn.Linear(features, out, bias=draw(st.booleans())), nn.Tanh()]
        features = out
    return nn.Sequential(*layers), torch.randn(3, layers[0].in_features), "channel"


@st.composite
def recurrent(draw):
    kind = draw(st.sampled_from([nn.LSTM, nn.GRU, nn.RNN]))
    batch_first = draw(st.booleans())
    rnn = kind(draw(st.integers(1, 6)), draw(st.integers(1, 6)), num_layers=draw(st.integers(1, 2)),
               bias=draw(st.booleans()), batch_first=batch_first, bidirectional=draw(st.booleans()))  # fmt: skip
    x = torch.randn(2, 4, rnn.input_size) if batch_first else torch.randn(4, 2, rnn.input_size)
    return nn.Sequential(Recurrent(rnn), nn.Linear(rnn.hidden_size * (2 if rnn.bidirectional else 1), 3)), x, "channel"


@st.composite
def attention(draw):
    heads = draw(st.integers(1, 3))
    embed = heads * draw(st.integers(1, 4))
    module = nn.MultiheadAttention(embed, heads, bias=draw(st.booleans()), batch_first=True)
    return nn.Sequential(SelfAttention(module), nn.Linear(embed, 2)), torch.randn(2, 5, embed), "channel"


@st.composite
def case(draw):
    model, x, scheme = draw(st.one_of(conv_stack(), linear_stack(), recurrent(), attention()))
    if draw(st.booleans()):
        model = Nest(model)
    rule = draw(st.sampled_from(["energy", "rank", "threshold"]))
    policy = {"energy": svdtrain.Energy(draw(st.floats(0, 0.9))), "rank": svdtrain.Ranks(draw(st.integers(1, 4))),
              "threshold": svdtrain.Threshold(draw(st.floats(0, 2)))}[rule]  # fmt: skip
    return model, x, scheme, policy


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case())
def test_decompose_prune_compact_preserve_outputs_or_say_why(example):
    model, x, scheme, policy = example
    torch.manual_seed(0)
    model.eval()
    try:
        with torch.no_grad():
            dense_out = model(x)
    except RuntimeError:  # the drawn stack does not fit its input (the kernel outgrew it): not a case
        assume(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # grouped convs are left dense, with a warning
        try:
            svdtrain.decompose(model, scheme=scheme)
        except ValueError as error:  # nothing factorizable (every conv grouped): said in one line
            assert "\n" not in str(error) and "no weight to decompose" in str(error)
            return
    with torch.no_grad():
        torch.testing.assert_close(model(x), dense_out, atol=1e-4, rtol=1e-4)
    svdtrain.prune(model, policy)
    with torch.no_grad():
        pruned_out = model(x)
    assert torch.isfinite(pruned_out).all()
    small = svdtrain.compact(model, x).eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x), pruned_out, atol=1e-4, rtol=1e-4)
    assert svdtrain.count_macs(small, x) <= svdtrain.count_macs(model, x) + 1
    assert not any(name.endswith("original0") for name in small.state_dict())
