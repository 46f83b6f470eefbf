"""The LLM-judge layer: pairwise judgements in both orders, principles, chain of thought with clamping, pointwise
ratings, invalid verdicts, the labeller metrics, and constitution files."""

from __future__ import annotations

import json
import math

import pytest
import torch

from selfalign.errors import InputError
from selfalign.evaluation.metrics import judge_metrics
from selfalign.models.loading import load_policy
from selfalign.scoring.constitution import check_template, load_constitution
from selfalign.scoring.pairwise import PairwiseJudge, PointwiseJudge, judge_records, rating_records
from selfalign.tasks.base import Problem


def test_judge_records_teach_both_orders():
    recs = judge_records(
        [{"prompt": "abcd:", "chosen": "ab", "rejected": "xy"}], "{prompt}{first}:{second}:", ("a", "b")
    )
    assert recs == [
        {"prompt": "abcd:ab:xy:", "completion": "a"},
        {"prompt": "abcd:xy:ab:", "completion": "b"},
    ]


class TableJudge(PairwiseJudge):
    """P(first wins) from a table keyed by (first, second[, principle]), standing in for the model."""

    def __init__(self, table, principles=None, ensemble=False, cot=False, mass=1.0):
        self.table, self.principles, self.ensemble, self.seed = table, principles, ensemble, 0
        self.decode = (lambda heads: ["why"] * len(heads)) if cot else None
        self.clamp, self.min_mass, self.mass, self.swap = (0.4, 0.6), 1e-4, mass, True
        self.seen: list[str] = []

    def first_wins(self, prompts, firsts, seconds, principles):
        self.seen += principles
        probs = [self.table.get((a, b, c), self.table.get((a, b))) for a, b, c in zip(firsts, seconds, principles)]
        if self.decode:
            probs = [min(max(p, 0.4), 0.6) for p in probs]
        why = ["why" if self.decode else ""] * len(probs)
        return probs, [self.mass] * len(probs), why


def test_both_orders_are_averaged_kept_and_k2_scores_give_the_preference():
    # a judge biased to the first slot: 0.9 for (y, z) but only 0.5 against (z, y) -> P(y > z) = (0.9 + 0.5) / 2
    judge = TableJudge({("y", "z"): 0.9, ("z", "y"): 0.5})
    (j,) = judge.judgements(["x"], ["y"], ["z"])
    assert j["p"] == pytest.approx(0.7) and j["orders"] == pytest.approx([0.9, 0.5]) and j["valid"]
    r_y, r_z = judge.score([Problem("q", "x", "")] * 2, ["y", "z"])
    assert torch.sigmoid(torch.tensor(r_y - r_z)).item() == pytest.approx(0.7)


@pytest.mark.parametrize("q", [0.5, 0.7, 0.9, 0.123456789, 1 - 1e-9, 0.0])
def test_a_judge_that_always_prefers_one_position_gives_exactly_one_half(q):
    judge = TableJudge({("y", "z"): q, ("z", "y"): q})
    (j,) = judge.judgements(["x"], ["y"], ["z"])
    assert j["p"] == 0.5
    metrics = judge_metrics([j], [1.0])
    assert metrics["flip_rate"] == (0.0 if q == 0.5 else 1.0) and metrics["accuracy"] == 0.5  # a position bias


def test_k3_scores_are_half_the_mean_log_odds_over_opponents():
    p = {("a", "b"): 0.8, ("a", "c"): 0.6, ("b", "c"): 0.3}
    table = {**p, **{(b, a): 1 - v for (a, b), v in p.items()}}  # an order-consistent judge
    scores = TableJudge(table).score([Problem("q", "x", "")] * 3, ["a", "b", "c"])
    logit = lambda v: math.log(v / (1 - v))  # noqa: E731
    assert scores == pytest.approx(
        [
            (logit(0.8) + logit(0.6)) / 4,
            (-logit(0.8) + logit(0.3)) / 4,
            (-logit(0.6) - logit(0.3)) / 4,
        ]
    )


