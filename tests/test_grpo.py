"""GRPO / RLOO: the online rollout's batch layout, bad scorers, config checks and end-to-end runs (seconds)."""

import json
import math

import pytest
import torch

from selfalign.batching import IGNORE
from selfalign.cli import main
from selfalign.config import ArithmeticTaskConfig, TrainingConfig
from selfalign.generation import SamplingParams
from selfalign.models import load
from selfalign.records import read_jsonl
from selfalign.rollout import GroupRollout, RolloutError
from selfalign.scoring.base import CheckerScorer, GoldRewardScorer
from selfalign.tasks.arithmetic import ArithmeticTask
from selfalign.training.grpo import train_grpo
from selfalign.training.rl_objectives import process_advantages

SMALL = [
    "task.train_digits=[3]",
    "task.eval_digits=[3]",
    "task.n_train=6",
    "task.n_eval=8",
    "sampling.max_new_tokens=48",
    "training.steps=2",
    "training.batch_size=8",
    "params.group_size=4",
]


@pytest.fixture(scope="module")
def setup():
    policy = load("policy", "builtin:arith-tiny", dtype="float32")
    task = ArithmeticTask(ArithmeticTaskConfig(name="arithmetic", train_digits=[5], n_train=5))
    return policy, task, task.train_problems(1, 0)


def rollout(setup, scorer=None, **kw) -> GroupRollout:
    policy, task, problems = setup
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=kw.pop("max_new_tokens", 96), seed=3)
    return GroupRollout(policy, problems, task, scorer or CheckerScorer(task), params, prompts_per_batch=2, **kw)


def test_batch_layout_groups_and_advantages(setup):
    r = rollout(setup, max_new_tokens=30)  # 5-digit scratchpads are longer: some responses are cut off
    batch = r.next_batch(1, 0)
    tok = setup[0].tokenizer
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[0] == 8 and batch["advantages"].shape == batch["reward"].shape == (8,)
    rows = zip(batch["input_ids"], batch["labels"], batch["attention_mask"])
    prompts = [tuple(ids[(labels == IGNORE) & (mask == 1)].tolist()) for ids, labels, mask in rows]
    assert len(set(prompts[:4])) == 1 and len(set(prompts[4:])) == 1 and prompts[0] != prompts[4]  # group by group
    groups = batch["advantages"].view(2, 4)
    assert torch.allclose(groups.sum(1), torch.zeros(2), atol=1e-5)  # mean-centred within each group
    # a response cut off at max_new_tokens is trained without an EOS it never produced
    for lab, tokens in zip(batch["labels"], batch["tokens"]):
        completion = lab[lab != IGNORE].tolist()
        assert (completion[-1] == tok.eos_token_id) == (len(completion) < 30 or tokens.item() < 30)
    assert set(batch["gold"].tolist()) <= {0.0, 1.0} and torch.equal(batch["gold"], batch["reward"])


def test_draws_are_seeded_and_cover_every_prompt(setup):
    r = rollout(setup)
    problems = setup[2]
    assert [p.id for p in r.draw(1, 0)] == [p.id for p in rollout(setup).draw(1, 0)]
    first_epoch = [p.id for step in (1, 2) for micro in (0,) for p in r.draw(step, micro)] + [r.draw(3, 0)[0].id]
    assert sorted(first_epoch) == sorted(p.id for p in problems)  # 5 prompts, 2 per batch: all before a repeat
    accum = rollout(setup, grad_accum=2)
    assert [p.id for p in accum.draw(1, 1)] == [p.id for p in r.draw(2, 0)]


class Broken:
    name = "broken"

    def __init__(self, scores):
        self.scores = scores

    def score(self, problems, completions):
        return self.scores(len(completions))


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        (lambda n: [0.0] * (n - 1), "scorer broken returned 7 scores for 8 completions"),
        (lambda n: [math.nan] * n, "scorer broken gave problem .* the reward nan, not a number"),
        (lambda n: [None] * n, "the reward None, not a number"),
    ],
)
def test_a_broken_scorer_is_a_clear_error(setup, scores, message):
    with pytest.raises(RolloutError, match=message):
        rollout(setup, Broken(scores)).next_batch(1, 0)


