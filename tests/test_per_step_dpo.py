"""Per-step DPO: critical steps from Monte-Carlo values, partial rejected responses, the recipe end to end."""

import pytest

from selfalign.batching import encode_pair
from selfalign.cli import main
from selfalign.errors import InputError
from selfalign.generation import SamplingParams
from selfalign.generation.hf import HFSampler
from selfalign.models import load
from selfalign.records import load_pairs, read_jsonl
from selfalign.stepwise import critical_step, step_prefixes
from selfalign.tasks.arithmetic import ArithmeticTask


@pytest.mark.parametrize(
    "values,c",
    [
        ([1, 1, 1, 0, 0], 3),  # best-of-K: the first step after which no rollout succeeds
        ([0.8, 0.9, 0.3, 0.1, 0.0], 2),  # advantages 0.1, -0.6, -0.2, -0.1
        ([1, 0, 1, 0], 1),  # ties: the first pit
        ([1, 1, 0], 2),  # only the last step (the whole solution) fails
        ([0.5, 0.0], 1),
    ],
)
def test_critical_step_is_the_first_lowest_advantage(values, c):
    assert critical_step(values) == c


def test_critical_step_needs_a_step():
    with pytest.raises(ValueError, match="at least one step"):
        critical_step([1.0])


def test_a_partial_rejected_response_gets_no_eos(tiny_model_dir):
    policy = load("policy", str(tiny_model_dir))
    eos = policy.tokenizer.eos_token_id
    pair = {"prompt": "a1+A2=", "chosen": "a1+A2+0=03", "rejected": "a1+A2+0=04"}
    full, cut = encode_pair(policy, pair), encode_pair(policy, {**pair, "rejected_partial": True})
    assert (
        full["rejected"]["input_ids"][-1] == eos and cut["rejected"]["input_ids"] == full["rejected"]["input_ids"][:-1]
    )
    assert cut["chosen"] == full["chosen"]


def test_pairs_file_rejected_partial_must_be_boolean(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"prompt": "p", "chosen": "a", "rejected": "b", "rejected_partial": "yes"}\n')
    with pytest.raises(InputError) as e:
        load_pairs(f)
    assert "line 1" in str(e.value) and "rejected_partial" in str(e.value)


def run(tmp_path, *overrides):
    cfg = tmp_path / "psd.yaml"
    cfg.write_text("recipe: per_step_dpo\nseed: 3\nmodel:\n  path: builtin:arith-tiny\n")
    out = tmp_path / "run"
    small = ["task.train_digits=[4]", "task.eval_digits=[4]", "task.n_train=16", "task.n_eval=4"]
    small += ["sampling.temperature=1.6", "sampling.max_new_tokens=60", "training.steps=2", "training.batch_size=8"]
    assert main(["run", str(cfg), "--out", str(out), *small, "params.k=4", *overrides]) == 0
    return out


def test_greedy_rollouts_give_the_critical_steps_of_a_deterministic_policy(tmp_path):
    """With greedy rollouts the policy is deterministic, so each prefix's value is known exactly: whether its one
    greedy continuation is correct. Recomputed here prefix by prefix, it must give every pair's cut."""
    out = run(tmp_path, "params.rollouts=2", "params.rollout_temperature=0")
    pairs = read_jsonl(out / "round-001" / "train.jsonl")
    samples = {s["id"]: s for s in read_jsonl(out / "round-001" / "samples.jsonl")}
    assert len(pairs) >= 3, "the test needs a few incorrect samples"
    task = ArithmeticTask()
    problems = {p.id: p for p in ArithmeticTask(_cfg()).train_problems(1, 3)}
    sampler = HFSampler(load("policy", "builtin:arith-tiny"))
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=60)
    for pair in pairs:
        neg = samples[pair["id"]]
        problem, steps = problems[neg["problem_id"]], task.steps(neg["completion"])
        prefixes = step_prefixes(steps)[:-1]
        gens = sampler.generate([problem.prompt] * len(prefixes), greedy, prefills=prefixes)
        values = [1.0] + [float(task.check(problem, f + g.text).correct) for f, g in zip(prefixes, gens)] + [0.0]
        c = critical_step(values)
        assert not neg["correct"] and task.check(problem, pair["chosen"]).correct
        if c < len(steps):
            assert pair["rejected"] == " ".join(steps[:c]) and pair["rejected_partial"]
        else:
            assert pair["rejected"] == neg["completion"] and pair["rejected_partial"] == (not neg["finished"])
    metrics = read_jsonl(out / "metrics.jsonl")
    assert metrics[-1]["train_pairs"] == len(pairs) and 0 <= metrics[-1]["critical_step_is_last"] <= 1


def _cfg():
    from selfalign.config import ArithmeticTaskConfig

    return ArithmeticTaskConfig(train_digits=[4], eval_digits=[4], n_train=16, n_eval=4)


def test_whole_pairs_are_plain_dpo_without_rollouts(tmp_path):
    out = run(tmp_path, "params.pairs=whole", "params.negatives=1")
    pairs = read_jsonl(out / "round-001" / "train.jsonl")
    samples = {s["id"]: s for s in read_jsonl(out / "round-001" / "samples.jsonl")}
    assert pairs and not (out / "round-001" / "mc_rollouts.jsonl").exists()
    assert all(p["rejected"] == samples[p["id"]]["completion"] for p in pairs)
    assert len({samples[p["id"]]["problem_id"] for p in pairs}) == len(pairs)  # one negative per problem
