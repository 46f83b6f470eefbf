"""RFT: rejection-sampling fine-tuning (Yuan et al. 2023, "Scaling relationship ...").

sample k reasoning paths per training question from the SFT model
keep the paths whose final answer is correct (optionally: only those not cut off at max_new_tokens)
deduplicate: distinct step sequences only, the farthest by edit distance within a key
fine-tune the base (SFT) model on the union of distinct paths
"""

from __future__ import annotations

import random

from pydantic import Field

from selfalign.config import Strict
from selfalign.evaluation.metrics import by_problem
from selfalign.filters import DedupMode, dedup_paths
from selfalign.loop import Loop
from selfalign.records import sft_record

SUMMARY = "Rejection-sampling fine-tuning: k samples, keep distinct correct paths, train the base model."


class RftParams(Strict):
    k: int = Field(8, gt=0, description="samples per question")
    dedup: DedupMode = Field("farthest", description="none | steps | farthest (RFT's edit-distance pick)")
    finished_only: bool = Field(
        False, description="drop paths cut off at sampling.max_new_tokens (as targets they would teach to stop there)"
    )
    max_records: int | None = Field(
        None, gt=0, description="train on a seeded random subset of this size (for equal-data comparisons)"
    )


PARAMS = RftParams


def run(loop: Loop) -> None:
    p: RftParams = loop.params
    base = loop.base
    loop.evaluate(0, base)

    problems = loop.task.train_problems(1, loop.cfg.seed)
    samples = loop.sample(
        1, "samples", base, problems, n=p.k, filter=f"correct{'+finished' * p.finished_only}+dedup:{p.dedup}"
    )
    correct = by_problem(r for r in samples if r["correct"] and (r["finished"] or not p.finished_only))
    paths = []
    for rows in correct.values():
        keep = dedup_paths([r["completion"] for r in rows], loop.task.steps, p.dedup)
        paths += [rows[i] for i in keep]
    data = [sft_record(r) for r in paths]
    if p.max_records is not None and len(data) > p.max_records:
        data = random.Random(loop.cfg.seed).sample(data, p.max_records)  # a prefix would favour early problems

    model = loop.train(1, base, data)
    loop.evaluate(1, model, train_records=len(data), correct_samples=sum(len(v) for v in correct.values()))