def test_no_prompts_is_a_clear_error(setup):
    with pytest.raises(RolloutError, match="at least one prompt"):
        GroupRollout(setup[0], [], setup[1], CheckerScorer(setup[1]), SamplingParams(n=2), prompts_per_batch=1)


class Replay:
    """An online source that serves one recorded rollout batch at every step."""

    def __init__(self, batch):
        self.batch = batch

    def next_batch(self, step, micro):
        return dict(self.batch)


@pytest.mark.parametrize(
    ("algorithm", "loss_type", "advantages"),
    [
        ("grpo", "dapo", [0, 0, 0, 0, 1.2, -0.4, 0.3, -1.1]),
        ("grpo", "bnpo", [0, 0, 0, 0, 1.2, -0.4, 0.3, -1.1]),
        ("grpo", "grpo", [0.5, -0.5, 0, 0, 0, 0, 1.0, -1.0]),
        ("grpo", "dr_grpo", [0.5, -0.5, 0, 0, 0, 0, 1.0, -1.0]),
        ("rloo", "dapo", [0, 0, 0, 0, 1.2, -0.4, 0.3, -1.1]),
        ("grpo", "dapo", [0.0] * 8),
    ],
)
def test_skipping_zero_advantage_rows_leaves_the_update_unchanged(setup, algorithm, loss_type, advantages):
    batch = rollout(setup, max_new_tokens=30).next_batch(1, 0)  # ragged: some rows are longer than others
    batch["advantages"] = torch.tensor(advantages)
    cfg = TrainingConfig(lr=1e-2, steps=3, batch_size=8, warmup_ratio=0.0)
    runs = {}
    for skip in (True, False):
        policy = load("policy", "builtin:arith-tiny", dtype="float32")
        log = train_grpo(
            policy,
            [],
            cfg,
            None,
            rollout=lambda _: Replay(batch),
            algorithm=algorithm,
            loss_type=loss_type,
            max_new_tokens=30,
            skip_zero_advantage=skip,
        )
        runs[skip] = (log, torch.cat([p.detach().flatten() for p in policy.model.parameters()]))
    (skipped, w_skipped), (full, w_full) = runs[True], runs[False]
    assert skipped[0]["trained_rows"] == (0.5 if any(advantages) else 1 / 8) and full[0]["trained_rows"] == 1.0
    for a, b in zip(skipped, full):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-7)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    start = torch.cat([p.detach().flatten() for p in load("policy", "builtin:arith-tiny").model.parameters()])
    # Adam turns float noise on near-zero gradient entries into lr-sized steps: compare the updates as a whole
    assert (w_skipped - w_full).norm() <= 1e-4 * (w_full - start).norm()
    assert (full[0]["grad_norm"] > 0) == any(advantages)  # the update is not trivially empty


def run(tmp_path, *overrides, expect=0):
    cfg = tmp_path / "grpo.yaml"
    cfg.write_text("recipe: grpo\nseed: 1\nmodel:\n  path: builtin:arith-tiny\ntask:\n  name: arithmetic\n")
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), *SMALL, *overrides]) == expect
    return out


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_end_to_end_with_kl(tmp_path, algorithm):
    out = run(tmp_path, f"params.algorithm={algorithm}", "params.beta=0.1", "params.rounds=2")
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"round-001/train", "round-002/train", "round-002/eval"} <= set(manifest["stages"])
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["round"] for m in metrics] == [0, 1, 2] and [m.get("samples") for m in metrics] == [None, 16, 32]
    log = read_jsonl(out / "round-002" / "checkpoint" / "train_log.jsonl")
    keys = {"loss", "reward", "gold_reward", "entropy", "completion_tokens", "clip_ratio/region_mean"}
    assert len(log) == 2 and keys <= set(log[0])
    assert ("kl" in log[0]) == (algorithm == "grpo")  # RLOO's KL is in the reward, not the loss
    assert read_jsonl(out / "round-001" / "train.jsonl")[0].keys() == {"problem_id", "prompt"}
    page = (out / "report.html").read_text()  # the per-step curves of both rounds are plotted in the report
    assert (out / "training.png").stat().st_size > 10_000 and "Training, per optimizer step" in page


