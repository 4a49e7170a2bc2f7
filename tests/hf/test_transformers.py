"""Hugging Face models built from a config (nothing downloaded): GPT-2 (Conv1D), BERT, a
Llama-style model with grouped-query attention, ViT."""

import json
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

transformers = pytest.importorskip("transformers")  # the [hf] extra, part of [test]
from transformers import (  # noqa: E402
    AutoModel, AutoModelForCausalLM, BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
    ViTConfig, ViTModel,
)  # fmt: skip
from transformers.pytorch_utils import Conv1D  # noqa: E402

import svdtrain  # noqa: E402
from svdtrain.integrations.hf import load_compact_pretrained, save_compact_pretrained  # noqa: E402

IDS = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(0))


def gpt2(vocab_size=96, n_layer=2):
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=32, n_embd=32, n_layer=n_layer, n_head=4,
                                      bos_token_id=0, eos_token_id=0))  # fmt: skip


def bert():
    return BertModel(BertConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=32))  # fmt: skip


def llama():
    return LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                        bos_token_id=0, eos_token_id=0))  # fmt: skip


def vit():
    return ViTModel(ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64))  # fmt: skip


MODELS = {
    "gpt2": (gpt2, {"input_ids": IDS}),
    "bert": (bert, {"input_ids": IDS}),
    "llama": (llama, {"input_ids": IDS}),
    "vit": (vit, {"pixel_values": torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))}),
}


def _out(model, inputs):
    result = model(**inputs)
    return result.logits if hasattr(result, "logits") else result.last_hidden_state


def _close(out, ref):
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())


def _decomposed(build):
    torch.manual_seed(0)
    model = build().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        svdtrain.decompose(model)
    return model


@pytest.mark.parametrize("name", MODELS)
def test_svd_init_preserves_outputs_and_a_training_step_runs(name):
    build, inputs = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    ref = _out(model, inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        svdtrain.decompose(model)
    _close(_out(model, inputs), ref)  # ViT's forward reads projection.weight.dtype: still there
    model.train()
    loss = _out(model, inputs).pow(2).mean() + svdtrain.orthogonality_loss(model) + 0.01 * svdtrain.sparsity_loss(model)
    loss.backward()
    weights = svdtrain.factored_weights(model)
    assert weights and all(torch.isfinite(w.s.grad).all() for w in weights.values())


@pytest.mark.parametrize("name", MODELS)
def test_prune_and_compact_give_plain_layers_with_the_same_outputs(name):
    build, inputs = MODELS[name]
    model = _decomposed(build)
    svdtrain.prune(model, svdtrain.Energy(0.3))
    small = svdtrain.compact(model, inputs)
    _close(_out(small, inputs), _out(model, inputs))
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in small.modules())
    assert svdtrain.count_macs(small, inputs) == svdtrain.count_macs(model, inputs) < svdtrain.count_macs(build(), inputs)
    assert "pair" in svdtrain.deployed_forms(model, small).values()


def test_gpt2_conv1d_weights_are_factored_and_the_tied_head_is_skipped_with_a_warning():
    model = gpt2()
    with pytest.warns(UserWarning, match=r"lm_head\.weight \(tied to transformer\.wte\.weight: "
                                         r"decompose\(untie=\['lm_head\.weight'\]\) factors its own copy"):
        svdtrain.decompose(model)
    names = list(svdtrain.factored_weights(model))
    assert "transformer.h.0.attn.c_attn.weight" in names and "transformer.h.1.mlp.c_proj.weight" in names
    assert "lm_head.weight" not in names
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied
    assert isinstance(model.transformer.h[0].attn.c_attn, Conv1D)


def test_asking_for_a_tied_weight_is_an_error():
    with pytest.raises(ValueError, match=r"cannot factor 'lm_head.weight': tied to transformer.wte.weight"):
        svdtrain.decompose(gpt2(), weights=["lm_head.weight"])


def test_a_module_type_with_no_entry_is_an_error_when_asked_for():
    with pytest.raises(ValueError, match=r"cannot factor 'transformer.wpe.weight': no svdtrain entry for Embedding"):
        svdtrain.decompose(gpt2(), weights=["transformer.wpe.weight"])


def test_vit_patch_projection_stays_a_conv_in_compact_because_its_weight_is_read_outside():
    model = _decomposed(vit)
    svdtrain.prune(model, svdtrain.Ranks(2))
    inputs = MODELS["vit"][1]
    small = svdtrain.compact(model, inputs)
    assert isinstance(small.embeddings.patch_embeddings.projection, nn.Conv2d)
    assert svdtrain.deployed_forms(model, small)["embeddings.patch_embeddings.projection.weight"] == "dense"


