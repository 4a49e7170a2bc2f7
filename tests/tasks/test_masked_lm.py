"""The third task, masked LM with a Hugging Face encoder: masking, dict batches through the loop
and distillation, and the whole pipeline."""

import json

import pytest
import torch

import svdtrain
from svdtrain.cli import main
from svdtrain.export import load_compact
from svdtrain.models import build_model
from svdtrain.tasks import MaskedLanguageModeling, task_named
from svdtrain.tasks.masked_lm import IGNORED
from svdtrain.train import Distillation, Regularization, evaluate_metrics, train_epoch

pytest.importorskip("transformers")
TEXT = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.\n" * 40


def test_masking_chooses_about_15_percent_mostly_as_the_mask_token_and_repeats_with_a_seed():
    task = task_named("masked_lm", classes=30)
    ids = torch.randint(0, 30, (256, 64), generator=torch.Generator().manual_seed(0))
    batch = task.prepare((ids, ids), torch.Generator().manual_seed(1))
    chosen = batch["labels"] != IGNORED
    assert 0.12 < chosen.float().mean() < 0.18
    assert torch.equal(batch["labels"][chosen], ids[chosen])
    assert torch.equal(batch["input_ids"][~chosen], ids[~chosen])  # the rest is read as it is
    masked = (batch["input_ids"] == 30) & chosen
    assert 0.75 < masked.sum() / chosen.sum() < 0.85 and not (batch["input_ids"][~chosen] == 30).any()
    again = [task.prepare((ids, ids), torch.Generator().manual_seed(0)) for _ in range(2)]
    assert torch.equal(again[0]["input_ids"], again[1]["input_ids"])
    with pytest.raises(ValueError, match="give its size"):
        MaskedLanguageModeling().prepare((ids, ids))


def test_a_batch_with_nothing_chosen_has_zero_loss_not_nan():
    task = task_named("masked_lm", classes=5)
    loss = task.loss(torch.randn(2, 3, 6), torch.full((2, 3), IGNORED))
    assert loss.item() == 0.0


def test_dict_batches_train_through_the_loop_with_distillation_and_evaluate_the_same_every_time():
    """A Hugging Face-style dict batch goes through train_epoch, the teacher sees the same masked input."""
    torch.manual_seed(0)
    task = task_named("masked_lm", classes=20)
    teacher = build_model("tiny_bert", 20, 16)
    student = svdtrain.decompose(build_model("tiny_bert", 20, 16))
    batches = [task.prepare((ids, ids)) for ids in torch.randint(0, 20, (6, 8, 16))]
    assert all(isinstance(batch, dict) for batch in batches)
    before = evaluate_metrics(student, batches, task=task)
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    for _ in range(3):
        metrics = train_epoch(student, batches, optimizer, Regularization(1.0, 1e-3, "hoyer"), task=task,
                              distillation=Distillation(teacher, 0.5, 1.0))  # fmt: skip
    assert set(metrics) == {"loss", "perplexity", "masked_accuracy"}
    after = evaluate_metrics(student, batches, task=task)
    assert after["loss"] < before["loss"]
    raw = [(ids, ids) for ids in torch.randint(0, 20, (2, 8, 16))]  # masked in evaluation by a seeded draw
    assert evaluate_metrics(student, raw, task=task) == evaluate_metrics(student, raw, task=task)


def test_a_masked_lm_run_goes_through_every_stage_and_exports(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(TEXT)
    out = tmp_path / "run"
    assert main(["run", "--preset", "smoke-mlm", "--data", str(text), "--out", str(out), "--export-onnx", "false"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "masked_lm" and report["metric"] == "loss"
    assert report["macs_reduction"] >= 1.2 and "samples" not in report  # a masked LM continues no text
    assert set(report["compact"]) >= {"loss", "perplexity", "masked_accuracy"}
    small = load_compact(out / "export")
    ids = torch.randint(0, 10, (2, 32))
    assert small(ids).shape[:2] == (2, 32)
