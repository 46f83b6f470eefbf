from __future__ import annotations

from selfalign.config import ArithmeticTaskConfig, IfevalTaskConfig, JsonlTaskConfig, LettersTaskConfig
from selfalign.tasks.base import Check, Problem, Task

__all__ = ["Check", "Problem", "Task", "make_task"]


def make_task(cfg: ArithmeticTaskConfig | JsonlTaskConfig | LettersTaskConfig | IfevalTaskConfig) -> Task:
    if isinstance(cfg, ArithmeticTaskConfig):
        from selfalign.tasks.arithmetic import ArithmeticTask

        return ArithmeticTask(cfg)
    if isinstance(cfg, LettersTaskConfig):
        from selfalign.tasks.letters import LettersTask

        return LettersTask(cfg)
    if isinstance(cfg, IfevalTaskConfig):
        from selfalign.tasks.ifeval import IfevalTask

        return IfevalTask(cfg)
    from selfalign.tasks.jsonl import JsonlTask

    return JsonlTask(cfg)
