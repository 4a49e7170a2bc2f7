"""Knowledge distillation from the dense model: the pruned student matches its teacher's logits.

Beyond the paper. After pruning, the dense model that was decomposed is still at hand and
knows more than the hard labels say (which wrong classes are close); matching its softened
outputs recovers accuracy faster than labels alone in a short fine-tune (Hinton et al., 2015).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher_T || student_T), mean over predictions; T^2 keeps gradients the size of
    the hard loss. Logits are (..., classes): (B, C) for classification, (B, T, V) for a
    language model, whose B*T next-token predictions each count once."""
    classes = student_logits.shape[-1]
    log_student = F.log_softmax(student_logits.reshape(-1, classes) / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits.reshape(-1, classes) / temperature, dim=-1)
    kl = F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def check_distillation(weight: float, temperature: float) -> None:
    if not 0 <= weight <= 1:
        raise ValueError(f"distill_weight must be in [0, 1], got {weight!r}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"distill_temperature must be > 0, got {temperature!r}")


@dataclass
class Distillation:
    """Mixes the task loss with the teacher's: (1 - weight) * CE + weight * distillation loss."""

    teacher: nn.Module
    weight: float = 0.9
    temperature: float = 4.0

    def __post_init__(self) -> None:
        check_distillation(self.weight, self.temperature)
        self.teacher.eval().requires_grad_(False)

    def loss(self, inputs: torch.Tensor, logits: torch.Tensor, task_loss: torch.Tensor) -> torch.Tensor:
        """The mixed loss, the teacher called on ``inputs`` (a model taking one tensor)."""
        with torch.no_grad():
            teacher_logits = self.teacher(inputs)
        return self.mix(teacher_logits, logits, task_loss)

    def mix(self, teacher_logits: torch.Tensor, logits: torch.Tensor, task_loss: torch.Tensor) -> torch.Tensor:
        """The mixed loss from the teacher's logits (a task calls the teacher as it calls the model)."""
        soft = distillation_loss(logits, teacher_logits, self.temperature)
        return (1 - self.weight) * task_loss + self.weight * soft
