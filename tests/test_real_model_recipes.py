"""The AI-feedback and critique recipes on the real model and the `ifeval` testbed, at the smallest sizes (the
mechanics on a real tokenizer and chat template; the effects are in BENCHMARKS.md): HIR's hindsight relabelling,
self-critique, SL-CAI and RL-CAI (an LLM judge with principles). Skipped unless SmolLM2's GGUF package is installed."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import smollm2_missing

if reason := smollm2_missing():
    pytest.skip(reason, allow_module_level=True)

from selfalign.cli import main  # noqa: E402
from selfalign.records import read_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "task.n_eval=2",
    "sampling.max_new_tokens=12",
    "training.steps=1",
    "training.batch_size=2",
    "model.lora.r=4",
    "model.lora.alpha=8",
]


def run(tmp_path, config: str, *overrides: str) -> Path:
    out = tmp_path / Path(config).stem
    assert main(["run", str(ROOT / "configs" / config), "--out", str(out), *TINY, *overrides]) == 0
    return out


def test_hir_relabels_ifeval_prompts_to_the_constraints_followed(tmp_path):
    out = run(tmp_path, "hir_ifeval.yaml", "task.n_train=3", "params.rounds=1", "params.n=1")
    samples = {r["id"]: r for r in read_jsonl(out / "round-001" / "samples.jsonl")}
    records = read_jsonl(out / "round-001" / "train.jsonl")
    assert len(records) == 3
    for rec in records:
        sample = samples[rec["source"]]
        if sample["correct"]:
            assert rec["prompt"] == sample["prompt"] and rec["negative_prompt"] != sample["prompt"]
        else:
            assert len(rec["prompt"]) < len(sample["prompt"]) and rec["negative_prompt"] == sample["prompt"]


def test_self_critique_on_smollm2(tmp_path):
    out = run(tmp_path, "self_critique_ifeval.yaml", "params.critique_tokens=8")
    row = read_jsonl(out / "metrics.jsonl")[0]
    assert {"answers", "refined with critique", "refined without critique", "critiqueability"} <= set(row)


def test_cai_on_smollm2(tmp_path):
    out = run(
        tmp_path,
        "cai_ifeval.yaml",
        "task.n_train=4",
        "params.prompts=2",
        "params.rl_prompts=2",
        "params.revisions=1",
        "params.critique_tokens=8",
    )
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2] and "revision 1" in rows[1]["sl_chain"]
    critique = read_jsonl(out / "round-001" / "critiques-1.jsonl")[0]["prompt"]
    assert "Request:" in critique and any(len(c) > 20 and c in critique for c in CRITIQUES)


def test_spa_seeds_ifeval_with_gold_labelled_samples(tmp_path):
    over = ["task.n_train=4", "params.seed_prompts=2", "params.prompts_per_iteration=2", "params.iterations=1"]
    out = run(tmp_path, "spa_ifeval.yaml", *over)
    pairs = read_jsonl(out / "round-001" / "pairs.jsonl")  # best against worst of k by gold; gold ties not trained on
    samples = {(r["prompt"], r["completion"]): r["reward"] for r in read_jsonl(out / "round-001" / "samples.jsonl")}
    for p in pairs:
        chosen, rejected = samples[p["prompt"], p["chosen"]], samples[p["prompt"], p["rejected"]]
        assert chosen >= rejected and p["gold_agrees"] == (None if chosen == rejected else True)
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[1]["train_pairs"] == sum(bool(p["gold_agrees"]) for p in pairs)
    assert not {r["prompt"] for r in read_jsonl(out / "round-002" / "samples.jsonl")} & {p["prompt"] for p in pairs}


CRITIQUES = [
    line.split('"critique": "')[1].split('"')[0]
    for line in (ROOT / "configs" / "constitution_ifeval.jsonl").read_text().splitlines()
    if '"critique"' in line
]
