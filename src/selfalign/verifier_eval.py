"""`selfalign eval --verifier`: score N samples per problem with trained verifiers and read out best-of-N curves.

The samples are either drawn from the evaluated model or taken from a run (any samples JSONL a recipe wrote,
e.g. `round-002/test_samples.jsonl`), so verifiers trained in one run can be compared on another's samples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from selfalign.errors import InputError
from selfalign.evaluation.best_of_n import selection_metrics
from selfalign.loop import Loop
from selfalign.models import resolve_model_path
from selfalign.records import Problem, iter_jsonl
from selfalign.scoring.base import Scorer
from selfalign.scoring.factory import ScorerKind, build_scorer
from selfalign.tasks.base import Task

Kind = Literal["orm", "prm", "implicit"]  # the verifier kinds --verifier accepts
KINDS: tuple[str, ...] = get_args(Kind)
SAMPLE_FIELDS = ("id", "problem_id", "prompt", "completion", "answer", "gold", "correct", "first_error")


def parse_verifiers(specs: list[str]) -> dict[str, tuple[Kind, str]]:
    """`KIND:PATH` specs -> {name: (kind, resolved path)}; a repeated kind is named kind-2, kind-3, ..."""
    out, seen = {}, Counter()
    for spec in specs:
        kind, sep, path = spec.partition(":")
        if not sep or kind not in KINDS or not path:
            msg = f"expected KIND:PATH with KIND one of {', '.join(KINDS)}, got {spec!r}"
            raise InputError("<command line>", msg, field="--verifier")
        seen[kind] += 1
        out[kind if seen[kind] == 1 else f"{kind}-{seen[kind]}"] = (kind, resolve_model_path(path))
    return out


@dataclass(frozen=True)
class Samples:
    """A run's graded samples, and the problems they answer (rebuilt from the records: id, prompt, gold)."""

    path: str
    rows: list[dict]
    problems: list[Problem]


def read_samples(path: str) -> Samples:
    rows = [rec for _, rec in iter_jsonl(path, required=SAMPLE_FIELDS)]
    if not rows:
        raise InputError(path, "no samples")
    problems = {r["problem_id"]: Problem(r["problem_id"], r["prompt"], r["gold"]) for r in rows}
    return Samples(path, rows, list(problems.values()))


def selection_set(task: Task, name: str | None, where: str = "<config>", field: str = "params.test") -> str:
    """The eval set verifiers select on: `name`, or the task's last one."""
    sets = task.eval_sets()
    if name is not None and name not in sets:
        raise InputError(where, f"no eval set '{name}' (have: {', '.join(sets)})", field=field)
    return name or list(sets)[-1]


Factories = dict[str, Callable[[], Scorer]]


def scorer_factories(loop: Loop, verifiers: dict[str, tuple[ScorerKind, str]], reference: str) -> Factories:
    """Each verifier as a deferred scorer, so only one model is in memory at a time."""

    def make(kind: ScorerKind, path: str) -> Callable[[], Scorer]:
        return lambda: build_scorer(
            kind, path, loop.load, loop.task, reference=reference, engine_for=loop.logprob_engine
        )

    return {name: make(kind, path) for name, (kind, path) in verifiers.items()}


def outcome_verifiers(verifiers: dict[str, tuple[ScorerKind, str]]) -> list[str]:
    """The verifiers whose scores are probabilities (ORMs), so they can weight a vote."""
    return [name for name, (kind, _) in verifiers.items() if kind == "orm"]


def verifier_eval(
    loop: Loop,
    verifiers: dict[str, tuple[Kind, str]],
    reference: str,
    samples: Samples | None,
    test: str | None,
    n: int,
    temperature: float,
) -> dict:
    """Best-of-N metrics (see `selection_metrics`) of `verifiers` on a run's samples, or on n fresh samples per
    problem of eval set `test` (default: the last) from the evaluated model at `temperature`."""
    if samples is not None:
        rows, problems = samples.rows, samples.problems
        label = test or Path(samples.path).stem
        n = min(Counter(r["problem_id"] for r in rows).values())
    else:
        label = selection_set(loop.task, test, "<command line>", "--set")
        problems = loop.task.eval_sets()[label]
        rows = loop.sample(0, "test_samples", loop.base, problems, n=n, temperature=temperature)
    scored = loop.score_samples(0, rows, problems, scorer_factories(loop, verifiers, reference))
    source = samples.path if samples is not None else "round-000/test_samples.jsonl"
    return {"samples": source} | selection_metrics(scored, label, n, outcome_verifiers(verifiers))