def test_principles_one_per_pair_in_both_orders_or_an_ensemble():
    table = {("y", "z", "P1"): 0.9, ("z", "y", "P1"): 0.1, ("y", "z", "P2"): 0.7, ("z", "y", "P2"): 0.3}
    sampled = TableJudge(table, principles=["P1", "P2"])
    js = sampled.judgements(["x"] * 6, ["y"] * 6, ["z"] * 6)
    assert [j["principles"] for j in js] == [[p] for p in sampled.seen[:6]]  # the same principle in both orders
    assert sampled.seen[:6] == sampled.seen[6:] and set(sampled.seen) == {"P1", "P2"}
    assert all(j["p"] == pytest.approx(0.9 if j["principles"] == ["P1"] else 0.7) for j in js)
    (j,) = TableJudge(table, principles=["P1", "P2"], ensemble=True).judgements(["x"], ["y"], ["z"])
    assert j["p"] == pytest.approx((0.9 + 0.7) / 2) and j["principles"] == ["P1", "P2"]


def test_chain_of_thought_labels_are_clamped_and_the_rationales_kept():
    (j,) = TableJudge({("y", "z"): 0.99, ("z", "y"): 0.02}, cot=True).judgements(["x"], ["y"], ["z"])
    assert j["orders"] == pytest.approx([0.6, 0.6]) and j["p"] == pytest.approx(0.6)
    assert j["rationales"] == [["why", "why"]]


def test_a_verdict_without_label_mass_is_invalid_and_neutral():
    (j,) = TableJudge({("y", "z"): 0.9, ("z", "y"): 0.2}, mass=1e-6).judgements(["x"], ["y"], ["z"])
    assert j["p"] == 0.5 and not j["valid"] and j["orders"] == [None, None]
    assert judge_metrics([j], [1.0]) == {"pairs": 0, "invalid": 1.0}


def test_first_wins_reads_the_verdict_after_each_prompt_in_a_padded_batch():
    policy = load_policy("builtin:letters-sft")
    judge = PairwiseJudge(policy, "{prompt}{first}:{second}:", ("a", "b"))
    prompts, firsts, seconds = ["abcd:", "efgh:"], ["ab", "efghefghef"], ["xyz", "e"]
    batched, mass, _ = judge.first_wins(prompts, firsts, seconds, ["", ""])
    for i, text in enumerate(["abcd:ab:xyz:", "efgh:efghefghef:e:"]):
        ids = torch.tensor([policy.encode_prompt(text)])
        logits = policy.model(input_ids=ids).logits[0, -1]
        assert batched[i] == pytest.approx(logits[judge.label_ids].softmax(-1)[0].item(), abs=1e-5)
        assert mass[i] == pytest.approx(logits.softmax(-1)[judge.label_ids].sum().item(), abs=1e-5)
    with pytest.raises(ValueError, match="single tokens"):
        PairwiseJudge(policy, "{prompt}{first}:{second}:", ("a", "ab"))


def test_chain_of_thought_decodes_from_the_head_and_scores_after_the_rationale():
    policy = load_policy("builtin:letters-sft")
    heads: list[str] = []

    def decode(prompts):
        heads.extend(prompts)
        return ["ba"] * len(prompts)

    judge = PairwiseJudge(
        policy, "unused", ("a", "b"), cot_template="{prompt}{first}:{second}:{rationale}:", decode=decode
    )
    direct = PairwiseJudge(policy, "{prompt}{first}:{second}:ba:", ("a", "b"), clamp=(0.0, 1.0))
    (j,) = judge.judgements(["abcd:"], ["ab"], ["xy"])
    assert heads == ["abcd:ab:xy:", "abcd:xy:ab:"]
    (d,) = direct.judgements(["abcd:"], ["ab"], ["xy"])
    clamp = lambda v: min(max(v, 0.4), 0.6)  # noqa: E731
    assert j["orders"] == pytest.approx([clamp(d["orders"][0]), 1 - clamp(1 - d["orders"][1])])
    with pytest.raises(ValueError, match="both cot_template and decode"):
        PairwiseJudge(policy, "unused", ("a", "b"), decode=decode)


def test_pointwise_rating_is_the_expected_label_mapped_to_minus_one_one():
    policy = load_policy("builtin:arith-tiny")
    judge = PointwiseJudge(policy, "{prompt}{response}=", labels=("1", "2", "3"))
    (r,) = judge.ratings(["12+34="], ["46"])
    ids = torch.tensor([policy.encode_prompt("12+34=46=")])
    probs = policy.model(input_ids=ids).logits[0, -1, judge.label_ids].softmax(-1)
    expected = (probs * torch.tensor([1.0, 2.0, 3.0])).sum().item()
    assert r["expected"] == pytest.approx(expected, abs=1e-5) and r["score"] == pytest.approx(expected - 2, abs=1e-5)
    assert judge.score([Problem("q", "12+34=", "46")], ["46"]) == [pytest.approx(r["score"])]
    (bad,) = PointwiseJudge(policy, "{prompt}{response}=", labels=("1", "2"), min_mass=1.1).ratings(["1+1="], ["2"])
    assert bad["score"] == 0.0 and not bad["valid"]
    with pytest.raises(ValueError, match="must be numbers"):
        PointwiseJudge(policy, "{prompt}{response}=", labels=("a", "b"))


