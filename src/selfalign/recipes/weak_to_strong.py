"""Weak-to-strong generalization (Burns et al. 2023): can a strong student trained on a weak supervisor's labels
do better than the supervisor?

    ladder M_1 < ... < M_n, each pretrained (LM objective) on one shared corpus      (`tasks.weak_to_strong`)
    for each task with ground truth, split into half A, half B and a test set:
        gt_i   = M_i fine-tuned on A's ground truth; its test accuracy is M_i's weak score and its ceiling
        w_i    = gt_i's soft labels on B                       (or a user's weak-label file, `weak_labels`)
        for every teacher i < student j, for each loss (naive cross-entropy; auxiliary confidence loss):
            s_ij = M_j fine-tuned on w_i over B
            PGR_ij = (acc(s_ij) - acc(gt_i)) / (acc(gt_j) - acc(gt_i))
        bootstrapping: M_1's labels train M_2, whose labels on B train M_3, ... up to M_n

Every classifier is a zero-initialised scalar head on the last token (`training.classifier`); the confidence loss
follows the official code (`training.objectives.weak_to_strong_loss`). Each task's results are one metrics row.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from selfalign.config import RunConfig, Strict
from selfalign.errors import InputError
from selfalign.evaluation.metrics import performance_gap_recovered
from selfalign.loop import Loop
from selfalign.models import Policy
from selfalign.models.factory import tiny_llama
from selfalign.models.tokenizer import char_tokenizer
from selfalign.records import load_weak_labels
from selfalign.tasks import weak_to_strong as w2s
from selfalign.tasks.base import Task

SUMMARY = "Weak-to-strong generalization: a model ladder, naive / confidence-loss / bootstrapped students, PGR."

Dataset = Literal["arith_check", "letters_rm", "facts"]


class Size(Strict):
    hidden: int = Field(gt=0, description="hidden size")
    layers: int = Field(gt=0, description="transformer layers")
    heads: int = Field(2, gt=0, description="attention heads (must divide hidden)")

    @property
    def name(self) -> str:
        return f"h{self.hidden}-l{self.layers}"


class WeakToStrongParams(Strict):
    datasets: list[Dataset] = Field(list(w2s.DATASETS), min_length=1, description="tasks (tasks.weak_to_strong)")
    ladder: list[Size] = Field(
        [Size(hidden=16, layers=1), Size(hidden=32, layers=2), Size(hidden=64, layers=2), Size(hidden=128, layers=2)],
        min_length=2,
        description="model sizes M_1 < ... < M_n, smallest first",
    )
    corpus: int = Field(30000, gt=0, description="pretraining texts (a quarter per domain)")
    pretrain_steps: int = Field(2000, gt=0, description="LM pretraining steps of every size")
    pretrain_lr: float = Field(3e-3, gt=0, description="LM pretraining learning rate")
    n: int = Field(1000, gt=1, description="records in each of half A and half B")
    n_test: int = Field(1000, gt=0, description="test records")
    epochs: float = Field(
        8.0, gt=0, description="fine-tuning epochs over a half (official: 2, on far longer pretrained models)"
    )
    losses: list[Literal["xent", "logconf"]] = Field(
        ["xent", "logconf"], min_length=1, description="student losses: xent = naive, logconf = confidence loss"
    )
    aux_coef: float = Field(0.5, ge=0, le=1, description="alpha_max of the confidence loss (official aux_coef)")
    warmup_frac: float = Field(0.1, ge=0, le=1, description="share of training over which alpha warms up")
    bootstrap: bool = Field(True, description="also train the bootstrapping chain M_1 -> M_2 -> ... -> M_n")
    weak_labels: dict[Dataset, str] = Field(
        {}, description="dataset -> JSONL of {id, label} for half B: every size also learns from these labels"
    )

    @model_validator(mode="after")
    def _ladder(self) -> WeakToStrongParams:
        for s in self.ladder:
            if s.hidden % s.heads:
                raise ValueError(f"ladder size {s.name}: heads ({s.heads}) must divide hidden ({s.hidden})")
        if len({s.name for s in self.ladder}) < len(self.ladder):
            raise ValueError("ladder sizes must differ")
        return self


PARAMS = WeakToStrongParams
EVALUATES_TASK = False  # its tasks are the weak-to-strong testbeds, not the run's task


def validate(p: WeakToStrongParams, task: Task, cfg: RunConfig) -> None:
    for name, path in p.weak_labels.items():
        if name not in p.datasets:
            raise InputError("<config>", f"weak labels given for '{name}', not in params.datasets", field="params")
        load_weak_labels(path, [r["id"] for r in w2s.splits(name, p.n, p.n_test, cfg.seed)[1]])


def ladder_model(size: Size) -> Policy:
    tokenizer = char_tokenizer(w2s.ALPHABET)
    model = tiny_llama(tokenizer, hidden=size.hidden, layers=size.layers, heads=size.heads)
    return Policy(model=model, tokenizer=tokenizer, source=f"fresh {size.name}")


def relabel(records: list[dict], labels: list[float]) -> list[dict]:
    return [{**r, "label": y} for r, y in zip(records, labels)]


def run(loop: Loop) -> None:
    p: WeakToStrongParams = loop.params
    corpus = w2s.corpus(p.corpus, loop.cfg.seed)
    lm = {}
    for s in p.ladder:
        init = loop.init_model(0, f"init-{s.name}", lambda s=s: ladder_model(s))
        lm[s.name] = loop.train(0, init, corpus, steps=p.pretrain_steps, name=f"pretrain-{s.name}", lr=p.pretrain_lr)

    for d, name in enumerate(p.datasets, start=1):
        loop.record(d, task_round(loop, d, name, lm))


def task_round(loop: Loop, d: int, name: str, lm: dict[str, str]) -> dict:
    """Round d: every ground-truth model, student and bootstrapping chain on one task; its metrics row."""
    p: WeakToStrongParams = loop.params
    sizes = [s.name for s in p.ladder]
    half_a, half_b, test = w2s.splits(name, p.n, p.n_test, loop.cfg.seed)
    steps = math.ceil(p.epochs * p.n / loop.cfg.training.batch_size)

    def fit(init: str, records: list[dict], tag: str, loss: str = "xent") -> tuple[str, float]:
        options = {"loss": loss, "aux_coef": p.aux_coef, "warmup_frac": p.warmup_frac}
        model = loop.train(d, init, records, steps=steps, trainer="classifier", name=tag, **options)
        return model, loop.classify(d, f"{tag}-test", model, test)[1]

    # ground truth on A: each size's weak score and ceiling; its soft labels on B supervise the larger sizes
    acc, labels, label_acc = {}, {}, {}
    for s in sizes:
        model, acc[s] = fit(lm[s], half_a, f"{s}-gt")
        rows, label_acc[s] = loop.classify(d, f"{s}-gt-labels", model, half_b)
        labels[s] = [r["prediction"] for r in rows]

    students, models = {loss: {} for loss in p.losses}, {loss: {} for loss in p.losses}
    for loss in p.losses:
        for i, t in enumerate(sizes):
            for s in sizes[i + 1 :]:
                pair = f"{t}>{s}"
                models[loss][pair], students[loss][pair] = fit(
                    lm[s], relabel(half_b, labels[t]), f"{t}-to-{s}-{loss}", loss
                )
    pgr = {
        loss: {
            pair: performance_gap_recovered(acc[pair.split(">")[0]], a, acc[pair.split(">")[1]])
            for pair, a in r.items()
        }
        for loss, r in students.items()
    }

    boot = {}
    if p.bootstrap and len(sizes) > 2:  # the chain's first link is the direct student M_1 -> M_2
        for loss in p.losses:
            model, chain = models[loss][f"{sizes[0]}>{sizes[1]}"], {}
            for prev, s in zip(sizes[1:], sizes[2:]):
                rows = loop.classify(d, f"boot-{prev}-{loss}-labels", model, half_b)[0]
                model, chain[s] = fit(lm[s], relabel(half_b, [r["prediction"] for r in rows]), f"boot-{s}-{loss}", loss)
            boot[loss] = chain

    external = {}
    if name in p.weak_labels:
        given = load_weak_labels(p.weak_labels[name], [r["id"] for r in half_b])
        records = relabel(half_b, [given[r["id"]] for r in half_b])
        label_acc["file"] = sum((given[r["id"]] > 0.5) == (r["label"] > 0.5) for r in half_b) / len(half_b)
        for s in sizes:
            external[f"file>{s}"] = fit(lm[s], records, f"file-to-{s}")[1]

    return {
        "dataset": name,
        "accuracy": {f"ceiling {s}": acc[s] for s in sizes},
        "weak_to_strong": students,
        "pgr": pgr,
        "bootstrap": boot,
        "weak_label_accuracy": label_acc,
        "from_weak_label_file": external,
        "sizes": sizes,
    }
