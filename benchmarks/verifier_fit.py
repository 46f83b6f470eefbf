"""Can a verifier learn the arithmetic testbed's labels? Fitting diagnostics on a finished verifier-testbed run.

Trains a PRM (or ORM) from the run's SFT model on the run's checker-labelled D_VER, as configs/vstar.yaml does,
then reports:
- the training loss over the last tenth of the steps, against a constant predictor's (the labels' entropy);
- AUC on the run's test samples: how often a good step (PRM) or a correct sample (ORM) outscores a bad one,
  overall and by the kind of the first error (0.5 = the verifier knows nothing);
- with --records, the same AUC on the training records themselves: can the verifier fit them at all?
- with --synthetic N, a PRM trained instead on N gold solutions to fresh problems, half of them cut at one injected
  error (an operand digit, the carry or a sum digit replaced): can it learn to check steps from plentiful
  negatives? AUC on held-out synthetic records too.

    python benchmarks/verifier_fit.py runs/bench-verifiers/vstar-s0                      # as the benchmark trains it
    python benchmarks/verifier_fit.py runs/bench-verifiers/vstar-s0 --group-by-length    # length-grouped batches
    python benchmarks/verifier_fit.py runs/bench-verifiers/vstar-s0 --records 64 --steps 300   # fit 64 records?
    python benchmarks/verifier_fit.py runs/bench-verifiers/vstar-s0 --synthetic 20000 --steps 1500 --lr 1e-4
"""

from __future__ import annotations

import argparse
import math
import random
import re
from functools import partial
from pathlib import Path

from accelerate.utils import set_seed

from selfalign.batching import pad_right
from selfalign.config import load_config, validate_params
from selfalign.evaluation.selection import auc
from selfalign.models.prm import load_process_reward_model
from selfalign.models.reward import load_reward_model
from selfalign.recipes.vstar import VStarParams
from selfalign.records import read_jsonl
from selfalign.stepwise import step_labels_from_check
from selfalign.tasks import make_task
from selfalign.tasks.arithmetic import STEP, solution_steps
from selfalign.training.orm_prm import collate_outcomes, encode_outcomes, encode_steps, orm_loss, prm_loss
from selfalign.training.trainer import Records, train_and_save


def error_kind(prompt: str, steps: list[str], first_error: int | None) -> str:
    """What went wrong at the first error of an arithmetic solution (see selfalign.tasks.arithmetic)."""
    if first_error is None:
        return "none (wrong answer, right steps)"
    if first_error >= len(steps):
        return "step missing"
    m = STEP.match(steps[first_error])
    if not m:
        return "malformed step"
    col_a, a, col_b, b, carry, total = m.groups()
    digits = dict(re.findall(r"([a-zA-Z])(\d)", prompt))
    if col_a not in digits or col_b not in digits:
        return "column not in the prompt"
    if (digits[col_a], digits[col_b]) != (a, b):
        return "digit copied wrong"
    if int(a) + int(b) + int(carry) != int(total):
        return "wrong sum"
    return "wrong carry or column"


def synthetic_records(cfg, n: int, round: int, seed: int) -> list[dict]:
    """Checker-labelled stepwise records of gold solutions, half of them cut at one injected error."""
    rng = random.Random(f"{seed}-{round}")
    records = []
    for p in make_task(cfg.task.model_copy(update={"n_train": n})).train_problems(round, seed):
        steps = solution_steps(p)
        if rng.random() < 0.5:
            records.append({"prompt": p.prompt, "completions": steps, "labels": [True] * len(steps)})
            continue
        i = rng.randrange(len(steps))
        at = rng.choice([1, 4, 6, 8, 9])  # operand a, operand b, carry, tens and ones of the sum
        wrong = rng.choice([d for d in ("01" if at == 6 else "0123456789") if d != steps[i][at]])
        bad = steps[i][:at] + wrong + steps[i][at + 1 :]
        records.append({"prompt": p.prompt, "completions": steps[:i] + [bad], "labels": [True] * i + [False]})
    return records