def test_judge_metrics_by_hand():
    def j(p, a_first, b_first):
        return {"p": p, "orders": [a_first, b_first], "valid": True}

    judgements = [j(0.8, 0.9, 0.7), j(0.6, 0.9, 0.3), j(0.3, 0.2, 0.4), j(0.5, 0.5, 0.5), j(0.9, 0.9, 0.9)]
    m = judge_metrics(judgements, [1.0, 0.0, 0.0, 1.0, None])
    assert m["pairs"] == 4 and m["invalid"] == 0.0
    assert m["accuracy"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert m["accuracy_a_first"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert m["accuracy_b_first"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert m["flip_rate"] == pytest.approx(1 / 4)  # only the second pair's winner changes with the order
    # first-position picks: (a, -), (a, b), (-, b), (-, -) over 8 verdicts
    assert m["first_position"] == pytest.approx(4 / 8)
    # confidences 0.8 (right), 0.6 (wrong), 0.7 (right), 0.5 (half): |1-0.8| + |0-0.6| + |1-0.7| + |0.5-0.5|
    assert m["ece"] == pytest.approx((0.2 + 0.6 + 0.3 + 0.0) / 4)


def test_constitution_file(tmp_path):
    path = tmp_path / "constitution.jsonl"
    lines = [
        {"critique": "Which instruction does the response break?", "revision": "Rewrite it to follow them all."},
        {"comparison": "Which response follows the formatting instructions more closely?"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    c = load_constitution(path)
    assert c.revisions == [(lines[0]["critique"], lines[0]["revision"])] and c.comparisons == [lines[1]["comparison"]]

    bad = [
        ({"critique": "Find the flaw."}, "field 'revision'"),
        ({"comparison": "Which is better for {user}?"}, "field 'comparison': unknown placeholder {user}"),
        ({"comparison": ""}, "field 'comparison': must be a non-empty string"),
        ({"comparsion": "typo"}, "field 'comparsion': unknown field"),
        ({}, "an empty principle"),
    ]
    for rec, message in bad:
        path.write_text(json.dumps(lines[1]) + "\n" + json.dumps(rec) + "\n")
        with pytest.raises(InputError, match="line 2") as e:
            load_constitution(path)
        assert str(path) in str(e.value) and message in str(e.value)
    path.write_text("\n")
    with pytest.raises(InputError, match="no principles"):
        load_constitution(path)


def test_judge_template_placeholders_are_checked():
    fields = {"prompt", "first", "second", "principle"}
    check_template("{prompt} A: {first} B: {second} {principle} Preferred=", fields, {"first", "second"}, "t")
    with pytest.raises(InputError, match=r"field 't': unknown placeholder \{answer\}"):
        check_template("{prompt} {first} {second} {answer}", fields, {"first", "second"}, "t")
    with pytest.raises(InputError, match=r"needs \{second\}"):
        check_template("{prompt} {first}", fields, {"first", "second"}, "t")


def test_without_the_swap_the_label_is_the_first_order_alone():
    judge = TableJudge({("y", "z"): 0.9, ("z", "y"): 0.5})
    judge.swap = False
    (j,) = judge.judgements(["x"], ["y"], ["z"])
    assert j["p"] == pytest.approx(0.9) and j["orders"] == [pytest.approx(0.9), None]
    assert set(judge_metrics([j], [1.0])) == {"pairs", "invalid", "accuracy", "accuracy_a_first", "ece"}


def test_rating_records_pick_the_label_nearest_the_gold_reward():
    samples = [{"prompt": "p", "completion": c, "reward": r} for c, r in (("x", 0.0), ("y", 0.3), ("z", 0.9))]
    recs = rating_records(samples, "{prompt}{response}=", ["a", "b", "c"], [1.0, 2.0, 3.0])
    assert [r["completion"] for r in recs] == ["a", "b", "c"]  # targets 1.0, 1.6, 2.8
    assert recs[1]["prompt"] == "py="