def test_config_errors_name_the_field(tmp_path, capsys):
    run(tmp_path, "training.batch_size=6", expect=2)
    err = capsys.readouterr().err
    assert "override 'training.batch_size=6': must be a multiple of params.group_size (4)" in err
    run(tmp_path, "params.scorer=rm", expect=2)
    assert "override 'params.scorer=rm': scorer rm needs params.scorer_path" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_nan_reward_stops_the_run_without_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(CheckerScorer, "score", lambda self, problems, completions: [math.nan] * len(completions))
    out = run(tmp_path, expect=2)
    err = capsys.readouterr().err
    assert "gave problem" in err and "Traceback" not in err
    assert not (out / "round-001" / "checkpoint").exists()
    monkeypatch.undo()
    assert main(["run", str(tmp_path / "grpo.yaml"), "--out", str(out), "--resume", *SMALL]) == 0  # resumes
    assert [m["round"] for m in read_jsonl(out / "metrics.jsonl")] == [0, 1]


def test_process_supervision_credits_each_step_at_its_last_token(setup):
    policy = setup[0]  # hot 4-digit samples: some go wrong part-way
    task = ArithmeticTask(ArithmeticTaskConfig(name="arithmetic", train_digits=[4], n_train=5))
    params = SamplingParams(n=4, temperature=2.0, max_new_tokens=96, seed=3)
    r = GroupRollout(policy, task.train_problems(1, 0), task, GoldRewardScorer(task), params, 2, process=True)
    batch = r.next_batch(1, 0)
    problems = [q for q in r.draw(1, 0) for _ in range(4)]
    steps, ends = [], []
    for labels, q in zip(batch["labels"], problems):  # arith-tiny's tokenizer has one token per character
        where = (labels != IGNORE).nonzero().flatten()
        text = policy.tokenizer.decode(labels[where].tolist(), skip_special_tokens=True)
        check = task.check(q, text)
        n, at, cut = len(task.steps(text)), 0, []
        for step in task.steps(text):
            at = text.index(step, at) + len(step)
            cut.append(int(where[0]) + at - 2)  # the step's last character is token at - 1, predicted at - 2
        bad = n if check.first_error is None else check.first_error
        steps.append([1.0] * bad + [0.0] * (n - bad))
        ends.append(cut)
    expected = process_advantages(steps, ends, 4, batch["labels"].shape[1] - 1)
    assert torch.equal(batch["advantages"], expected) and batch["advantages"].abs().sum() > 0
    assert any(0 < s.count(1.0) < len(s) for s in steps)  # some responses go wrong part-way: a dense signal


def test_process_supervision_config(tmp_path, capsys):
    run(tmp_path, "params.supervision=process", expect=2)
    assert "process supervision needs algorithm grpo and step scores" in capsys.readouterr().err
    out = run(tmp_path, "params.supervision=process", "params.scorer=gold")
    assert len(read_jsonl(out / "round-001" / "checkpoint" / "train_log.jsonl")) == 2


def test_an_llm_judge_rating_is_the_reward(tmp_path, capsys):
    """d-RLAIF: arith-tiny rates each response on 1-3 (its label probabilities after the rating prompt)."""
    judge = ["params.scorer=judge", "params.scorer_path=builtin:arith-tiny", "params.judge.labels=['1','2','3']"]
    out = run(tmp_path, *judge, "params.judge.template='{prompt}{response}='")
    log = read_jsonl(out / "round-001" / "checkpoint" / "train_log.jsonl")
    assert all(-1 <= s["reward"] <= 1 for s in log) and len({s["reward"] for s in log}) > 1
    run(tmp_path, *judge, "params.judge.template='{prompt}{answer}='", expect=2)
    assert "params.judge.template" in capsys.readouterr().err
