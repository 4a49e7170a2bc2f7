"""PairedAttention: a compact nn.MultiheadAttention equals the pruned one under every mask and
layout, nn.TransformerEncoder reaches 2x and 3x fewer MACs through it, and it exports."""

import warnings

import pytest
import torch
from torch import nn

import svdtrain
from svdtrain.deploy import PairedAttention

E, HEADS, L, S, B = 16, 4, 5, 7, 2


def _close(out, ref, atol=1e-5):
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=atol, equal_nan=True), (out - ref).abs().max()


def _pruned(kdim, batch_first, bias=True):
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(E, HEADS, batch_first=batch_first, kdim=kdim, vdim=kdim, bias=bias).eval()
    svdtrain.prune(svdtrain.decompose(attn), svdtrain.Ranks(3))
    return attn


def _sequence(length, width, batch_first):
    return torch.randn(B, length, width) if batch_first else torch.randn(length, B, width)


def _masks(name, length, source):
    """Keyword arguments for one kind of mask, on queries of ``length`` and keys of ``source``."""
    torch.manual_seed(1)
    padding = torch.zeros(B, source, dtype=torch.bool)
    padding[0, -2:] = True
    return {
        "none": {},
        "bool padding": {"key_padding_mask": padding},
        "float padding, float attn": {"key_padding_mask": torch.randn(B, source),
                                      "attn_mask": torch.randn(length, source)},
        "bool attn": {"attn_mask": torch.rand(length, source) > 0.7},
        "float attn per head": {"attn_mask": torch.randn(B * HEADS, length, source)},
        "causal": {"attn_mask": torch.ones(length, source, dtype=torch.bool).triu(1), "is_causal": True},
    }[name]


MASKS = ["none", "bool padding", "float padding, float attn", "bool attn", "float attn per head", "causal"]


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("kdim", [None, 10])
@pytest.mark.parametrize("batch_first", [True, False])
def test_compact_attention_equals_the_pruned_one(mask, need_weights, average, kdim, batch_first):
    attn = _pruned(kdim, batch_first)
    query = _sequence(L, E, batch_first)
    # Self-attention for the packed weight (its pair reads Vh x once), cross-attention otherwise.
    keys = (query, query) if kdim is None else (_sequence(S, kdim, batch_first),) * 2
    source = keys[0].shape[1 if batch_first else 0]
    kwargs = dict(_masks(mask, L, source), need_weights=need_weights, average_attn_weights=average)
    small = svdtrain.compact(attn, (query, *keys))
    assert type(small) is PairedAttention
    with torch.no_grad():
        (out, weights), (ref, ref_weights) = small(query, *keys, **kwargs), attn(query, *keys, **kwargs)
    _close(out, ref)
    assert (weights is None) == (ref_weights is None) == (not need_weights)
    if need_weights:
        _close(weights, ref_weights)


def test_unbatched_cross_attention_through_the_packed_pair_and_no_bias():
    attn = _pruned(None, True, bias=False)
    query, memory = torch.randn(L, E), torch.randn(S, E)
    small = svdtrain.compact(attn, (query, query, query))
    for keys in ((memory, memory), (memory, torch.randn(S, E))):  # key is value, and not
        with torch.no_grad():
            out, weights = small(query, *keys)
            ref, ref_weights = attn(query, *keys)
        _close(out, ref)
        _close(weights, ref_weights)


def test_separate_projections_keep_their_own_ranks_and_forms():
    torch.manual_seed(0)
    attn = svdtrain.decompose(nn.MultiheadAttention(E, HEADS, kdim=40, vdim=6)).eval()
    svdtrain.prune(attn, svdtrain.Ranks({"q_proj_weight": 2, "k_proj_weight": 4, "v_proj_weight": 6}))
    query, key, value = torch.randn(L, B, E), torch.randn(S, B, 40), torch.randn(S, B, 6)
    small = svdtrain.compact(attn, (query, key, value))
    forms = svdtrain.deployed_forms(attn, small)
    # v at rank 6 of a 16 x 6 weight: the pair (6 * 22) costs more than dense (96)
    assert [forms[n] for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight")] == ["pair", "pair", "dense"]
    assert small.k_proj[0].out_features == 4 and type(small.v_proj) is nn.Linear
    with torch.no_grad():
        _close(small(query, key, value)[0], attn(query, key, value)[0])


def _encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, dim_feedforward=128, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2)


