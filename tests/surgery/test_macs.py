"""count_macs / macs_by_layer / attention_macs: hand-computed cases and agreement with
FlopCounterMode, factored weights at the cost of the form compact deploys."""

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from svdtrain import (
    Ranks,
    attention_macs,
    compact,
    count_macs,
    count_params,
    decompose,
    factored_weights,
    macs_by_layer,
    prune,
)
from svdtrain.layers import kind_for


def small_net():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),  # (2, 4, 8, 8): 2*64 positions * 4 * 27
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2),  # (2, 6, 3, 3): 2*9 * 6 * 36
        nn.Conv2d(6, 6, 3, padding=1, groups=3),  # (2, 6, 3, 3): 2*9 * 6 * 18
        nn.MaxPool2d(1),
        nn.Flatten(),
        nn.Linear(54, 5),  # 2 * 5 * 54
    )


def _flops(model, *args):
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(*args)
    return counter.get_total_flops()


def test_count_macs_hand_computed_small_conv_net():
    model = small_net()
    x = torch.randn(2, 3, 8, 8)
    expected = {"0": 2 * 64 * 4 * 27, "3": 2 * 9 * 6 * 36, "4": 2 * 9 * 6 * 18, "7": 2 * 5 * 54}
    assert macs_by_layer(model, x) == expected
    assert count_macs(model, x) == 13824 + 3888 + 1944 + 540 == sum(expected.values())
    assert 2 * count_macs(model, x) == _flops(model, x)


def test_count_macs_conv1d_transpose_and_3d_linear_input():
    model = nn.Sequential(nn.Conv1d(2, 3, 4), nn.Flatten(0, 1))
    assert count_macs(model, torch.randn(1, 2, 10)) == 7 * 3 * 2 * 4
    tconv = nn.Sequential(nn.ConvTranspose2d(4, 2, 3, stride=2))
    assert count_macs(tconv, torch.randn(1, 4, 5, 5)) == 100 * 2 * 9
    lin = nn.Sequential(nn.Linear(6, 5))
    assert count_macs(lin, torch.randn(2, 7, 6)) == 14 * 5 * 6


def _factored(module, scheme="channel", rank=None):
    model = decompose(nn.Sequential(module), scheme=scheme)
    if rank is not None:
        prune(model, Ranks(rank))
    return model


def test_count_macs_hand_computed_factored_weights():
    x = torch.randn(3, 16)
    assert count_macs(_factored(nn.Linear(16, 12), rank=2), x) == 3 * 2 * (16 + 12)  # < dense 3*192
    assert count_macs(_factored(nn.Linear(16, 12)), x) == 3 * 12 * 16  # full rank: dense is cheaper
    assert macs_by_layer(_factored(nn.Linear(16, 12), rank=2), x) == {"0": 3 * 2 * 28}  # keyed by module

    x = torch.randn(1, 4, 6, 6)
    assert count_macs(_factored(nn.Conv2d(4, 8, 3, padding=1), "channel", 2), x) == 36 * 2 * (4 * 9 + 8)
    # (3x1 conv, 4 -> 2) on 6x6 out + (1x3 conv, 2 -> 8) on 6x6 out
    spatial = _factored(nn.Conv2d(4, 8, 3, padding=1), "spatial", 2)
    assert count_macs(spatial, x) == 36 * 2 * 4 * 3 + 36 * 8 * 2 * 3


def test_spatial_first_part_runs_on_the_full_input_width():
    model = _factored(nn.Conv2d(2, 3, (1, 3), stride=(1, 3), bias=False), "spatial", 1)  # width 9 -> 3
    conv, x = model[0], torch.randn(1, 2, 4, 9)
    # first: (1x1 conv, 2 -> 1) over 4 x 9; second: (1x3 conv stride 3, 1 -> 3) over 4 x 3
    assert kind_for(conv).pair_macs(conv, "weight", x.shape, 1) == 36 * 1 * 2 + 12 * 3 * 1 * 3
    assert kind_for(conv).dense_macs(conv, "weight", x.shape) == 12 * 3 * 2 * 3
    assert count_macs(model, x) == 36 * 1 * 2 + 12 * 3 * 1 * 3


def test_weights_that_deploy_dense_count_dense_at_any_rank():
    x = torch.randn(1, 4, 6, 6)
    same_reflect = _factored(nn.Conv2d(4, 8, 3, padding="same", padding_mode="reflect"), rank=1)
    assert count_macs(same_reflect, x) == 36 * 8 * 4 * 9  # no pair form