def entropy(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -(p * math.log(p) + (1 - p) * math.log(1 - p))


def with_error(record: dict) -> bool:
    return not all(record["labels"]) if "labels" in record else not record["correct"]


def ranked(scores: list[float], good: list[bool], kinds: list) -> dict[str, tuple[int, float | None]]:
    """AUC of good against all bad items, and against the bad items of each kind: {kind: (bad items, AUC)}."""
    good_scores = [s for s, g in zip(scores, good) if g]
    out = {"all": (good.count(False), auc(scores, good))}
    for kind in sorted({k for k, g in zip(kinds, good) if not g}):
        bad = [s for s, g, k in zip(scores, good, kinds) if not g and k == kind]
        out[kind] = (len(bad), auc(good_scores + bad, [True] * len(good_scores) + [False] * len(bad)))
    return out


def step_items(prm, rows: list[dict], steps: list[list[str]], labels: list[list[bool]], kinds: list[str]):
    """Per-step (score, good, kind of the error) of each row's labelled steps."""
    scores = prm.step_scores([r["prompt"] for r in rows], steps)
    kinds = kinds or [None] * len(rows)
    items = [(s, g, k) for sc, lab, k in zip(scores, labels, kinds) for s, g in zip(sc, lab)]
    return [s for s, _, _ in items], [g for _, g, _ in items], [None if g else k for _, g, k in items]


def stepwise_auc(prm, records: list[dict]) -> dict[str, tuple[int, float | None]]:
    """AUC of the PRM's step scores on labelled stepwise records, good steps against bad."""
    items = step_items(prm, records, [r["completions"] for r in records], [r["labels"] for r in records], [])
    return {"all": ranked(*items)["all"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished run of configs/vstar.yaml")
    ap.add_argument("--verifier", choices=["prm", "orm"], default="prm", help="which verifier to train")
    ap.add_argument("--steps", type=int, help="training steps (default: the run's params.verifier_steps)")
    ap.add_argument("--lr", type=float, help="learning rate (default: the run's params.verifier_lr or training.lr)")
    ap.add_argument("--group-by-length", action="store_true", help="batch records of similar length together")
    ap.add_argument("--records", type=int, help="train on this many D_VER records, half of them with an error")
    ap.add_argument("--synthetic", type=int, help="train a PRM on this many synthetic records instead of D_VER")
    ap.add_argument("--seed", type=int, default=0, help="training seed and record subset")
    args = ap.parse_args()

    cfg = load_config(args.run / "config.yaml")
    params = validate_params(VStarParams, cfg)
    rd = max(args.run.glob("round-*/prm.jsonl")).parent  # the verifiers train in the last round
    records = read_jsonl(rd / f"{args.verifier}.jsonl")
    if args.synthetic:
        if args.verifier != "prm":
            ap.error("--synthetic trains a PRM")
        records = synthetic_records(cfg, args.synthetic, round=0, seed=args.seed)
    if args.records:
        rng = random.Random(args.seed)
        bad, good = [r for r in records if with_error(r)], [r for r in records if not with_error(r)]
        half = args.records // 2
        records = rng.sample(bad, half) + rng.sample(good, args.records - half)
    training = cfg.training.model_copy(
        update={"lr": args.lr or params.verifier_lr or cfg.training.lr, "group_by_length": args.group_by_length}
    )
    steps = args.steps or params.verifier_steps or cfg.training.steps
    set_seed(args.seed)  # the fresh head's initialisation

    if args.verifier == "prm":
        model = load_process_reward_model(cfg.model.path)
        data, loss, collate = (
            encode_steps(model, records),
            prm_loss,
            partial(pad_right, pad_id=model.tokenizer.pad_token_id),
        )
        labels = [bool(x) for r in records for x in r["labels"]]
    else:
        model = load_reward_model(cfg.model.path)
        collate = partial(collate_outcomes, pad_id=model.tokenizer.pad_token_id)
        data, loss, labels = encode_outcomes(model, records), orm_loss, [bool(r["correct"]) for r in records]
    lengths = [len(x["input_ids"]) for x in data] if args.group_by_length else None
    source = Records(data, collate, lengths)
    log = train_and_save(model, source, loss, training, None, seed=args.seed, steps=steps, desc="fitting")
    tail = log[-max(1, len(log) // 10) :]
    print(
        f"{args.verifier} on {len(records)} {'synthetic records' if args.synthetic else f'records of {rd}'}: "
        f"{steps} steps, lr {training.lr}, "
        f"group_by_length={args.group_by_length}"
    )
    print(
        f"training loss, last tenth of the steps: {sum(e['loss'] for e in tail) / len(tail):.3f} "
        f"(a constant predictor: {entropy(labels.count(False) / len(labels)):.3f})"
    )

    test = read_jsonl(rd / "test_samples.jsonl")
    task = make_task(cfg.task)
    test_steps = [task.steps(r["completion"]) for r in test]
    kinds = [error_kind(r["prompt"], s, r["first_error"]) for r, s in zip(test, test_steps)]
    if args.verifier == "prm":
        step_labels = [step_labels_from_check(len(s), r["first_error"], "binary") for r, s in zip(test, test_steps)]
        results = {"test steps": ranked(*step_items(model, test, test_steps, step_labels, kinds))}
        if args.records:
            results["training steps"] = stepwise_auc(model, records)
        if args.synthetic:
            held_out = synthetic_records(cfg, max(1, args.synthetic // 10), round=-1, seed=args.seed)
            results["held-out synthetic steps"] = stepwise_auc(model, held_out)
    else:
        scores = model.rewards([r["prompt"] for r in test], [r["completion"] for r in test])
        results = {"test samples": ranked(scores, [r["correct"] for r in test], kinds)}
        if args.records:
            scores = model.rewards([r["prompt"] for r in records], [r["completion"] for r in records])
            results["training samples"] = {"all": ranked(scores, labels, [None] * len(records))["all"]}
    print("\n| items | bad ones | AUC |\n|---|---|---|")
    for name, by_kind in results.items():
        for kind, (n, value) in by_kind.items():
            print(f"| {name}: {kind} | {n} | {'-' if value is None else f'{value:.3f}'} |")


if __name__ == "__main__":
    main()