@pytest.mark.parametrize("reduction", [2, 3])
def test_transformer_encoder_reaches_a_macs_budget_through_paired_attention(reduction):
    x = torch.randn(4, 12, 32)
    dense_macs = svdtrain.count_macs(_encoder(), x)
    model = svdtrain.decompose(_encoder()).eval()
    svdtrain.prune(model, svdtrain.MacsBudget(x, reduction=reduction))
    small = svdtrain.compact(model, x).eval()
    assert all(type(layer.self_attn) is PairedAttention for layer in small.layers)
    assert svdtrain.count_macs(small, x) == svdtrain.count_macs(model, x) <= dense_macs / reduction
    padding = torch.zeros(4, 12, dtype=torch.bool)
    padding[:, 9:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(12)
    with torch.no_grad():
        _close(small(x), model(x))
        _close(small(x, mask=causal, is_causal=True), model(x, mask=causal, is_causal=True))
        # The pruned encoder packs a padded batch as a nested tensor and returns zeros there.
        _close(small(x, src_key_padding_mask=padding)[:, :9], model(x, src_key_padding_mask=padding)[:, :9])
    small.train()
    small(x, src_key_padding_mask=padding).sum().backward()
    assert small.layers[0].self_attn.reduce.weight.grad is not None


def test_compact_transformer_encoder_exports_to_torch_export_and_onnx(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    x = torch.randn(2, 12, 32)
    model = svdtrain.decompose(_encoder()).eval()
    svdtrain.prune(model, svdtrain.MacsBudget(x, reduction=2))
    small = svdtrain.compact(model, x).eval()
    program = torch.export.export(small, (x,))
    attention = small.layers[0].self_attn
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(attention)  # the whole encoder does not script: torch reads linear1.weight
    with torch.no_grad():
        _close(program.module()(x), small(x))
        _close(scripted(x, x, x)[0], attention(x, x, x)[0])
    path = tmp_path / "encoder.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(small, (x,), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch", 1: "time"}})  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = torch.randn(3, 9, 32)  # another batch and length than exported with
    (got,) = session.run(None, {"x": other.numpy()})
    with torch.no_grad():
        _close(torch.from_numpy(got), small(other), atol=1e-4)


def test_encoder_layers_skip_their_fused_path_once_any_part_is_swapped():
    # Dense attention, thin feed-forward pair: the fused path would read linear1.weight.
    x = torch.randn(2, 12, 32)
    model = svdtrain.decompose(_encoder()).eval()
    svdtrain.prune(model, svdtrain.Ranks(4))
    dense_attention = {f"layers.{i}.self_attn.in_proj_weight": "dense" for i in range(2)}
    small = svdtrain.compact(model, x, forms=dense_attention).eval()
    assert type(small.layers[0].self_attn) is nn.MultiheadAttention and type(small.layers[0].linear1) is nn.Sequential
    with torch.no_grad():
        _close(small(x), model(x))


def test_transformer_decoder_cross_attention_through_the_packed_pair():
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(32, 4, dim_feedforward=64, dropout=0.0, batch_first=True)
    model = svdtrain.decompose(nn.TransformerDecoder(layer, 2)).eval()
    svdtrain.prune(model, svdtrain.Ranks(8))
    target, memory = torch.randn(2, 6, 32), torch.randn(2, 9, 32)
    small = svdtrain.compact(model, (target, memory)).eval()
    assert type(small.layers[0].multihead_attn) is PairedAttention
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    with torch.no_grad():
        _close(small(target, memory, tgt_mask=causal), model(target, memory, tgt_mask=causal))
