"""``svdtrain run`` on the seconds-long language-model preset (a tiny GPT / LSTM, characters)."""

import json
import subprocess
import sys

import pytest
import torch

from svdtrain.cli import main

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text(TEXT)
    return path


def _run(out, text_file, *extra):
    return main(["run", "--out", str(out), "--preset", "smoke-lm", "--data", str(text_file), *extra])


@pytest.fixture(scope="module", params=["tiny_gpt", "tiny_lstm"])
def finished(request, tmp_path_factory, text_file):
    out = tmp_path_factory.mktemp(f"run_{request.param}")
    assert _run(out, text_file, "--model", request.param) == 0
    return out


def test_report_schema_for_a_language_model(finished):
    report = json.loads((finished / "report.json").read_text())
    assert report["task"] == "language_modeling" and report["metric"] == "loss"
    for key in ("baseline", "compact"):
        assert {"loss", "perplexity", "bits_per_token", "macs", "params"} <= set(report[key])
        assert report[key]["perplexity"] == pytest.approx(torch.tensor(report[key]["loss"]).exp().item(), rel=1e-5)
        assert "accuracy" not in report[key]
    assert report["macs_reduction"] > 1.0
    assert all({"loss", "perplexity", "seconds"} <= set(s) for s in report["stages"].values())
    assert set(report["samples"]) == {"dense", "compact"} and all(len(t) > 50 for t in report["samples"].values())
    assert set(report["export"]["files"]) == {"weights.pt", "spec.json", "model.torchscript.pt", "model.pt2",
                                              "model.onnx"}  # fmt: skip
    for key in ("torchscript_max_abs_diff", "torch_export_max_abs_diff", "reload_max_abs_diff", "onnx_max_abs_diff"):
        assert report["export"][key] < 1e-4, key
    history = (finished / "metrics" / "finetune.csv").read_text().splitlines()[0]
    assert "train_loss" in history and "test_perplexity" in history


def test_onnx_export_takes_other_batch_and_sequence_lengths(finished):
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(finished / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    scripted = torch.jit.load(str(finished / "export" / "model.torchscript.pt"))
    for batch, length in ((1, 5), (3, 16)):
        ids = torch.randint(0, 10, (batch, length))
        (logits,) = session.run(None, {"input": ids.numpy()})
        assert logits.shape[:2] == (batch, length)
        torch.testing.assert_close(torch.from_numpy(logits), scripted(ids), rtol=1e-4, atol=1e-4)


def test_torchscript_export_runs_without_svdtrain(finished):
    script = f"""
import sys, torch
sys.modules["svdtrain"] = None
model = torch.jit.load(r"{finished / 'export' / 'model.torchscript.pt'}")
print(tuple(model(torch.zeros(2, 7, dtype=torch.long)).shape[:2]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "(2, 7)", result.stderr[-2000:]


def test_resume_of_a_language_model_run_reaches_the_same_result(tmp_path, text_file, die_in_third_epoch,
                                                               assert_same_final_model):
    extra = ("--svd-epochs", "2")
    interrupted = tmp_path / "interrupted"
    assert _run(interrupted, text_file, *extra) == 130
    die_in_third_epoch()  # train normally from here on
    assert _run(interrupted, text_file, *extra, "--resume") == 0
    reference = tmp_path / "reference"
    assert _run(reference, text_file, *extra) == 0
    assert_same_final_model(reference, interrupted)
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (reference, interrupted))
    assert ra["compact"] == rb["compact"] and ra["samples"] == rb["samples"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "/no/such/file.txt"], "/no/such/file.txt"),
        (["--model", "resnet20"], "model 'resnet20' does not serve task language_modeling (it serves classification)"),
        (["--block-length", "100000"], "fewer than one block"),
        (["--dataset", "text_word"], "is a file, not a folder"),
    ],
)
def test_bad_language_model_input_is_one_line(tmp_path, text_file, capsys, extra, message):
    assert _run(tmp_path / "out", text_file, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out" / "report.json").exists()


def test_empty_text_file_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert _run(tmp_path / "out", empty) == 2
    err = capsys.readouterr().err.strip()
    assert "empty" in err and len(err.splitlines()) == 1, err


def test_a_hugging_face_causal_lm_from_its_config_runs_through_the_pipeline(tmp_path, text_file):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(vocab_size=256, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    config.save_pretrained(tmp_path / "gpt2")
    out = tmp_path / "run"
    assert _run(out, text_file, "--model", f"hf:{tmp_path / 'gpt2' / 'config.json'}", "--dataset", "text_byte",
                "--export-onnx", "false") == 0  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    assert report["metric"] == "loss" and report["macs_reduction"] > 1.0
    assert any(layer["name"].endswith("attn.c_attn.weight") for layer in report["layers"])  # GPT-2's Conv1D


def test_a_hugging_face_config_with_too_small_a_vocabulary_is_one_line(tmp_path, text_file, capsys):
    transformers = pytest.importorskip("transformers")
    transformers.GPT2Config(vocab_size=100, n_positions=16, n_embd=16, n_layer=1, n_head=2).save_pretrained(tmp_path)
    capsys.readouterr()  # what transformers says of the config made here (its token ids are out of vocabulary)
    assert _run(tmp_path / "out", text_file, "--model", f"hf:{tmp_path / 'config.json'}", "--dataset", "text_byte") == 2
    err = capsys.readouterr().err.strip()
    assert "vocab_size 100 is smaller than the data's 256 tokens" in err and len(err.splitlines()) == 1
