"""Tasks: how a batch becomes a loss and an evaluation becomes metrics. The training loop,
distillation, the pipeline and the report ask the task and know nothing of images or tokens;
a new task is one new file."""

from svdtrain.tasks.base import Task
from svdtrain.tasks.classification import Classification
from svdtrain.tasks.language_modeling import LanguageModeling

TASKS: dict[str, type[Task]] = {"classification": Classification, "language_modeling": LanguageModeling}


def task_named(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; valid tasks are {', '.join(TASKS)}")
    return TASKS[name]()


__all__ = ["TASKS", "Classification", "LanguageModeling", "Task", "task_named"]
