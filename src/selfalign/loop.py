"""The stages every recipe round is made of: sample, pair, score, train, evaluate. Each is a resumable stage of
the run (`Run.stage` / `Run.jsonl_stage`), so a recipe file reads like its paper's algorithm box and never
touches files, seeds or provenance itself.

    run/
      config.yaml  manifest.json  metrics.jsonl
      round-000/eval.jsonl                       (the starting model)
      round-001/samples.jsonl  train.jsonl  checkpoint/  eval.jsonl
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel

from selfalign.config import RunConfig
from selfalign.errors import InputError
from selfalign.evaluation.best_of_n import step_quality
from selfalign.evaluation.metrics import annotation_accuracy, by_problem, judge_metrics, policy_metrics
from selfalign.generation import Generation, SamplingParams, make_sampler
from selfalign.generation.server import stop_server
from selfalign.models import ModelKind, Policy, load, resolve_model_path
from selfalign.records import Problem, load_pairs, pair_record, read_jsonl, sample_record, write_jsonl
from selfalign.run import Run, round_dir
from selfalign.scoring.base import Scorer
from selfalign.scoring.pairing import min_max_pairs
from selfalign.scoring.pairwise import PairwiseJudge, label_ids, next_label_probs
from selfalign.scoring.verifiers import ProcessScorer
from selfalign.stepwise import CLASSES, good_steps
from selfalign.tasks.base import Task
from selfalign.training.classifier import class_probabilities
from selfalign.training.quiet_star import direct_answer_eval
from selfalign.training.registry import TRAINERS
from selfalign.training.reward import pair_accuracy
from selfalign.training.trainer import save_checkpoint


@dataclass
class Loop:
    cfg: RunConfig
    run: Run
    task: Task
    params: BaseModel | None = None  # the recipe's `params:` section, validated once against its schema
    metric_rows: list[dict] = field(default_factory=list)  # one per evaluated round, mirrored to metrics.jsonl

    @property
    def base(self) -> str:
        return resolve_model_path(self.cfg.model.path)

    def load(self, kind: ModelKind, path: str, trainable: bool = False, num_labels: int = 2) -> Policy:
        """The run's dtype; LoRA adapters only on a model about to be trained from a full checkpoint. The model's
        `source` (how scorers name it in provenance) is relative to the run, so a moved run still compares equal."""
        lora = self.cfg.model.lora if trainable else None
        model = load(kind, path, lora=lora, dtype=self.cfg.model.dtype, num_labels=num_labels)
        model.source = self.model_name(path)
        return model

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
        hinted: bool | None = None,
    ) -> list[dict]:
        """Stage `round-XXX/<name>`: n samples per problem, graded by the task checker.

        `prompts` overrides what the model sees (e.g. STaR's hinted prompts); records always keep
        the problem's own prompt, so a rationale is saved as if no hint had been given, and are marked `hinted`
        (unless `hinted=False`: an instruction that gives nothing away, as HIR's). `prefills` forces each
        response's start; the graded completion is prefill + continuation.
        """
        hinted = prompts is not None if hinted is None else hinted
        stage = f"{round_dir(round)}/{name}"
        params = self._sampling(stage, n or self.cfg.sampling.n, temperature)

        def produce() -> tuple[list[dict], dict]:
            gens, prov = self._generate(round, stage, model, prompts or [p.prompt for p in problems], params, prefills)
            prov |= {"scorer": f"checker:{self.task.name}", "filter": filter}
            records = [self._graded(problems[g.prompt_index], g, prov, hinted, prefills) for g in gens]
            return records, {"records": len(records), "correct": sum(r["correct"] for r in records)}

        return self.run.jsonl_stage(round, name, produce)[0]

    def generate(
        self,
        round: int,
        name: str,
        model: str,
        sources: list[str],
        prompts: list[str],
        n: int = 1,
        temperature: float = 0.0,
        max_new_tokens: int | None = None,
        prefills: list[str] | None = None,
    ) -> list[dict]:
        """Stage `round-XXX/<name>`: n ungraded responses to each free-form prompt (a critique, a refinement),
        `sources[i]` naming what prompt i is about; the recipe grades them. With `prefills`, the response is
        prefill + continuation."""
        stage = f"{round_dir(round)}/{name}"
        params = self._sampling(stage, n, temperature, max_new_tokens)

        def produce() -> tuple[list[dict], dict]:
            gens, prov = self._generate(round, stage, model, prompts, params, prefills)
            records = [
                {
                    "id": f"{sources[g.prompt_index]}#{g.sample_index}",
                    "source": sources[g.prompt_index],
                    "prompt": prompts[g.prompt_index],
                    "completion": (prefills[g.prompt_index] if prefills else "") + g.text,
                    "n_tokens": g.n_tokens,
                    "finished": g.finished,
                    "provenance": prov,
                }
                for g in gens
            ]
            return records, {"records": len(records)}

        return self.run.jsonl_stage(round, name, produce)[0]

    def _sampling(
        self, seed_name: str, n: int, temperature: float | None, max_new_tokens: int | None = None
    ) -> SamplingParams:
        """The run's sampler settings for n responses per prompt, seeded by `seed_name`; a temperature or length
        of None is the run's `sampling` one."""
        s = self.cfg.sampling
        return SamplingParams(
            n=n,
            temperature=s.temperature if temperature is None else temperature,
            top_p=s.top_p,
            max_new_tokens=max_new_tokens or s.max_new_tokens,
            seed=self.run.seed(seed_name),
        )

    def _generate(
        self, round: int, stage: str, model: str, prompts: list[str], params: SamplingParams, prefills: list[str] | None
    ) -> tuple[list[Generation], dict]:
        s = self.cfg.sampling
        policy = self.load("policy", model)
        sampler = make_sampler(
            s.backend, policy, s.batch_size, s.server, model, self.cfg.model.path, s.dtype, s.threads
        )
        gens = sampler.generate(prompts, params, desc=stage, prefills=prefills)
        sampling = {"backend": sampler.backend, **params.as_dict()}
        return gens, self.run.provenance(round, self.model_name(model), stage=stage, sampler=sampling)

    def judge_engine(self, policy: Policy, model: str) -> Callable[[list[list[int]]], list[dict[int, float]]] | None:
        """With the vllm or openai backend, its next-token log-probs for the judge `policy`, loaded from checkpoint
        `model` (LLM judges read their verdicts from them); with hf, None: judges run the model in this process."""
        s = self.cfg.sampling
        if s.backend == "hf":
            return None
        sampler = make_sampler(s.backend, policy, s.batch_size, s.server, model, self.cfg.model.path, s.dtype)
        return sampler.next_token_logprobs

    def logprob_engine(self, policy: Policy) -> Callable[[list[list[int]], list[int]], list[float]] | None:
        """With the vllm backend, its engine's summed response log-probs for `policy` (the implicit reward reads
        them there); None otherwise: the model runs in this process."""
        s = self.cfg.sampling
        if s.backend != "vllm":
            return None
        return make_sampler(s.backend, policy, s.batch_size, dtype=s.dtype).sequence_logprobs

    def _graded(
        self, problem: Problem, g: Generation, provenance: dict, hinted: bool, prefills: list[str] | None
    ) -> dict:
        completion = (prefills[g.prompt_index] if prefills else "") + g.text
        check = self.task.check(problem, completion)
        return sample_record(problem, g.sample_index, completion, check, g.n_tokens, g.finished, hinted, provenance)

    # -- training -----------------------------------------------------------------------------
    def rollout_args(
        self, round: int, problems: list[Problem], scorer: Scorer, n: int, temperature: float | None
    ) -> dict[str, Any]:
        """What every online trainer's rollout source (`selfalign.rollout`) takes in `round`: the prompts, task and
        scorer, sampling parameters seeded by the round (n responses per prompt), the sampler settings, and the
        reference checkpoint (a full fine-tune's KL reference stays the starting model; under LoRA it is the
        model with adapters off)."""
        s = self.cfg.sampling
        params = self._sampling(f"{round_dir(round)}/rollout", n, temperature)
        return {
            "problems": problems,
            "task": self.task,
            "scorer": scorer,
            "params": params,
            "grad_accum": self.cfg.training.grad_accum,
            "backend": s.backend,
            "batch_size": s.batch_size,
            "dtype": s.dtype,
            "threads": s.threads,
            "reference_path": None if self.cfg.model.lora else self.base,
        }

    def train(
        self,
        round: int,
        init: str,
        records: list[dict],
        steps: int | None = None,
        trainer: str = "sft",
        name: str = "train",
        lr: float | None = None,
        **options: Any,
    ) -> str:
        """Stage `round-XXX/<name>`: write <name>.jsonl, train `init` on it with the named trainer (see
        `training.registry`), return the checkpoint path (`checkpoint`, or `<name>` when a round trains several
        models). `lr` replaces training.lr for this model; `options` go to the trainer's fit.
        """
        rd = self.run.path(round_dir(round))
        ckpt = rd / ("checkpoint" if name == "train" else name)
        stage = f"{round_dir(round)}/{name}"
        steps = steps or self.cfg.training.steps
        training = self.cfg.training if lr is None else self.cfg.training.model_copy(update={"lr": lr})
        spec = TRAINERS[trainer]
        if spec.preference:
            options = {"pref": self.cfg.preference, **options}

        def work() -> dict:
            if self.run.state.is_main_process:
                write_jsonl(rd / f"{name}.jsonl", records)
            stop_server()  # a server the openai backend started holds memory (a GPU's, under vLLM) that training needs
            seed = self.run.seed(stage)
            torch.manual_seed(seed)  # a fresh head or LoRA adapter is drawn the same way when the stage is redone
            model = self.load(spec.model, init, trainable=True, **spec.load_options(options))
            log = spec.fit(model, records, training, ckpt, seed=seed, steps=steps, desc=stage, **options)
            for entry in log:
                self.run.track({stage: {k: v for k, v in entry.items() if k != "step"}}, step=entry["step"])
            return {
                "records": len(records),
                "steps": steps,
                "lr": training.lr,
                "init": self.model_name(init),
                "final_loss": log[-1]["loss"],
            }

        if records:
            self.run.stage(stage, work, all_ranks=True)
            return _checkpoint_of(stage, ckpt)
        self.run.stage(stage, lambda: {"records": 0, "skipped": "no training records"})
        return init

    def init_model(self, round: int, name: str, make: Callable[[], Policy]) -> str:
        """Stage `round-XXX/<name>`: a model built from scratch (`make`, its weights drawn from the stage's seed),
        saved as a checkpoint to train from."""
        ckpt = self.run.path(round_dir(round), name)
        stage = f"{round_dir(round)}/{name}"

        def work() -> dict:
            torch.manual_seed(self.run.seed(stage))
            model = make()
            save_checkpoint(model, ckpt)
            return {"parameters": sum(p.numel() for p in model.model.parameters())}

        self.run.stage(stage, work)
        return _checkpoint_of(stage, ckpt)

    # -- pairing and scoring ------------------------------------------------------------------
    def pairs(self, round: int, source: str) -> list[dict]:
        """Stage `round-XXX/pairs`: the task's gold-labelled pairs (`seed`/`all`) or a validated JSONL file."""

        def produce() -> tuple[list[dict], dict]:
            pairs, skipped = load_preference_source(self.task, source)
            return pairs, {"pairs": len(pairs), "source": source, "skipped": dict(skipped)}

        pairs, summary = self.run.jsonl_stage(round, "pairs", produce)
        for reason, count in summary.get("skipped", {}).items():
            print(f"{source}: skipped {count} pairs ({reason})")
        return pairs

    def judge(self, round: int, samples: list[dict], problems: list[Problem], scorer: Scorer) -> list[dict]:
        """Stage `round-XXX/pairs`: each prompt's highest- and lowest-scored distinct samples become a pair
        (`scoring.pairing.min_max_pairs`), with the judge's accuracy against gold where the task has one."""
        stage = f"{round_dir(round)}/pairs"

        def produce() -> tuple[list[dict], dict]:
            by_id = {p.id: p for p in problems}
            scores = scorer.score([by_id[r["problem_id"]] for r in samples], [r["completion"] for r in samples])
            pairs = min_max_pairs(samples, scores, scorer.name, stage)
            return pairs, {"pairs": len(pairs), "judge": scorer.name, "annotation_accuracy": annotation_accuracy(pairs)}

        return self.run.jsonl_stage(round, "pairs", produce)[0]

    def label_pairs(
        self,
        round: int,
        samples: list[dict],
        judge: PairwiseJudge | None,
        soft: bool,
        name: str = "pairs",
        flip: float = 0.0,
    ) -> tuple[list[dict], dict]:
        """Stage `round-XXX/<name>`: each prompt's first two distinct samples (a, b), labelled p = P(a better) by
        `judge` (both orders averaged unless its `swap` is off), or by the gold reward when `judge` is None (gold
        ties dropped; with `flip`, each gold label is reversed with that probability: a labeller of known accuracy).
        The preferred one is `chosen`; a soft label keeps epsilon = 1 - max(p, 1 - p) (the DPO loss's per-pair
        label smoothing), a hard one none. Invalid verdicts are dropped. Each pair keeps its label, the judge's
        orders and whether gold agrees; the summary holds the labeller's metrics against gold."""
        stage = f"{round_dir(round)}/{name}"

        def produce() -> tuple[list[dict], dict]:
            ends = []
            for group in by_problem(samples).values():
                first_of: dict[str, dict] = {}
                for r in group:
                    first_of.setdefault(r["completion"], r)
                distinct = list(first_of.values())
                if len(distinct) > 1 and (judge is not None or distinct[0]["reward"] != distinct[1]["reward"]):
                    ends.append((distinct[0], distinct[1]))
            gold = [None if a["reward"] == b["reward"] else float(a["reward"] > b["reward"]) for a, b in ends]
            if judge is None:
                rng = random.Random(self.run.seed(f"{stage}/flip"))
                noisy = [1 - g if rng.random() < flip else g for g in gold if g is not None]
                judged = [{"p": g, "orders": [g, g], "valid": True} for g in noisy]
            else:
                a, b = [a["completion"] for a, _ in ends], [b["completion"] for _, b in ends]
                judged = judge.judgements([a["prompt"] for a, _ in ends], a, b)
            labeller = "gold" if judge is None else judge.name
            pairs = []
            for (a, b), j in zip(ends, judged):
                if not j["valid"]:
                    continue
                w, lose = (a, b) if j["p"] >= 0.5 else (b, a)
                pairs.append(
                    pair_record(
                        w["prompt"],
                        w["completion"],
                        lose["completion"],
                        id=w["problem_id"],
                        label=j["p"],
                        orders=j["orders"],
                        gold_agrees=None if w["reward"] == lose["reward"] else w["reward"] > lose["reward"],
                        provenance={**w["provenance"], "stage": stage, "judge": labeller},
                    )
                    | ({"epsilon": 1 - max(j["p"], 1 - j["p"])} if soft else {})
                )
            return pairs, {"pairs": len(pairs), "judge": labeller, "labeller": judge_metrics(judged, gold)}

        return self.run.jsonl_stage(round, name, produce)

    def rewards(self, round: int, name: str, model: str, prompts: list[str], completions: list[str]) -> list[float]:
        """Stage `round-XXX/<name>`: a reward model's score of each (prompt, completion)."""

        def produce() -> tuple[list[dict], dict]:
            rewards = self.load("reward", model).rewards(prompts, completions, self.cfg.sampling.batch_size)
            return [{"reward": r} for r in rewards], {"records": len(rewards), "model": self.model_name(model)}

        return [r["reward"] for r in self.run.jsonl_stage(round, name, produce)[0]]

    def verdicts(self, round: int, name: str, model: str, prompts: list[str], labels: Sequence[str]) -> list[dict]:
        """Stage `round-XXX/<name>`: after each prompt, the model's next-token probabilities of the single-token
        `labels` renormalised over them (`probs`), and their share of the whole softmax (`label_mass`)."""

        def produce() -> tuple[list[dict], dict]:
            policy = self.load("policy", model)
            read = next_label_probs(policy, prompts, label_ids(policy, labels), self.cfg.sampling.batch_size)
            rows = [{"probs": p, "label_mass": m} for p, m in read]
            return rows, {"records": len(rows), "model": self.model_name(model), "labels": list(labels)}

        return self.run.jsonl_stage(round, name, produce)[0]

    def score_samples(
        self,
        round: int,
        samples: list[dict],
        problems: list[Problem],
        scorers: dict[str, Callable[[], Scorer]],
        name: str = "verifier_scores",
    ) -> list[dict]:
        """Stage `round-XXX/<name>`: every verifier's score of every sample, a list of step scores for a process
        verifier. Each verifier is loaded (`scorers[name]()`) only while it scores."""

        def produce() -> tuple[list[dict], dict]:
            by_id = {q.id: q for q in problems}
            qs, completions = [by_id[r["problem_id"]] for r in samples], [r["completion"] for r in samples]
            columns = {}
            for verifier, make in scorers.items():
                scorer = make()
                process = isinstance(scorer, ProcessScorer)
                columns[verifier] = scorer.step_scores(qs, completions) if process else scorer.score(qs, completions)
            rows = [
                {k: r[k] for k in ("id", "problem_id", "answer", "gold", "correct", "first_error")}
                | {
                    "n_steps": len(self.task.steps(r["completion"])),
                    "scores": {verifier: col[i] for verifier, col in columns.items()},
                }
                for i, r in enumerate(samples)
            ]
            return rows, {"samples": len(rows), "verifiers": list(scorers)}

        return self.run.jsonl_stage(round, name, produce)[0]

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, round: int, model: str, prompt: Callable[[Problem], str] | None = None, **extra: Any) -> dict:
        """Stage `round-XXX/eval` on the held-out sets; returns the round's metrics row. `prompt` makes what the
        model sees from each problem (e.g. with HIR's instruction); its own prompt by default."""
        e = self.cfg.eval
        sets = self.task.eval_sets()
        problems = [p for ps in sets.values() for p in ps]
        prompts = None if prompt is None else [prompt(p) for p in problems]
        rows = self.sample(
            round, "eval", model, problems, prompts=prompts, n=e.k, temperature=e.temperature, hinted=False
        )
        baseline = read_jsonl(self.run.path(round_dir(0), "eval.jsonl")) if round > 0 and self.task.graded else None
        metrics = policy_metrics(rows, sets, e.k, self.task.graded, baseline) | self.task.eval_metrics(rows)
        return self._record({"round": round, "model": self.model_name(model), **metrics}, extra)

    def evaluate_pairs(self, round: int, model: str, pairs: list[dict], **extra: Any) -> dict:
        """Stage `round-XXX/pair_eval`: a reward model's accuracy on held-out preference pairs."""

        def produce() -> tuple[list[dict], dict]:
            torch.manual_seed(self.run.seed(f"{round_dir(round)}/pair_eval"))  # a fresh head is drawn reproducibly
            accuracy, rows = pair_accuracy(self.load("reward", model), pairs)
            return rows, {"pairs": len(rows), "accuracy": accuracy}

        _, summary = self.run.jsonl_stage(round, "pair_eval", produce)
        metrics = {"round": round, "model": self.model_name(model), "accuracy": {"held-out pairs": summary["accuracy"]}}
        return self._record(metrics, extra)

    def evaluate_steps(
        self, round: int, model: str, records: list[dict], label_kind: Literal["binary", "ternary"], **extra: Any
    ) -> dict:
        """Stage `round-XXX/step_eval`: a PRM's step-label and first-error accuracy on held-out stepwise records
        (a step labelled 0, as PRM800K's neutral, counts as good, as the PRM's score does)."""

        def produce() -> tuple[list[dict], dict]:
            torch.manual_seed(self.run.seed(f"{round_dir(round)}/step_eval"))  # a fresh head is drawn reproducibly
            prm = self.load("prm", model, num_labels=CLASSES[label_kind])
            scores = prm.step_scores([r["prompt"] for r in records], [r["completions"] for r in records])
            rows = [{**r, "scores": s} for r, s in zip(records, scores)]
            return rows, step_quality((r["scores"], good_steps(r["labels"], label_kind)) for r in rows)

        _, summary = self.run.jsonl_stage(round, "step_eval", produce)
        metrics = {
            "round": round,
            "model": self.model_name(model),
            "accuracy": {"held-out steps": summary["step_accuracy"]},
        }
        return self._record(metrics, {"first_error_accuracy": summary["first_error_accuracy"], **extra})

    def evaluate_direct(self, round: int, model: str, prompts: list[str], answers: list[str], **extra: Any) -> dict:
        """Stage `round-XXX/direct_eval`: answers with no worked solution, by a model that may think before each
        token (Quiet-STaR): exact match of the greedy answer, NLL of the answer tokens, seconds per generated token."""

        def produce() -> tuple[list[dict], dict]:
            rows = direct_answer_eval(self.load("policy", model), model, prompts, answers)
            nll = [x for r in rows for x in r["answer_nll"]]
            return rows, {
                "accuracy": sum(r["correct"] for r in rows) / len(rows),
                "answer_nll": sum(nll) / len(nll),
                "seconds_per_token": rows[0]["seconds_per_token"],
            }

        _, summary = self.run.jsonl_stage(round, "direct_eval", produce)
        metrics = {"round": round, "model": self.model_name(model), "accuracy": {"direct": summary["accuracy"]}}
        return self._record(metrics, {k: summary[k] for k in ("answer_nll", "seconds_per_token")} | extra)

    def classify(self, round: int, name: str, model: str, records: list[dict]) -> tuple[list[dict], float]:
        """Stage `round-XXX/<name>`: a classifier's P(class 1) for each record (`training.classifier`), kept as the
        record's `prediction`; returns the rows and the accuracy against the records' own labels."""

        def produce() -> tuple[list[dict], dict]:
            probs = class_probabilities(self.load("reward", model), records)
            rows = [{**r, "prediction": p} for r, p in zip(records, probs)]
            right = sum((r["prediction"] > 0.5) == (r["label"] > 0.5) for r in rows)
            return rows, {"records": len(rows), "model": self.model_name(model), "accuracy": right / len(rows)}

        rows, summary = self.run.jsonl_stage(round, name, produce)
        return rows, summary["accuracy"]

    def record(self, round: int, metrics: dict) -> dict:
        """Add a recipe's own metrics row for `round` (one row per round), as the evaluate stages do."""
        return self._record({"round": round, **metrics}, {})

    def _record(self, metrics: dict, extra: dict) -> dict:
        """Add `extra` to the round's metrics row, replace any earlier row of that round, rewrite metrics.jsonl."""
        metrics.update(extra)
        self.metric_rows = [r for r in self.metric_rows if r["round"] != metrics["round"]] + [metrics]
        self.run.write_metrics(self.metric_rows)
        self.run.track({"metrics": metrics}, step=metrics["round"])
        return metrics


def _checkpoint_of(stage: str, ckpt: Path) -> str:
    """The checkpoint a completed stage saved; a clear error if it has gone since."""
    if not ckpt.is_dir():
        raise InputError(ckpt, f"checkpoint of completed stage {stage} is missing; restore it or start anew")
    return str(ckpt)


def load_preference_source(task: Task, source: str) -> tuple[list[dict], Counter]:
    """`seed`/`all`: the testbed's gold pairs; anything else is a preference JSONL path."""
    if source in ("seed", "all"):
        pairs = task.gold_pairs(source)
        if pairs is None:
            raise InputError(
                "<config>", f"task '{task.name}' has no gold pairs; give a JSONL path", field="params.data"
            )
        return pairs, Counter()
    return load_pairs(source)


def scaled_steps(base: int, round: int, growth: float) -> int:
    """STaR's schedule: the step budget grows by `growth` (20%) per outer iteration."""
    return math.ceil(base * (1 + growth) ** (round - 1))


def mean_accuracy(metrics: dict, target: str | None = None) -> float:
    acc = metrics["accuracy"]
    if target is not None:
        return acc[target]
    return sum(acc.values()) / len(acc)
