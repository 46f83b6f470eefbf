"""A user task from a JSONL file of question/answer records (GSM8K-style `#### 42` answers by default)."""

from __future__ import annotations

import re
from pathlib import Path

from selfalign.config import JsonlTaskConfig
from selfalign.errors import InputError
from selfalign.records import iter_jsonl
from selfalign.tasks.base import Check, Problem


def _normalize(ans: str) -> str:
    return ans.strip().replace(",", "").rstrip(".")


class JsonlTask:
    name = "jsonl"

    def __init__(self, cfg: JsonlTaskConfig):
        self.cfg = cfg
        try:
            self._pattern = re.compile(cfg.answer_pattern)
        except re.error as e:
            raise InputError("<config>", f"invalid regex: {e}", field="task.answer_pattern") from None
        self._train = self._load(cfg.train_path)
        self._eval = self._load(cfg.eval_path) if cfg.eval_path else []

    def _load(self, path: str) -> list[Problem]:
        q, a = self.cfg.question_field, self.cfg.answer_field
        problems = []
        for lineno, rec in iter_jsonl(path, required=(q, a)):
            for key in (q, a):
                if not isinstance(rec[key], str | int | float) or str(rec[key]).strip() == "":
                    raise InputError(path, "must be a non-empty string", line=lineno, field=key)
            gold = self.extract(str(rec[a]))
            if gold is None:
                raise InputError(path, f"no final answer matches {self.cfg.answer_pattern!r}", line=lineno, field=a)
            question = str(rec[q])
            problems.append(
                Problem(
                    id=str(rec.get("id", f"{Path(path).stem}-{lineno}")),
                    prompt=self.cfg.prompt_template.format(question=question),
                    answer=gold,
                    difficulty=str(rec.get("difficulty", "all")),
                    meta={"question": question, "solution": str(rec[a])},
                )
            )
        if not problems:
            raise InputError(path, "file has no records")
        return problems

    def extract(self, text: str) -> str | None:
        m = self._pattern.search(text)
        if not m:
            return None
        return _normalize(m.group(1) if m.groups() else m.group(0))

    def train_problems(self, round: int, seed: int) -> list[Problem]:
        return self._train

    def eval_sets(self) -> dict[str, list[Problem]]:
        sets: dict[str, list[Problem]] = {}
        for p in self._eval:
            sets.setdefault(str(p.difficulty), []).append(p)
        return sets

    def check(self, problem: Problem, completion: str) -> Check:
        got = self.extract(completion)
        return Check(correct=got is not None and got == problem.answer, answer=got, n_steps=len(self.steps(completion)))

    def hint(self, problem: Problem) -> str:
        return self.cfg.hint_template.format(question=problem.meta["question"], answer=problem.answer)

    def steps(self, completion: str) -> list[str]:
        return [s.strip() for s in completion.split("\n") if s.strip()]
