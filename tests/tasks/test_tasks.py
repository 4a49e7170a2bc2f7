"""The task seam: losses and metrics of both tasks, the loop and distillation through it."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from svdtrain.tasks import Classification, LanguageModeling, task_named
from svdtrain.train import Distillation, Regularization, distillation_loss, evaluate, evaluate_metrics, train_epoch


def test_language_modeling_loss_is_token_mean_cross_entropy():
    logits, targets = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    task = LanguageModeling()
    expected = sum(F.cross_entropy(logits[b, t:t + 1], targets[b, t:t + 1]) for b in range(2) for t in range(5)) / 10
    torch.testing.assert_close(task.loss(logits, targets), expected)


def test_metrics_are_exact_over_batches_not_means_of_batch_means():
    task = LanguageModeling()
    batches = [(torch.randn(3, 4, 6), torch.randint(0, 6, (3, 4))), (torch.randn(1, 4, 6), torch.randint(0, 6, (1, 4)))]
    sums = {}
    for logits, targets in batches:
        for k, v in task.stats(logits, targets, task.loss(logits, targets)).items():
            sums[k] = sums.get(k, 0) + v
    metrics = task.summarize(sums)
    everything = task.loss(torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])).item()
    assert metrics["loss"] == pytest.approx(everything, rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(math.exp(everything), rel=1e-6)
    assert metrics["bits_per_token"] == pytest.approx(everything / math.log(2), rel=1e-6)


def test_classification_metrics():
    task = Classification()
    logits, targets = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]]), torch.tensor([0, 1, 1])
    metrics = task.summarize(task.stats(logits, targets, task.loss(logits, targets)))
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["loss"] == pytest.approx(F.cross_entropy(logits, targets).item())


def test_task_direction_and_names():
    assert Classification().better(0.9, 0.8) and LanguageModeling().better(1.2, 1.3)
    assert task_named("language_modeling").metric == "loss"
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        task_named("nope")


class TinyLM(nn.Module):
    def __init__(self, vocab=11):
        super().__init__()
        self.embed, self.out = nn.Embedding(vocab, 16), nn.Linear(16, vocab)

    def forward(self, ids):
        return self.out(torch.tanh(self.embed(ids)))  # (B, T, V)


def _lm_batches(n=4):
    torch.manual_seed(1)
    data = torch.arange(0, 11).repeat(20)  # a deterministic cycle: next token = token + 1 mod 11
    return [(data[i * 10:(i + 1) * 10].view(2, 5), data[i * 10 + 1:(i + 1) * 10 + 1].view(2, 5)) for i in range(n)]


def test_train_epoch_on_a_language_model_lowers_the_loss():
    model, task = TinyLM(), LanguageModeling()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    before = evaluate(model, _lm_batches(), task=task)
    for _ in range(20):
        metrics = train_epoch(model, _lm_batches(), optimizer, Regularization(), task=task)
    assert set(metrics) == {"loss", "perplexity", "bits_per_token"}
    assert evaluate(model, _lm_batches(), task=task) < before / 4
    assert evaluate_metrics(model, _lm_batches(), task=task)["perplexity"] < math.exp(before / 4)


def test_distillation_on_sequence_logits_counts_each_prediction_once():
    student, teacher = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    rows = [distillation_loss(student[b, t][None], teacher[b, t][None], 2.0) for b in range(2) for t in range(3)]
    torch.testing.assert_close(distillation_loss(student, teacher, 2.0), torch.stack(rows).mean())
    assert distillation_loss(teacher, teacher, 2.0).abs() < 1e-6


def test_distillation_through_the_loop_on_a_language_model():
    teacher, student, task = TinyLM(), TinyLM(), LanguageModeling()
    optimizer = torch.optim.Adam(student.parameters(), lr=0.05)
    distill = Distillation(teacher, weight=1.0, temperature=1.0)
    gap = lambda: sum(distillation_loss(student(x), teacher(x), 1.0).item() for x, _ in _lm_batches())  # noqa: E731
    before = gap()
    for _ in range(10):
        train_epoch(student, _lm_batches(), optimizer, distillation=distill, task=task)
    assert gap() < before / 2


def test_grad_clip_bounds_the_update():
    model, task = TinyLM(), LanguageModeling()
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    train_epoch(model, _lm_batches(1), optimizer, task=task, grad_clip=1e-3)
    moved = torch.cat([(p.detach() - s).flatten() for p, s in zip(model.parameters(), start)]).norm()
    assert 0 < moved <= 1e-3 + 1e-9  # one SGD step of lr 1 moves by the clipped gradient's norm
