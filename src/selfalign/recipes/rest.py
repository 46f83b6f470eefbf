"""ReST-EM (Singh et al. 2023, "Beyond human data").

for t = 1..T:
    E-step: sample N solutions per problem from M_{t-1}; keep at most m correct per problem
    M-step: M_t = finetune(M_base, kept)        # always from the base model
"""

from __future__ import annotations

from pydantic import Field

from selfalign.config import Strict
from selfalign.filters import first_correct
from selfalign.loop import Loop
from selfalign.records import sft_record

SUMMARY = "ReST-EM: E-step samples N per problem keeping at most m correct, M-step fine-tunes the base model."


class RestParams(Strict):
    iterations: int = Field(3, gt=0, description="EM iterations T")
    max_per_problem: int = Field(4, gt=0, description="m: correct solutions kept per problem (balances the data)")


PARAMS = RestParams


def run(loop: Loop) -> None:
    p: RestParams = loop.params
    base = model = loop.base
    loop.evaluate(0, model)
    for t in range(1, p.iterations + 1):
        problems = loop.task.train_problems(t, loop.cfg.seed)
        samples = loop.sample(t, "samples", model, problems, filter=f"correct,max{p.max_per_problem}")
        data = [sft_record(r) for r in first_correct(samples, p.max_per_problem)]
        model = loop.train(t, base, data)
        loop.evaluate(t, model, train_records=len(data))
