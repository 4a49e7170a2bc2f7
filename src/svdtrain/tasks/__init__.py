"""Tasks: how a batch becomes a loss and an evaluation becomes metrics. The training loop,
distillation, the pipeline and the report ask the task and know nothing of images or tokens;
a new task is one new file and its entry here."""

from svdtrain.tasks.base import Task, to_device
from svdtrain.tasks.classification import Classification
from svdtrain.tasks.language_modeling import LanguageModeling
from svdtrain.tasks.masked_lm import MaskedLanguageModeling

TASKS: dict[str, type[Task]] = {task.name: task for task in (Classification, LanguageModeling, MaskedLanguageModeling)}


def task_named(name: str, classes: int = 0) -> Task:
    """The task called ``name``, for data whose labels or tokens range over ``classes``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks are {', '.join(TASKS)}")
    return TASKS[name](classes)


__all__ = ["TASKS", "Classification", "LanguageModeling", "MaskedLanguageModeling", "Task", "task_named", "to_device"]