class ReadsItsWeight(nn.Module):
    """Reads ``fc.weight`` outside fc's own forward (as Hugging Face's ViT reads a weight's dtype)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        return self.fc(x.to(self.fc.weight.dtype))


def test_a_weight_read_outside_its_module_counts_dense():
    model = decompose(ReadsItsWeight())
    prune(model, Ranks(1))
    x = torch.randn(2, 16)
    assert count_macs(model, x) == 2 * 16 * 16  # compact keeps fc a Linear: dense
    assert type(compact(model, x).fc) is nn.Linear


def test_macs_by_layer_names_and_shared_layers_counted_per_call():
    fc = nn.Linear(4, 4)
    model = nn.Sequential(fc, nn.ReLU(), fc, nn.Linear(4, 2))
    assert macs_by_layer(model, torch.randn(5, 4)) == {"0": 2 * 5 * 16, "3": 5 * 8}
    decompose(model)
    prune(model, Ranks({"0.weight": 1}))
    assert macs_by_layer(model, torch.randn(5, 4)) == {"0": 2 * 5 * 1 * (4 + 4), "3": 5 * 8}


class TwoWidths(nn.Module):
    """One spatial conv called on a narrow input, then on a wide one."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, (1, 5))

    def forward(self, x):  # (N, 8, 3, 5) -> (N, 8, 3, 1)
        return self.conv(x).sum() + self.conv(torch.cat([x] * 20, dim=-1)).sum()


def test_a_module_called_on_two_shapes_is_counted_in_the_form_compact_deploys():
    # Rank 4, per output position: dense 320; pair 4 * (8 * width / out width + 40): 320 at
    # width 5 (first call: compact keeps it dense), about 193 at width 100 (a pair would pay).
    model = decompose(TwoWidths(), scheme="spatial")
    prune(model, Ranks(4))
    x = torch.randn(1, 8, 3, 5)
    c = compact(model, x)
    assert type(c.conv) is nn.Conv2d
    assert count_macs(model, x) == count_macs(c, x) == 3 * 1 * 320 + 3 * 96 * 320
    prune(model, Ranks(3))  # cheaper as a pair on both shapes
    c = compact(model, x)
    assert type(c.conv) is nn.Sequential
    assert count_macs(model, x) == count_macs(c, x) and 2 * count_macs(c, x) == _flops(c, x)


def test_count_macs_runs_in_eval_and_restores_training_modes():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5), nn.BatchNorm1d(3))
    model.train()
    model[3].eval()  # mixed modes must come back as they were
    stats = [model[1].running_mean.clone(), model[1].num_batches_tracked.clone()]
    x = torch.randn(4, 3) * 5 + 3
    assert count_macs(model, x) == 4 * 9
    assert macs_by_layer(model, x) == {"0": 36}
    # the counting pass ran in eval mode: batch-norm running statistics are untouched
    assert torch.equal(model[1].running_mean, stats[0]) and torch.equal(model[1].num_batches_tracked, stats[1])
    assert model.training and model[1].training and model[2].training and not model[3].training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())  # hooks removed


def test_counting_a_factored_model_removes_its_hooks_and_changes_nothing():
    model = decompose(nn.Sequential(nn.Linear(6, 6), nn.Conv1d(1, 2, 3)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert count_macs(nn.Sequential(model[0]), torch.randn(2, 6)) == 2 * 36
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_compact_with_example_input_leaves_batch_norm_statistics_alone():
    model = decompose(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
    model.train()
    stats = model[1].running_mean.clone()
    c = compact(model, torch.randn(4, 3) * 5 + 3)
    assert torch.equal(c[1].running_mean, stats) and torch.equal(model[1].running_mean, stats)
    assert c.training and c[1].training


def test_count_macs_tuple_input():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(5, 2)

        def forward(self, x, y):
            return self.a(x) + self.b(y)

    assert count_macs(Two(), (torch.randn(2, 3), torch.randn(2, 5))) == 2 * 2 * 3 + 2 * 2 * 5
    assert count_macs(Two(), {"y": torch.randn(4, 5), "x": torch.randn(4, 3)}) == 4 * 2 * 3 + 4 * 2 * 5


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1, padding_mode="reflect")
        self.c2 = nn.Conv2d(16, 24, (3, 5), stride=(2, 1), padding=(0, 2), dilation=(1, 2))
        self.c3 = nn.Conv2d(24, 24, (2, 3), padding="same")
        self.c4 = nn.Conv1d(24, 16, 3, stride=2)
        self.c5 = nn.Conv1d(16, 16, 3, padding="same", padding_mode="circular")  # factored, deploys dense
        self.fc = nn.Linear(16, 10)

    def forward(self, x):  # (N, 3, 10, 10)
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))  # (N, 24, 4, 6)
        x = self.c3(x).flatten(2)  # (N, 24, 24)
        x = self.c4(x)  # (N, 16, 11)
        x = self.c5(x)  # (N, 16, 11)
        return self.fc(x.transpose(1, 2))  # (N, 11, 10)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@given(scheme=st.sampled_from(["channel", "spatial"]), data=st.data())
