"""The pieces every recipe round is made of: sample, train, evaluate, each a resumable stage.

A recipe file reads like its paper's algorithm box and calls these; all file layout, seeding,
provenance and resume live here.

    run/
      config.yaml  manifest.json  metrics.jsonl
      round-000/eval.jsonl                       (the starting model)
      round-001/samples.jsonl  train.jsonl  checkpoint/  eval.jsonl
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from pydantic import BaseModel

from selfalign.config import RunConfig, TrainingConfig, validate_params
from selfalign.errors import InputError
from selfalign.evaluation.best_of_n import step_quality
from selfalign.evaluation.metrics import accuracy_by_difficulty, by_problem, maj_at_k, mean_pass_at_k
from selfalign.generation import SamplingParams, make_sampler
from selfalign.models.loading import Policy, load_policy, resolve_model_path
from selfalign.models.prm import ProcessRewardModel, load_process_reward_model
from selfalign.models.reward import RewardModel, load_reward_model
from selfalign.pairs import load_pairs
from selfalign.records import read_jsonl, write_jsonl
from selfalign.run import Run
from selfalign.scoring.base import Scorer
from selfalign.scoring.verifiers import ProcessScorer
from selfalign.stepwise import CLASSES, good_steps
from selfalign.tasks.base import Problem, Task
from selfalign.training.pairwise import train_pairwise
from selfalign.training.reward import pair_accuracy
from selfalign.training.spa import judge_pair
from selfalign.training.trainer import train_sft

Fit = Callable[..., list[dict]]  # (policy, records, training cfg, out dir, seed=, steps=, desc=) -> log

P = TypeVar("P", bound=BaseModel)


def round_dir(n: int) -> str:
    return f"round-{n:03d}"


@dataclass
class Loop:
    cfg: RunConfig
    run: Run
    task: Task
    metric_rows: list[dict] = field(default_factory=list)  # one per evaluated round, mirrored to metrics.jsonl

    @property
    def base(self) -> str:
        return resolve_model_path(self.cfg.model.path)

    def params(self, schema: type[P]) -> P:
        return validate_params(schema, self.cfg)

    def load(self, model: str, trainable: bool = False) -> Policy:
        # LoRA adapters are added only to a model about to be trained from a full checkpoint.
        return load_policy(model, lora=self.cfg.model.lora if trainable else None, dtype=self.cfg.model.dtype)

    def load_reward_model(self, model: str, trainable: bool = False) -> RewardModel:
        return load_reward_model(model, lora=self.cfg.model.lora if trainable else None, dtype=self.cfg.model.dtype)

    def load_prm(self, model: str, trainable: bool = False, num_labels: int = 2) -> ProcessRewardModel:
        lora = self.cfg.model.lora if trainable else None
        return load_process_reward_model(model, num_labels, lora=lora, dtype=self.cfg.model.dtype)

    def model_name(self, model: str) -> str:
        """How provenance names a model: relative to the run when it is one of the run's checkpoints."""
        try:
            return str(Path(model).relative_to(self.run.root))
        except ValueError:
            return self.cfg.model.path if model == self.base else model

    # -- sampling -----------------------------------------------------------------------------
    def sample(
        self,
        round: int,
        name: str,
        model: str,
        problems: list[Problem],
        prompts: list[str] | None = None,
        n: int | None = None,
        temperature: float | None = None,
        filter: str = "none",
        prefills: list[str] | None = None,
    ) -> list[dict]:
        """Stage `round-XXX/<name>`: n samples per problem, graded by the task checker.

        `prompts` overrides what the model sees (e.g. STaR's hinted prompts); records always keep
        the problem's own prompt, so a rationale is saved as if no hint had been given. `prefills`
        forces each response's start; the graded completion is prefill + continuation.
        """
        stage = f"{round_dir(round)}/{name}"
        path = self.run.path(round_dir(round), f"{name}.jsonl")
        s = self.cfg.sampling
        params = SamplingParams(
            n=n or s.n,
            temperature=s.temperature if temperature is None else temperature,
            top_p=s.top_p,
            max_new_tokens=s.max_new_tokens,
            seed=self.run.seed(stage),
        )

        def work() -> dict:
            policy = self.load(model)
            sampler = make_sampler(s.backend, policy, s.batch_size)
            gens = sampler.generate(prompts or [p.prompt for p in problems], params, desc=stage, prefills=prefills)
            prov = self.run.provenance(
                round,
                self.model_name(model),
                stage=stage,
                sampler={"backend": s.backend, **params.as_dict()},
                scorer=f"checker:{self.task.name}",
                filter=filter,
            )
            hinted = prompts is not None
            records = [
                self._graded(problems[g.prompt_index], g, prov, hinted, prefills and prefills[g.prompt_index])
                for g in gens
            ]
            write_jsonl(path, records)
            return {"records": len(records), "correct": sum(r["correct"] for r in records)}

        self.run.stage(stage, work)
        return read_jsonl(path)

    def _graded(self, problem: Problem, g: Any, provenance: dict, hinted: bool, prefill: str | None = None) -> dict:
        completion = (prefill or "") + g.text
        check = self.task.check(problem, completion)
        return {
            "id": f"{problem.id}#{g.sample_index}",
            "problem_id": problem.id,
            "prompt": problem.prompt,
            "completion": completion,
            "difficulty": problem.difficulty,
            "gold": problem.answer,
            "answer": check.answer,
            "correct": check.correct,
            "reward": check.score,
            "first_error": check.first_error,
            "n_tokens": g.n_tokens,
            "finished": g.finished,
            "hinted": hinted,
            "provenance": provenance,
        }

    # -- training -----------------------------------------------------------------------------
    def train(
        self,
        round: int,
        init: str,
        records: list[dict],
        steps: int | None = None,
        fit: Fit | None = None,
        load: Callable[..., Policy] | None = None,
        name: str = "train",
        lr: float | None = None,
    ) -> str:
        """Stage `round-XXX/<name>`: write <name>.jsonl, fine-tune `init` on it, return the checkpoint path
        (`checkpoint`, or `<name>` when a round trains several models).

        `fit` is the trainer (SFT by default; `self.fit_pairs` for preference pairs), `load` how
        `init` is loaded (a causal LM by default; `load_reward_model` for a reward model) and `lr`
        replaces training.lr for this model.
        """
        rd = self.run.path(round_dir(round))
        ckpt = rd / ("checkpoint" if name == "train" else name)
        stage = f"{round_dir(round)}/{name}"
        steps = steps or self.cfg.training.steps
        training = self.cfg.training if lr is None else self.cfg.training.model_copy(update={"lr": lr})

        def work() -> dict:
            if self.run.state.is_main_process:
                write_jsonl(rd / f"{name}.jsonl", records)
            policy = (load or self.load)(init, trainable=True)
            fit_model = fit or train_sft
            log = fit_model(policy, records, training, ckpt, seed=self.run.seed(stage), steps=steps, desc=stage)
            return {
                "records": len(records),
                "steps": steps,
                "lr": training.lr,
                "init": self.model_name(init),
                "final_loss": log[-1]["loss"],
            }

        if records:
            self.run.stage(stage, work, all_ranks=True)
            return str(ckpt)
        self.run.stage(stage, lambda: {"records": 0, "skipped": "no training records"})
        return init

    def fit_pairs(self, policy: Policy, pairs: list[dict], cfg: TrainingConfig, out: Path, **kw: Any) -> list[dict]:
        """The preference trainer with this run's `preference` settings, as a `fit` for `train`."""
        return train_pairwise(policy, pairs, cfg, self.cfg.preference, out, **kw)

    def pairs(self, round: int, source: str) -> list[dict]:
        """Stage `round-XXX/pairs`: the task's gold-labelled pairs (`seed`/`all`) or a validated JSONL file."""
        stage = f"{round_dir(round)}/pairs"
        path = self.run.path(round_dir(round), "pairs.jsonl")

        def work() -> dict:
            pairs, skipped = load_preference_source(self.task, source)
            write_jsonl(path, pairs)
            return {"pairs": len(pairs), "source": source, "skipped": dict(skipped)}

        summary = self.run.stage(stage, work)
        for reason, count in summary.get("skipped", {}).items():
            print(f"{source}: skipped {count} pairs ({reason})")
        return read_jsonl(path)

    def judge(self, round: int, samples: list[dict], problems: list[Problem], scorer: Scorer) -> list[dict]:
        """Stage `round-XXX/pairs`: each prompt's highest- and lowest-scored distinct samples become a
        pair with confidence sigma(r_w - r_l) (SPA's min_max). Where the task has a gold reward the pair
        records whether gold agrees (None on a gold tie), which scores the judge, never the training."""
        stage = f"{round_dir(round)}/pairs"
        path = self.run.path(round_dir(round), "pairs.jsonl")

        def work() -> dict:
            by_id = {p.id: p for p in problems}
            scores = scorer.score([by_id[r["problem_id"]] for r in samples], [r["completion"] for r in samples])
            groups: dict[str, list[tuple[float, dict]]] = {}
            for r, sc in zip(samples, scores):
                groups.setdefault(r["problem_id"], []).append((sc, r))
            ranked = [sorted(g, key=lambda x: -x[0]) for g in groups.values()]  # stable: ties keep sample order
            ends = [(g[0], g[-1]) for g in ranked]
            ends = [(w, lose) for w, lose in ends if w[1]["completion"] != lose[1]["completion"]]  # no preference
            _, confidence = judge_pair(torch.tensor([w[0] for w, _ in ends]), torch.tensor([lo[0] for _, lo in ends]))
            pairs = []
            for ((_, w), (_, lose)), p in zip(ends, confidence.tolist()):
                gold = None if w["reward"] == lose["reward"] else w["reward"] > lose["reward"]
                pairs.append(
                    {
                        "id": w["problem_id"],
                        "prompt": w["prompt"],
                        "chosen": w["completion"],
                        "rejected": lose["completion"],
                        "confidence": p,
                        "gold_agrees": gold,
                        "provenance": {**w["provenance"], "stage": stage, "judge": scorer.name},
                    }
                )
            write_jsonl(path, pairs)
            return {"pairs": len(pairs), "judge": scorer.name, "annotation_accuracy": annotation_accuracy(pairs)}

        self.run.stage(stage, work)
        return read_jsonl(path)

    def score_samples(
        self, round: int, samples: list[dict], problems: list[Problem], scorers: dict[str, Callable[[], Scorer]]
    ) -> list[dict]:
        """Stage `round-XXX/verifier_scores`: every verifier's score of every sample, a list of step scores
        for a process verifier. Each verifier is loaded (`scorers[name]()`) only while it scores."""
        stage = f"{round_dir(round)}/verifier_scores"
        path = self.run.path(round_dir(round), "verifier_scores.jsonl")

        def work() -> dict:
            by_id = {q.id: q for q in problems}
            qs, completions = [by_id[r["problem_id"]] for r in samples], [r["completion"] for r in samples]
            columns = {}
            for name, make in scorers.items():
                scorer = make()
                process = isinstance(scorer, ProcessScorer)
                columns[name] = scorer.step_scores(qs, completions) if process else scorer.score(qs, completions)
            rows = [
                {k: r[k] for k in ("id", "problem_id", "answer", "gold", "correct", "first_error")}
                | {
                    "n_steps": len(self.task.steps(r["completion"])),
                    "scores": {name: col[i] for name, col in columns.items()},
                }
                for i, r in enumerate(samples)
            ]
            write_jsonl(path, rows)
            return {"samples": len(rows), "verifiers": list(scorers)}

        self.run.stage(stage, work)
        return read_jsonl(path)

    def evaluate_pairs(self, round: int, model: str, pairs: list[dict], **extra: Any) -> dict:
        """Stage `round-XXX/pair_eval`: a reward model's accuracy on held-out preference pairs."""
        stage = f"{round_dir(round)}/pair_eval"
        path = self.run.path(round_dir(round), "pair_eval.jsonl")

        def work() -> dict:
            torch.manual_seed(self.run.seed(stage))  # a fresh reward head is drawn reproducibly
            accuracy, rows = pair_accuracy(self.load_reward_model(model), pairs)
            write_jsonl(path, rows)
            return {"pairs": len(rows), "accuracy": accuracy}

        summary = self.run.stage(stage, work)
        metrics = {"round": round, "model": self.model_name(model), "accuracy": {"held-out pairs": summary["accuracy"]}}
        return self._record(metrics, extra)

    def evaluate_steps(
        self, round: int, model: str, records: list[dict], label_kind: Literal["binary", "ternary"], **extra: Any
    ) -> dict:
        """Stage `round-XXX/step_eval`: a PRM's step-label and first-error accuracy on held-out stepwise records
        (a step labelled 0, as PRM800K's neutral, counts as good, as the PRM's score does)."""
        stage = f"{round_dir(round)}/step_eval"
        path = self.run.path(round_dir(round), "step_eval.jsonl")

        def work() -> dict:
            torch.manual_seed(self.run.seed(stage))  # a fresh head is drawn reproducibly
            prm = self.load_prm(model, num_labels=CLASSES[label_kind])
            scores = prm.step_scores([r["prompt"] for r in records], [r["completions"] for r in records])
            rows = [{**r, "scores": s} for r, s in zip(records, scores)]
            write_jsonl(path, rows)
            return step_quality((r["scores"], good_steps(r["labels"], label_kind)) for r in rows)

        summary = self.run.stage(stage, work)
        metrics = {
            "round": round,
            "model": self.model_name(model),
            "accuracy": {"held-out steps": summary["step_accuracy"]},
        }
        return self._record(metrics, {"first_error_accuracy": summary["first_error_accuracy"], **extra})

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, round: int, model: str, **extra: Any) -> dict:
        """Stage `round-XXX/eval` on the held-out sets; returns the round's metrics row."""
        e = self.cfg.eval
        sets = self.task.eval_sets()
        problems = [p for ps in sets.values() for p in ps]
        rows = self.sample(round, "eval", model, problems, n=e.k, temperature=e.temperature)
        metrics: dict[str, Any] = {"round": round, "model": self.model_name(model)}
        metrics["accuracy"] = accuracy_by_difficulty(rows)
        if e.k > 1 and any(p.answer for p in problems):  # pass@k / maj@k need reference answers
            grouped = by_problem(rows)
            for label, ps in sets.items():
                groups = [grouped[p.id] for p in ps]
                metrics.setdefault(f"pass@{e.k}", {})[label] = mean_pass_at_k(groups, e.k)
                metrics.setdefault(f"maj@{e.k}", {})[label] = sum(
                    maj_at_k([r["answer"] for r in g], g[0]["gold"], e.k) for g in groups
                ) / len(groups)
        metrics["mean_tokens"] = sum(r["n_tokens"] for r in rows) / max(1, len(rows))
        if getattr(self.task, "graded", False):  # a real-valued gold reward, not just correctness
            metrics["gold_reward"] = sum(r["reward"] for r in rows) / max(1, len(rows))
            if round > 0:
                start = read_jsonl(self.run.path(round_dir(0), "eval.jsonl"))
                metrics["win_rate"] = win_rate(rows, start)
        return self._record(metrics, extra)

    def _record(self, metrics: dict, extra: dict) -> dict:
        """Add `extra` to the round's metrics row, replace any earlier row of that round, rewrite metrics.jsonl."""
        metrics.update(extra)
        self.metric_rows = [r for r in self.metric_rows if r["round"] != metrics["round"]] + [metrics]
        self.run.write_metrics(self.metric_rows)
        return metrics