@pytest.mark.parametrize("build", [gpt2, llama])
def test_compact_causal_lm_generates_the_same_greedy_tokens(build):
    model = _decomposed(build)
    svdtrain.prune(model, svdtrain.Energy(0.3))
    small = svdtrain.compact(model, {"input_ids": IDS})
    prompt = IDS[:1, :4]
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert small.generate(prompt, **kwargs).tolist() == model.generate(prompt, **kwargs).tolist()


@pytest.mark.parametrize("build,cls", [(gpt2, GPT2LMHeadModel), (llama, LlamaForCausalLM)])
def test_save_pretrained_and_reload_give_the_same_outputs(tmp_path, build, cls):
    model = _decomposed(build)
    svdtrain.prune(model, svdtrain.Energy(0.3))
    small = svdtrain.compact(model, {"input_ids": IDS})
    save_compact_pretrained(model, small, tmp_path)
    again = load_compact_pretrained(tmp_path, cls)
    _close(again(IDS).logits, small(IDS).logits)
    if build is gpt2:
        assert again.lm_head.weight is again.transformer.wte.weight


AUTO = {gpt2: AutoModelForCausalLM, llama: AutoModelForCausalLM, bert: AutoModel}


@pytest.mark.parametrize("build", AUTO)
def test_the_folder_loads_with_transformers_alone_given_trust_remote_code(tmp_path, build):
    model = _decomposed(build)
    svdtrain.prune(model, svdtrain.Energy(0.3))
    small = svdtrain.compact(model, {"input_ids": IDS}).eval()
    save_compact_pretrained(model, small, tmp_path)
    code = (tmp_path / "modeling_svdtrain_compact.py").read_text()
    assert "import svdtrain" not in code and "from svdtrain" not in code
    again = AUTO[build].from_pretrained(tmp_path, trust_remote_code=True).eval()
    inputs = {"input_ids": IDS}
    _close(_out(again, inputs), _out(small, inputs))
    if build is not bert:
        kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
        assert again.generate(IDS[:1, :4], **kwargs).tolist() == small.generate(IDS[:1, :4], **kwargs).tolist()


def test_the_folder_never_loads_as_the_plain_model(tmp_path):
    model = _decomposed(gpt2)
    svdtrain.prune(model, svdtrain.Energy(0.3))
    save_compact_pretrained(model, svdtrain.compact(model, {"input_ids": IDS}), tmp_path)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):  # the pairs' dense names hold 0-size tensors
        GPT2LMHeadModel.from_pretrained(tmp_path)
    for trust in ({}, {"trust_remote_code": False}):
        with pytest.raises(ValueError, match=r"(?s)contains custom code.*trust_remote_code=True"):
            AutoModelForCausalLM.from_pretrained(tmp_path, **trust)


def _edit_config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    return config


@pytest.mark.parametrize("edit,message", [
    ({"n_layer": 3}, r"builds 'transformer\.h\.2\.[a-z_0-9.]+', which the folder's weights lack"),
    ({"n_layer": 1}, r"builds no 'transformer\.h\.1\.[a-z_0-9.]+', which the folder saved"),
    ({"n_embd": 64, "n_head": 8}, r"builds 'transformer\.wte\.weight' of shape \[96, 64\], saved as \[96, 32\]"),
])  # fmt: skip
def test_the_folder_refuses_a_config_edited_after_the_save(tmp_path, edit, message):
    model = _decomposed(gpt2)
    svdtrain.prune(model, svdtrain.Energy(0.3))
    save_compact_pretrained(model, svdtrain.compact(model, {"input_ids": IDS}), tmp_path)
    _edit_config(tmp_path, **edit)
    with pytest.raises(ValueError, match=rf"^config\.json {message}: it was changed after the save "
                                         r"\(svdtrain_compact lists what was saved\)$"):
        AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True)


def test_a_folder_saved_without_the_list_of_weights_still_loads(tmp_path):
    model = _decomposed(gpt2)
    svdtrain.prune(model, svdtrain.Energy(0.3))
    small = svdtrain.compact(model, {"input_ids": IDS}).eval()
    save_compact_pretrained(model, small, tmp_path)
    compact = json.loads((tmp_path / "config.json").read_text())["svdtrain_compact"]
    del compact["weights"]  # as svdtrain wrote it before
    _edit_config(tmp_path, svdtrain_compact=compact)
    _close(AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True).eval()(IDS).logits, small(IDS).logits)


