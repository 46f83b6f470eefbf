"""A user task from a JSONL file of question/answer records (GSM8K-style `#### 42` answers by default)."""

from __future__ import annotations

import re
from itertools import islice
from pathlib import Path
from types import UnionType

from selfalign.config import JsonlTaskConfig
from selfalign.errors import InputError
from selfalign.records import iter_records
from selfalign.tasks.base import Check, Problem, Task


def _normalize(ans: str) -> str:
    return ans.strip().replace(",", "").rstrip(".")


def _plain(value: object, types: type | UnionType) -> bool:
    """A non-empty scalar of `types` (a bool is not a number here)."""
    return not isinstance(value, bool) and isinstance(value, types) and bool(str(value).strip())


class JsonlTask(Task):
    name = "jsonl"

    def __init__(self, cfg: JsonlTaskConfig):
        self.cfg = cfg
        try:
            self._pattern = re.compile(cfg.answer_pattern)
        except re.error as e:
            raise InputError("<config>", f"invalid regex: {e}", field="task.answer_pattern") from None
        self._train = self._load(cfg.train_path, cfg.n_train)
        self._eval = self._load(cfg.eval_path, cfg.n_eval) if cfg.eval_path else []

    def _load(self, path: str, limit: int | None) -> list[Problem]:
        """The file's problems (the first `limit`, streamed); a repeated id or question is an error, since problems
        are keyed by id and a repeat would silently merge two records into one problem."""
        q, a = self.cfg.question_field, self.cfg.answer_field
        problems: list[Problem] = []
        ids: dict[str, int] = {}
        questions: dict[str, int] = {}
        for lineno, rec in islice(iter_records(path, required=(q, a), streaming=limit is not None), limit):
            for key in (q, a):
                if not _plain(rec[key], str | int | float):
                    raise InputError(path, "must be a non-empty string", line=lineno, field=key)
            gold = self.extract(str(rec[a]))
            if not gold:
                raise InputError(path, f"no final answer matches {self.cfg.answer_pattern!r}", line=lineno, field=a)
            for key in ("id", "difficulty"):
                if key in rec and not _plain(rec[key], str | int):
                    msg = f"must be a non-empty string or an integer, got {rec[key]!r}"
                    raise InputError(path, msg, line=lineno, field=key)
            question = str(rec[q])
            pid = str(rec.get("id", f"{Path(path).stem}-{lineno}"))
            if pid in ids:
                raise InputError(path, f"duplicate id {pid!r} (first on line {ids[pid]})", line=lineno, field="id")
            if question in questions:
                msg = f"duplicate question (first on line {questions[question]}); give each problem once"
                raise InputError(path, msg, line=lineno, field=q)
            ids[pid], questions[question] = lineno, lineno
            problems.append(
                Problem(
                    id=pid,
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
        found = m.group(1) if m.groups() else m.group(0)
        return None if found is None else _normalize(found)  # an optional group may match nothing

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
