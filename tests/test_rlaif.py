"""RLAIF end to end on the letters testbed: gold labels, an EFT judge with soft labels, hard labels without the
swap, principles from a constitution; bad inputs refused before the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfalign.cli import main
from selfalign.records import read_jsonl

SMALL = [
    "task.n_prompts=120",
    "task.n_eval=16",
    "params.prompts=40",
    "training.steps=4",
    "training.batch_size=16",
    "eval.k=1",
    "sampling.batch_size=256",
    "eval.batch_size=256",
]


@pytest.fixture
def config(tmp_path):
    cfg = tmp_path / "rlaif.yaml"
    cfg.write_text((Path(__file__).parents[1] / "configs" / "rlaif_letters.yaml").read_text())
    return cfg


def run(config, out, *overrides):
    return main(["run", str(config), "--out", str(out), *SMALL, *overrides])


def test_gold_labels_agree_with_gold_and_train_the_policy(config, tmp_path):
    out = tmp_path / "gold"
    assert run(config, out, "params.labeller=gold", "params.eft_pairs=0", "params.eft_prompts=0") == 0
    pairs = read_jsonl(out / "round-001" / "pairs.jsonl")
    assert pairs and all(p["gold_agrees"] and p["epsilon"] == 0.0 for p in pairs)
    row = read_jsonl(out / "metrics.jsonl")[1]
    assert row["train_pairs"] == len(pairs) and row["labeller"]["accuracy"] == 1.0
    assert (out / "round-001" / "checkpoint").is_dir()


def test_eft_judge_soft_labels_and_resume(config, tmp_path):
    out = tmp_path / "eft"
    args = ["params.eft_pairs=10", "params.eft_prompts=30", "params.eft_steps=3"]
    assert run(config, out, *args) == 0
    lessons = read_jsonl(out / "round-001" / "judge.jsonl")
    assert len(lessons) == 20 and {r["completion"] for r in lessons} == {"a", "b"}  # both orders of 10 pairs
    pairs = read_jsonl(out / "round-001" / "pairs.jsonl")
    for p in pairs:
        assert p["epsilon"] == pytest.approx(1 - max(p["label"], 1 - p["label"]))
        assert p["label"] == pytest.approx(0.5 + (p["orders"][0] - (1 - p["orders"][1])) / 2)
    labeller = read_jsonl(out / "metrics.jsonl")[1]["labeller"]
    assert {"accuracy", "flip_rate", "first_position", "ece"} <= set(labeller)
    assert "labeller flip rate" in (out / "report.html").read_text()
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert "round-001/judge" in stages and "round-001/eft_pairs" in stages
    assert main(["run", str(config), "--out", str(out), "--resume", *SMALL, *args]) == 0
    assert json.loads((out / "manifest.json").read_text())["stages"] == stages


def test_hard_labels_one_order_and_principles(config, tmp_path):
    constitution = tmp_path / "constitution.jsonl"
    constitution.write_text('{"comparison": "x"}\n{"comparison": "y"}\n')
    out = tmp_path / "hard"
    extra = ["params.soft=false", "params.swap=false", f"params.constitution={constitution}"]
    assert run(config, out, "params.eft_pairs=0", "params.eft_prompts=0", *extra) == 0
    pairs = read_jsonl(out / "round-001" / "pairs.jsonl")
    assert pairs and all("epsilon" not in p and p["orders"][1] is None for p in pairs)
    assert all(p["label"] == p["orders"][0] for p in pairs)


def test_bad_inputs_are_refused_before_the_run(config, tmp_path, capsys):
    constitution = tmp_path / "constitution.jsonl"
    constitution.write_text('{"comparison": "x"}\n{"critique": "find it"}\n')
    out = tmp_path / "bad"
    assert run(config, out, f"params.constitution={constitution}") == 2
    err = capsys.readouterr().err
    assert f"{constitution}, line 2: field 'revision'" in err and "Traceback" not in err
    assert run(config, out, "params.eft_pairs=50", "params.eft_prompts=10") == 2
    assert "params.eft_prompts" in capsys.readouterr().err
    assert run(config, out, "params.template='{prompt}{first}{answer}'") == 2
    assert "unknown placeholder {answer}" in capsys.readouterr().err
    assert not out.exists()


def test_chain_of_thought_labels_are_clamped_and_rationales_staged(config, tmp_path):
    out = tmp_path / "cot"
    cot = ["params.cot_template='{prompt}{first}:{second}:{rationale}:'", "params.cot_tokens=3"]
    assert run(config, out, "params.eft_pairs=0", "params.eft_prompts=0", *cot) == 0
    pairs = read_jsonl(out / "round-001" / "pairs.jsonl")
    assert pairs and all(0.4 <= p["label"] <= 0.6 and 0.4 <= p["orders"][0] <= 0.6 for p in pairs)
    samples = read_jsonl(out / "round-001" / "samples.jsonl")
    heads = [r["prompt"] for r in read_jsonl(out / "round-001" / "rationales-1.jsonl")]
    assert heads[0] == samples[0]["prompt"] + samples[0]["completion"] + ":" + samples[1]["completion"] + ":"
    assert (out / "round-001" / "rationales-2.jsonl").is_file()


def test_flipped_gold_labels_give_a_labeller_of_known_accuracy(config, tmp_path):
    out = tmp_path / "flip"
    assert (
        run(config, out, "params.labeller=gold", "params.eft_pairs=0", "params.eft_prompts=0", "params.gold_flip=0.3")
        == 0
    )
    pairs = read_jsonl(out / "round-001" / "pairs.jsonl")
    wrong = sum(not p["gold_agrees"] for p in pairs) / len(pairs)
    assert 0.1 < wrong < 0.5
    assert read_jsonl(out / "metrics.jsonl")[1]["labeller"]["accuracy"] == pytest.approx(1 - wrong)


def test_distilled_mode_trains_a_reward_model_on_the_soft_labels(config, tmp_path):
    out = tmp_path / "distilled"
    assert run(config, out, "params.mode=distilled", "params.eft_pairs=0", "params.eft_prompts=0") == 0
    assert (out / "round-001" / "reward_model" / "config.json").is_file()
    row = read_jsonl(out / "metrics.jsonl")[1]
    assert 0 <= row["accuracy"]["held-out pairs"] <= 1 and "labeller" in row
    assert not (out / "round-001" / "checkpoint").exists()  # no policy trained
