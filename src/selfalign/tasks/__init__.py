from __future__ import annotations

from selfalign.config import ArithmeticTaskConfig, JsonlTaskConfig
from selfalign.tasks.base import Check, Problem, Task

__all__ = ["Check", "Problem", "Task", "make_task"]


def make_task(cfg: ArithmeticTaskConfig | JsonlTaskConfig) -> Task:
    if isinstance(cfg, ArithmeticTaskConfig):
        from selfalign.tasks.arithmetic import ArithmeticTask

        return ArithmeticTask(cfg)
    from selfalign.tasks.jsonl import JsonlTask

    return JsonlTask(cfg)