def load_preference_source(task: Task, source: str) -> tuple[list[dict], Counter]:
    """`seed`/`all`: the testbed's gold pairs; anything else is a preference JSONL path."""
    if source in ("seed", "all"):
        if not hasattr(task, "pairs"):
            raise InputError(
                "<config>", f"task '{task.name}' has no gold pairs; give a JSONL path", field="params.data"
            )
        return task.pairs(source), Counter()
    return load_pairs(source)


def annotation_accuracy(pairs: list[dict]) -> float | None:
    """Share of judged pairs whose label gold agrees with (gold ties left out); None when none can be scored."""
    judged = [p["gold_agrees"] for p in pairs if p.get("gold_agrees") is not None]
    return sum(judged) / len(judged) if judged else None


def win_rate(rows: list[dict], baseline: list[dict]) -> float:
    """Share of eval samples whose gold reward beats the starting model's on the same prompt and
    sample index (ties count half): the gold win rate against round 0 (the SFT model)."""
    base = {r["id"]: r["reward"] for r in baseline}
    wins = [0.5 if r["reward"] == base[r["id"]] else float(r["reward"] > base[r["id"]]) for r in rows]
    return sum(wins) / max(1, len(wins))


def scaled_steps(base: int, round: int, growth: float) -> int:
    """STaR's schedule: the step budget grows by `growth` (20%) per outer iteration."""
    return math.ceil(base * (1 + growth) ** (round - 1))


def mean_accuracy(metrics: dict, target: str | None = None) -> float:
    acc = metrics["accuracy"]
    if target is not None:
        return acc[target]
    return sum(acc.values()) / len(acc)