def test_compact_macs_agree_with_flop_counter(scheme, data):
    torch.manual_seed(0)
    dense = ConvNet().eval()
    x = torch.randn(2, 3, 10, 10)
    assert 2 * count_macs(dense, x) == pytest.approx(_flops(dense, x), rel=0.01)
    model = decompose(copy.deepcopy(dense), scheme=scheme)
    weights = factored_weights(model)
    assert list(weights) == [f"{name}.weight" for name in ("c1", "c2", "c3", "c4", "c5", "fc")]
    prune(model, Ranks({name: data.draw(st.integers(1, handle.rank), label=name) for name, handle in weights.items()}))
    for c in (compact(model, x), compact(model)):
        macs = count_macs(c, x)
        assert 2 * macs == _flops(c, x)
        assert macs <= count_macs(dense, x)
    assert type(compact(model, x).c5) is nn.Conv1d
    assert count_macs(model, x) == count_macs(compact(model, x), x)
    grouped = {}
    for fqn, macs in macs_by_layer(compact(model, x), x).items():  # a pair's parts: "c1.0", "c1.1"
        grouped[fqn.split(".")[0]] = grouped.get(fqn.split(".")[0], 0) + macs
    assert macs_by_layer(model, x) == grouped


@pytest.mark.parametrize("module, x", [
    (nn.Conv3d(2, 3, (2, 3, 3), stride=(1, 2, 1), padding=1), torch.randn(2, 2, 4, 5, 6)),
    (nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1), torch.randn(1, 4, 5, 5)),
    (nn.ConvTranspose1d(4, 6, 3, groups=2), torch.randn(2, 4, 7)),
    (nn.Conv2d(6, 6, 3, groups=3, padding=1), torch.randn(1, 6, 5, 5)),
])  # fmt: skip
def test_convs_never_factored_are_counted_as_the_flop_counter_does(module, x):
    assert 2 * count_macs(nn.Sequential(module), x) == _flops(module, x)


class Attention(nn.Module):
    """Scores by matmul, values by matmul, and one F.scaled_dot_product_attention call."""

    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)

    def forward(self, x):  # (B, T, 8)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        manual = torch.softmax(q @ k.transpose(-2, -1), -1) @ v  # (B, T, T) then (B, T, 8)
        fused = nn.functional.scaled_dot_product_attention(q, k, v)
        return manual + fused


def test_attention_products_are_counted_apart_from_the_weights():
    x = torch.randn(2, 5, 8)
    model = Attention()
    products = 2 * (2 * 5 * 5 * 8)  # per pass: Q K^T and A V, each B * T * T * d
    assert attention_macs(model, x) == {"": 2 * products}
    assert count_macs(model, x) == 2 * 5 * 24 * 8  # the weights only
    assert 2 * (count_macs(model, x) + sum(attention_macs(model, x).values())) == _flops(model, x)
    decompose(model)
    assert attention_macs(model, x) == {"": 2 * products}  # weights read through a parametrization are not products


def test_count_params_counts_shared_tensors_once():
    fc = nn.Linear(4, 4)
    model = nn.Sequential(fc, fc)
    assert count_params(model) == 20
    decompose(model)
    assert count_params(model) == 16 + 4 + 16 + 4  # U, s, Vh, bias, once
    prune(model, Ranks(1))
    assert count_params(model) == 4 + 1 + 4 + 4


def test_macs_of_model_without_counted_layers_is_zero():
    assert count_macs(nn.Sequential(nn.ReLU()), torch.randn(2, 3)) == 0
    assert macs_by_layer(nn.Sequential(nn.ReLU()), torch.randn(2, 3)) == {}
