"""count_macs / macs_by_layer: hand-computed cases and agreement with FlopCounterMode."""

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from svdtrain import SVDConv, SVDLinear, compact, count_macs, decompose, macs_by_layer, prune, svd_layers


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


def test_count_macs_hand_computed_svd_layers():
    fc = SVDLinear.from_linear(nn.Linear(16, 12))
    fc.keep_(2)
    assert count_macs(nn.Sequential(fc), torch.randn(3, 16)) == 3 * 2 * (16 + 12)  # < dense 3*192
    fc_full = SVDLinear.from_linear(nn.Linear(16, 12))
    assert count_macs(nn.Sequential(fc_full), torch.randn(3, 16)) == 3 * 12 * 16  # dense is cheaper

    conv = nn.Conv2d(4, 8, 3, padding=1)
    channel = SVDConv.from_conv(conv, scheme="channel")
    channel.keep_(2)
    x = torch.randn(1, 4, 6, 6)
    assert count_macs(nn.Sequential(channel), x) == 36 * 2 * (4 * 9 + 8)
    spatial = SVDConv.from_conv(conv, scheme="spatial")
    spatial.keep_(2)
    # (3x1 conv, 4 -> 2) on 6x6 out + (1x3 conv, 2 -> 8) on 6x6 out
    assert count_macs(nn.Sequential(spatial), x) == 36 * 2 * 4 * 3 + 36 * 8 * 2 * 3


def test_spatial_first_part_runs_on_the_full_input_width():
    conv = nn.Conv2d(2, 3, (1, 3), stride=(1, 3), bias=False)  # width 9 -> 3
    layer = SVDConv.from_conv(conv, scheme="spatial")
    layer.keep_(1)
    x = torch.randn(1, 2, 4, 9)
    # first: (1x1 conv, 2 -> 1) over 4 x 9; second: (1x3 conv stride 3, 1 -> 3) over 4 x 3
    assert layer.factored_macs(x.shape) == 36 * 1 * 2 + 12 * 3 * 1 * 3
    assert layer.dense_macs(x.shape) == 12 * 3 * 2 * 3


def test_macs_by_layer_names_and_shared_layers_counted_per_call():
    fc = nn.Linear(4, 4)
    model = nn.Sequential(fc, nn.ReLU(), fc, nn.Linear(4, 2))
    assert macs_by_layer(model, torch.randn(5, 4)) == {"0": 2 * 5 * 16, "3": 5 * 8}


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
    assert all(not m._forward_hooks for m in model.modules())  # hooks removed


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


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1, padding_mode="reflect")
        self.c2 = nn.Conv2d(16, 24, (3, 5), stride=(2, 1), padding=(0, 2), dilation=(1, 2))
        self.c3 = nn.Conv2d(24, 24, (2, 3), padding="same")
        self.c4 = nn.Conv1d(24, 16, 3, stride=2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):  # (N, 3, 10, 10)
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))  # (N, 24, 4, 6)
        x = self.c3(x).flatten(2)  # (N, 24, 24)
        x = self.c4(x)  # (N, 16, 11)
        return self.fc(x.transpose(1, 2))  # (N, 11, 10)


@given(scheme=st.sampled_from(["channel", "spatial"]), data=st.data())
def test_compact_macs_agree_with_flop_counter(scheme, data):
    torch.manual_seed(0)
    dense = ConvNet().eval()
    x = torch.randn(2, 3, 10, 10)
    assert 2 * count_macs(dense, x) == pytest.approx(_flops(dense, x), rel=0.01)
    model = decompose(copy.deepcopy(dense), scheme=scheme)
    prune(model, rank={name: data.draw(st.integers(1, layer.rank), label=name) for name, layer in svd_layers(model)})
    for c in (compact(model, x), compact(model)):
        macs = count_macs(c, x)
        assert 2 * macs == pytest.approx(_flops(c, x), rel=0.01)
        assert macs <= count_macs(dense, x)
    assert count_macs(model, x) == count_macs(compact(model, x), x)


def test_macs_of_model_without_counted_layers_is_zero():
    assert count_macs(nn.Sequential(nn.ReLU()), torch.randn(2, 3)) == 0
    assert macs_by_layer(nn.Sequential(nn.ReLU()), torch.randn(2, 3)) == {}
