"""SPA's pieces on hand-computed tensors, and a 2-iteration end-to-end run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from selfalign.cli import main
from selfalign.config import RefinementConfig
from selfalign.records import read_jsonl
from selfalign.scoring.pairing import judge_pair
from selfalign.training import spa


def test_implicit_reward_judgment_and_confidence():
    # summed log-probs: r = beta (log pi - log pi_ref)
    r = spa.implicit_reward(torch.tensor([-10.0, -4.0]), torch.tensor([-12.0, -3.0]), beta=0.1)
    assert r.tolist() == pytest.approx([0.2, -0.1])
    a_wins, p = judge_pair(torch.tensor([0.2, -0.1]), torch.tensor([-0.1, 0.3]))
    assert a_wins.tolist() == [True, False]
    # p = sigma(r_w - r_l): sigma(0.3) and sigma(0.4)
    assert p.tolist() == pytest.approx([1 / (1 + math.exp(-0.3)), 1 / (1 + math.exp(-0.4))])


def test_logit_extrapolation():
    theta, ref = torch.tensor([[1.0, 2.0, -1.0]]), torch.tensor([[0.5, 0.0, 1.0]])
    assert spa.extrapolated_logits(theta, ref, 0.5).tolist() == [[1.25, 3.0, -2.0]]  # 1.5 theta - 0.5 ref
    assert torch.equal(spa.extrapolated_logits(theta, ref, 0.0), theta)


def test_rolling_threshold_matches_the_official_percentile():
    values = [float(v) for v in range(50, 0, -1)]  # 50..1
    # official: (sorted[5] + sorted[6]) / 2 for a window of 50 at the 10th percentile
    assert spa.quantile_threshold(values, 0.1) == (6.0 + 7.0) / 2
    assert spa.quantile_threshold([3.0, 1.0, 2.0], 0.1) == 1.5  # k = 0: mean of the two smallest
    assert spa.quantile_threshold([4.0], 0.1) == 4.0


def test_per_sample_smoothing_and_alpha_warmup():
    m = torch.tensor([0.1, 0.5, -0.2, 0.5])
    assert spa.refined_epsilon(m, threshold=0.1, alpha_t=0.1).tolist() == pytest.approx([0.1, 0.0, 0.1, 0.0])
    assert spa.refined_epsilon(m, threshold=0.1, alpha_t=0.0).tolist() == [0.0] * 4
    assert [spa.alpha_at(s, 10, 0.1) for s in range(10)] == [0.0, 0.0] + [0.1] * 8
    assert spa.alpha_at(0, 10, 0.1, warmup=0.0) == 0.1


def test_refiner_window_warmup_and_smoothing():
    cfg = RefinementConfig(alpha=0.2, quantile=0.25, window=4, warmup=0.5)
    r = spa.Refiner(cfg, beta=1.0, total_calls=4)
    assert r.epsilon(torch.tensor([1.0, 2.0, 3.0, 4.0])).tolist() == [0.0] * 4  # warm-up: alpha_t = 0
    assert r.epsilon(torch.tensor([5.0, 6.0])).tolist() == [0.0] * 2
    # window now holds 3, 4, 5, 6 -> k = 1: threshold (4 + 5) / 2 = 4.5
    assert r.epsilon(torch.tensor([4.0, 8.0])).tolist() == pytest.approx([0.2, 0.0])
    glob = spa.Refiner(cfg.model_copy(update={"threshold": "global", "warmup": 0.0}), 1.0, 4)
    glob.epsilon(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    # global keeps every value: 1..4, 0, 9 -> sorted 0,1,2,3,4,9, k = 1 -> (1 + 2) / 2
    assert glob.epsilon(torch.tensor([0.0, 9.0])).tolist() == pytest.approx([0.2, 0.0])


def test_refiner_confidence_uses_extrapolated_logits():
    torch.manual_seed(0)
    logits, ref = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    labels = torch.tensor([[-100, 1, 2]] * 4)
    ref_c, ref_r = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    r = spa.Refiner(RefinementConfig(lam=0.5), beta=0.1, total_calls=10)
    m = r.confidence(logits, ref, labels, ref_c, ref_r)
    mix = torch.log_softmax(1.5 * logits - 0.5 * ref, -1)
    lp = mix[:, :-1].gather(2, labels[:, 1:].unsqueeze(-1)).squeeze(-1).sum(-1)  # both shifted labels count
    want = 0.1 * ((lp[:2] - ref_c) - (lp[2:] - ref_r))
    assert torch.allclose(m, want, atol=1e-6)


def test_spa_two_iterations_end_to_end(tmp_path):
    cfg = tmp_path / "spa.yaml"
    cfg.write_text("recipe: spa\nseed: 2\nmodel:\n  path: builtin:letters-sft\ntask:\n  name: letters\n")
    out = tmp_path / "run"
    args = [
        "task.n_prompts=80",
        "task.seed_fraction=0.1",
        "task.n_eval=12",
        "training.steps=5",
        "training.batch_size=8",
        "sampling.max_new_tokens=12",
        "eval.k=2",
        "eval.temperature=1.0",
        "params.iterations=2",
        "params.prompts_per_iteration=30",
        "params.seed_steps=4",
    ]
    assert main(["run", str(cfg), "--out", str(out), *args]) == 0
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["round"] for m in metrics] == [0, 1, 2, 3]
    assert all(0 <= m["annotation_accuracy"] <= 1 for m in metrics[2:])
    manifest = json.loads((out / "manifest.json").read_text())["stages"]
    for t in (2, 3):
        samples = read_jsonl(out / f"round-{t:03d}" / "samples.jsonl")
        assert len(samples) == 30 * 2
        assert samples[0]["provenance"]["model"] == f"round-{t - 1:03d}/checkpoint"
        pairs = read_jsonl(out / f"round-{t:03d}" / "pairs.jsonl")
        assert pairs and all(p["chosen"] != p["rejected"] and 0.5 <= p["confidence"] < 1 for p in pairs)
        judge = pairs[0]["provenance"]["judge"]
        assert judge.startswith(f"implicit:round-{t - 1:03d}/checkpoint|")  # run-relative
        assert manifest[f"round-{t:03d}/pairs"]["summary"]["judge"] == judge
        log = read_jsonl(out / f"round-{t:03d}" / "checkpoint" / "train_log.jsonl")
        assert "spa/smoothed" in log[-1]
    # iteration prompts are disjoint and never the seed's
    first = {r["problem_id"] for r in read_jsonl(out / "round-002" / "samples.jsonl")}
    second = {r["problem_id"] for r in read_jsonl(out / "round-003" / "samples.jsonl")}
    seed = {p["id"] for p in read_jsonl(out / "round-001" / "pairs.jsonl")}
    assert not first & second and not (first | second) & seed


# --- the self-judge baseline: the model as a pairwise LLM judge ---------------------------------------------


def test_spa_self_judge_baseline_end_to_end(tmp_path):
    cfg = tmp_path / "spa.yaml"
    cfg.write_text("recipe: spa\nseed: 2\nmodel:\n  path: builtin:letters-sft\ntask:\n  name: letters\n")
    out = tmp_path / "run"
    args = ["task.n_prompts=60", "task.seed_fraction=0.1", "task.n_eval=8", "training.steps=3"]
    args += ["training.batch_size=8", "sampling.max_new_tokens=12", "params.iterations=2"]
    args += ["params.prompts_per_iteration=20", "params.judge=self", "params.refine=false", "params.judge_steps=5"]
    assert main(["run", str(cfg), "--out", str(out), *args]) == 0
    for t in (2, 3):
        lessons = read_jsonl(out / f"round-{t:03d}" / "judge.jsonl")
        assert len(lessons) == 2 * 6 and {r["completion"] for r in lessons} == {"a", "b"}
        assert (out / f"round-{t:03d}" / "judge" / "config.json").is_file()
        pairs = read_jsonl(out / f"round-{t:03d}" / "pairs.jsonl")
        assert pairs[0]["provenance"]["judge"] == f"pairwise:round-{t:03d}/judge"  # run-relative
        assert all(0.5 <= p["confidence"] < 1 for p in pairs)
    assert [m["round"] for m in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2, 3]


def test_spa_gold_judge_trains_on_gold_labels_only(tmp_path):
    cfg = tmp_path / "spa.yaml"
    cfg.write_text("recipe: spa\nseed: 2\nmodel:\n  path: builtin:letters-sft\ntask:\n  name: letters\n")
    out = tmp_path / "run"
    args = ["task.n_prompts=40", "task.seed_fraction=0.1", "task.n_eval=8", "training.steps=2", "params.seed_steps=2"]
    args += ["sampling.max_new_tokens=12", "params.iterations=1", "params.prompts_per_iteration=30"]
    assert main(["run", str(cfg), "--out", str(out), *args, "params.judge=gold", "params.refine=false"]) == 0
    pairs = read_jsonl(out / "round-002" / "pairs.jsonl")
    assert pairs[0]["provenance"]["judge"] == "gold:letters"
    row = read_jsonl(out / "metrics.jsonl")[2]
    assert row["annotation_accuracy"] == 1.0 and row["train_pairs"] == sum(p["gold_agrees"] is True for p in pairs)