def test_a_folder_without_pairs_is_a_plain_model(tmp_path):
    model = _decomposed(gpt2)  # full rank: every weight deploys dense
    small = svdtrain.compact(model, {"input_ids": IDS}).eval()
    save_compact_pretrained(model, small, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "gpt2"
    assert not (tmp_path / "modeling_svdtrain_compact.py").exists()
    _close(GPT2LMHeadModel.from_pretrained(tmp_path).eval()(IDS).logits, small(IDS).logits)


@pytest.mark.filterwarnings("ignore:svdtrain.decompose left")
def test_untying_the_head_is_explicit_and_keeps_the_outputs():
    torch.manual_seed(0)
    model = gpt2().eval()
    ref, embedding = model(IDS).logits, model.transformer.wte.weight.detach().clone()
    with pytest.warns(UserWarning, match=r"untied lm_head\.weight from transformer\.wte\.weight to factor it: its own "
                                         r"copy adds 3,072 parameters \(12,288 bytes\)"):  # fmt: skip
        svdtrain.decompose(model, untie=["lm_head.weight"])
    assert "lm_head.weight" in svdtrain.factored_weights(model)
    assert torch.equal(model.transformer.wte.weight, embedding)
    assert model.config.tie_word_embeddings is False  # or tie_weights() and reloads would tie them again
    _close(model(IDS).logits, ref)


def test_an_untied_head_lets_gpt2_reach_3x_fewer_macs_and_the_folder_reloads(tmp_path):
    build = lambda: gpt2(vocab_size=512, n_layer=1)  # noqa: E731 - the head is over half the MACs
    inputs = {"input_ids": IDS}
    tied = _decomposed(build)
    with pytest.raises(ValueError, match="out of reach"):  # a dense head alone is over a third
        svdtrain.prune(tied, svdtrain.MacsBudget(inputs, reduction=3))
    torch.manual_seed(0)
    model, dense = build().eval(), build().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        svdtrain.decompose(model, untie=["lm_head.weight"])
    svdtrain.prune(model, svdtrain.MacsBudget(inputs, reduction=3))
    small = svdtrain.compact(model, inputs).eval()
    assert svdtrain.count_macs(small, inputs) * 3 <= svdtrain.count_macs(dense, inputs)
    assert svdtrain.deployed_forms(model, small)["lm_head.weight"] == "pair"
    save_compact_pretrained(model, small, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is False
    _close(load_compact_pretrained(tmp_path, GPT2LMHeadModel)(IDS).logits, small(IDS).logits)
    _close(AutoModelForCausalLM.from_pretrained(tmp_path, trust_remote_code=True).eval()(IDS).logits,
           small(IDS).logits)  # fmt: skip


def test_reload_refuses_a_folder_without_a_spec(tmp_path):
    gpt2().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="svdtrain_compact.json not found"):
        load_compact_pretrained(tmp_path, GPT2LMHeadModel)


def test_compact_gpt2_runs_from_torch_export_without_svdtrain(tmp_path):
    model = _decomposed(gpt2)
    svdtrain.prune(model, svdtrain.Energy(0.3))
    small = svdtrain.compact(model, {"input_ids": IDS}).eval()
    small.config.use_cache = False

    class Logits(nn.Module):  # torch.export wants tensors out
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, ids):
            return self.lm(input_ids=ids, use_cache=False).logits

    wrapped = Logits(small)
    torch.export.save(torch.export.export(wrapped, (IDS,)), str(tmp_path / "m.pt2"))
    torch.save(wrapped(IDS).detach(), tmp_path / "y.pt")
    torch.save(IDS, tmp_path / "x.pt")
    script = f"""
import sys, torch
sys.modules["svdtrain"] = None
x, y = torch.load(r"{tmp_path}/x.pt"), torch.load(r"{tmp_path}/y.pt")
out = torch.export.load(r"{tmp_path}/m.pt2").module()(x)
assert (out - y).abs().max() < 1e-4, (out - y).abs().max()
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_conv1d_macs_agree_with_flop_counter():
    model = gpt2().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(IDS)
    conv1d = sum(m.weight.numel() for m in model.modules() if isinstance(m, Conv1D)) * IDS.numel()
    by_layer = svdtrain.macs_by_layer(model, {"input_ids": IDS})
    counted = sum(v for k, v in by_layer.items() if k != "lm_head")
    assert counted == conv1d
    lm_head = by_layer["lm_head"]
    ours = 2 * (counted + lm_head)  # FlopCounterMode does not count the CPU SDPA kernel: products apart
    assert abs(ours - counter.get_total_flops()) <= 0.01 * counter.get_total_flops()
    products = svdtrain.attention_macs(model, {"input_ids": IDS})
    batch, heads, length, head_dim = 2, 4, 12, 8
    assert products == {f"transformer.h.{i}.attn": batch * heads * length * length * 2 * head_dim for i in range(2)}
