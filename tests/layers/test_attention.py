"""nn.MultiheadAttention: packed and separate projections, both batch layouts, MACs."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import svdtrain
from svdtrain.deploy import PairedAttention


class SelfAttention(nn.Module):
    def __init__(self, batch_first=True, kdim=None, need_weights=False):
        super().__init__()
        self.need_weights = need_weights
        self.attn = nn.MultiheadAttention(16, 4, batch_first=batch_first, kdim=kdim, vdim=kdim)

    def forward(self, x, memory=None):
        memory = x if memory is None else memory
        return self.attn(x, memory, memory, need_weights=self.need_weights)[0]


def _close(out, ref):
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


def _inputs(batch_first, kdim):
    x = torch.randn(2, 5, 16) if batch_first else torch.randn(5, 2, 16)
    memory = None if kdim is None else (torch.randn(2, 7, kdim) if batch_first else torch.randn(7, 2, kdim))
    return x, memory


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("kdim", [None, 10])
def test_svd_init_preserves_outputs_packed_and_separate(batch_first, kdim):
    model = SelfAttention(batch_first, kdim).eval()
    x, memory = _inputs(batch_first, kdim)
    ref = model(x, memory)
    svdtrain.decompose(model)
    expected = ["attn.in_proj_weight"] if kdim is None else ["attn.q_proj_weight", "attn.k_proj_weight",
                                                             "attn.v_proj_weight"]  # fmt: skip
    assert list(svdtrain.factored_weights(model)) == [*expected, "attn.out_proj.weight"]
    assert isinstance(model.attn, nn.MultiheadAttention) and model.attn.in_proj_weight is None or kdim is None
    _close(model(x, memory), ref)
    model.train()
    (model(x, memory).sum() + svdtrain.orthogonality_loss(model)).backward()
    assert all(torch.isfinite(w.s.grad).all() for w in svdtrain.factored_weights(model).values())


@pytest.mark.parametrize("kdim", [None, 10])
def test_compact_deploys_low_rank_projections_as_pairs(kdim):
    model = svdtrain.decompose(SelfAttention(True, kdim)).eval()
    svdtrain.prune(model, svdtrain.Ranks(3))
    x, memory = _inputs(True, kdim)
    small = svdtrain.compact(model, (x, memory))
    assert type(small.attn) is PairedAttention
    forms = svdtrain.deployed_forms(model, small)
    assert forms.pop("attn.out_proj.weight") == "dense"  # MultiheadAttention reads it as a weight
    assert set(forms.values()) == {"pair"}
    _close(small(x, memory), model(x, memory))
    assert svdtrain.count_macs(small, (x, memory)) < svdtrain.count_macs(SelfAttention(True, kdim), (x, memory))


def test_bias_kv_and_zero_attention_keep_the_module_dense():
    model = nn.MultiheadAttention(16, 4, add_bias_kv=True, add_zero_attn=True)
    svdtrain.prune(svdtrain.decompose(model), svdtrain.Ranks(2))
    x = torch.randn(5, 2, 16)
    assert type(svdtrain.compact(model, (x, x, x))) is nn.MultiheadAttention
    with pytest.raises(ValueError, match="no pair form"):
        svdtrain.compact(model, (x, x, x), forms={"in_proj_weight": "pair"})


@pytest.mark.parametrize("kdim", [None, 10])
def test_macs_match_flop_counter_and_report_products_apart(kdim):
    # Train mode: eval takes the fused fast path, which FlopCounterMode does not count; with
    # need_weights the products run as bmm, which it counts (its CPU SDPA kernel it does not).
    x, memory = _inputs(True, kdim)
    flops = {}
    for need_weights in (False, True):
        model = SelfAttention(True, kdim, need_weights).train()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(x, memory)
        flops[need_weights] = counter.get_total_flops()
    projections = svdtrain.count_macs(model, (x, memory))
    products = svdtrain.attention_macs(model, (x, memory))
    source = 5 if kdim is None else 7
    assert products == {"attn": 2 * 2 * 5 * source * 16}
    assert abs(2 * projections - flops[False]) <= 0.01 * flops[False]
    assert abs(2 * (projections + products["attn"]) - flops[True]) <= 0.01 * flops[True]


def test_products_count_the_extra_positions_of_bias_kv_and_zero_attention():
    model = nn.MultiheadAttention(16, 4, batch_first=True, add_bias_kv=True, add_zero_attn=True).train()
    x = torch.randn(2, 5, 16)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, x, x, need_weights=True)
    products = svdtrain.attention_macs(model, (x, x, x))[""]
    projections = svdtrain.count_macs(model, (x, x, x))
    assert products == 2 * 2 * 5 * (5 + 2) * 16
    assert abs(2 * (projections + products) - counter.get_total_flops()) <= 0.01 * counter.get_total_flops()
