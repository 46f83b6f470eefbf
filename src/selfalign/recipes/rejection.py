"""Rejection-sampling SFT (Touvron et al. 2023, Llama 2 §3.2.3).

    for round t = 1..T:
        sample K responses per prompt from M_{t-1}
        score them; the best per prompt joins the pool, replacing a worse one from an earlier round
        M_t = finetune(init, pool)
The scorer is any `Scorer`: here the task checker; a reward model plugs in the same way.
"""

from __future__ import annotations

from pydantic import Field

from selfalign.config import Strict
from selfalign.recipes.loop import Loop
from selfalign.recipes.star import sft_record
from selfalign.scoring.base import CheckerScorer

SUMMARY = "Rejection sampling (Llama 2): best of K by a scorer becomes the SFT target, pooled across rounds."


class RejectionParams(Strict):
    rounds: int = Field(2, gt=0)
    k: int = Field(8, gt=0, description="samples per prompt")
    temperature: float | None = Field(None, ge=0, description="sampling temperature (default: sampling.temperature)")
    min_score: float | None = Field(0.5, description="drop best samples scoring below this (None keeps all)")
    from_base: bool = Field(True, description="train the base model on the pool each round; false continues")


PARAMS = RejectionParams


def run(loop: Loop) -> None:
    p = loop.params(PARAMS)
    scorer = CheckerScorer(loop.task)
    base = model = loop.base
    loop.evaluate(0, model)
    pool: dict[str, tuple[float, dict]] = {}
    for t in range(1, p.rounds + 1):
        problems = loop.task.train_problems(t, loop.cfg.seed)
        by_id = {q.id: q for q in problems}
        samples = loop.sample(t, "samples", model, problems, n=p.k, temperature=p.temperature, filter=f"best-of-{p.k}")
        scores = scorer.score([by_id[r["problem_id"]] for r in samples], [r["completion"] for r in samples])
        for r, s in zip(samples, scores):
            if (p.min_score is None or s >= p.min_score) and s > pool.get(r["problem_id"], (float("-inf"),))[0]:
                pool[r["problem_id"]] = (
                    s,
                    {**r, "provenance": {**r["provenance"], "scorer": scorer.name, "score": s}},
                )
        data = [sft_record(r) for _, r in pool.values()]
        model = loop.train(t, base if p.from_base else model, data)
        loop.evaluate(t, model, train_records=len(data))
