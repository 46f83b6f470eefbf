"""STaR: Self-Taught Reasoner (Zelikman et al. 2022, Algorithm 1).

    M_0 = M
    for n = 1..N:
        sample rationales r_i from M_{n-1} for every problem x_i
        for each wrong one: rationalize, sampling from M_{n-1} with the answer given as a hint
        D_n = correct rationales  ∪  correct rationalizations (saved *without* the hint)
        M_n = finetune(M, D_n)        # from the original M; steps grow 20% per round
    stop when held-out accuracy stops improving

Options beyond the paper, from Lee et al. 2025 (needed at tiny scale): continue from M_{n-1}
(`from_base: false`), keep every earlier round's data (`accumulate: true`), and grow the
training difficulty each round (task `grow_digits`).
"""

from __future__ import annotations

from pydantic import Field

from selfalign.config import RunConfig, Strict
from selfalign.errors import InputError
from selfalign.filters import first_correct
from selfalign.loop import Loop, mean_accuracy, scaled_steps
from selfalign.records import sft_record
from selfalign.tasks.base import Task

SUMMARY = "Self-Taught Reasoner: keep correct rationales, rationalize failures with the answer as a hint."


class StarParams(Strict):
    rounds: int = Field(5, gt=0, description="outer iterations N")
    rationalize: bool = Field(True, description="retry failures with the answer given as a hint")
    from_base: bool = Field(True, description="fine-tune the original model each round (paper); false continues")
    accumulate: bool = Field(False, description="train on all rounds' data so far instead of D_n alone")
    step_growth: float = Field(0.2, ge=0, description="training steps grow by this fraction per round")
    max_per_problem: int = Field(1, gt=0, description="correct rationales kept per problem")
    patience: int = Field(1, ge=1, description="stop after this many rounds without held-out improvement")
    target: str | None = Field(None, description="eval difficulty that decides early stopping (default: mean)")


PARAMS = StarParams


def validate(p: StarParams, task: Task, cfg: RunConfig) -> None:
    sets = task.eval_sets()
    if p.target is not None and p.target not in sets:
        raise InputError("<config>", f"no eval set '{p.target}' (have: {', '.join(sets)})", field="params.target")


def run(loop: Loop) -> None:
    p: StarParams = loop.params
    base = model = loop.base
    best = mean_accuracy(loop.evaluate(0, model), p.target)
    stale, data = 0, []
    for n in range(1, p.rounds + 1):
        problems = loop.task.train_problems(n, loop.cfg.seed)
        samples = loop.sample(n, "samples", model, problems, filter="correct")
        kept = first_correct(samples, p.max_per_problem)

        if p.rationalize:
            solved = {r["problem_id"] for r in kept}
            failed = [q for q in problems if q.id not in solved]
            hinted = loop.sample(
                n, "rationalize", model, failed, prompts=[loop.task.hint(q) for q in failed], filter="correct"
            )
            kept += first_correct(hinted, 1)

        data = (data if p.accumulate else []) + [sft_record(r) for r in kept]
        steps = scaled_steps(loop.cfg.training.steps, n, p.step_growth)
        model = loop.train(n, base if p.from_base else model, data, steps)

        metrics = loop.evaluate(n, model, train_records=len(data), rationalized=sum(r["hinted"] for r in kept))
        score = mean_accuracy(metrics, p.target)
        stale = 0 if score > best else stale + 1
        best = max(best, score)
        if stale >= p.patience:
            break
