"""PRM active learning: the convincing-wrong selection, and the recipe end to end."""

import json

from selfalign.cli import main
from selfalign.recipes.prm_active import convincing_wrong
from selfalign.records import read_jsonl


def test_convincing_wrong_answers_are_the_top_scored_wrong_ones():
    scored = [
        {"id": "a", "correct": True, "scores": {"prm": [0.99, 0.99]}},
        {"id": "b", "correct": False, "scores": {"prm": [0.9, 0.5]}},  # product 0.45
        {"id": "c", "correct": False, "scores": {"prm": [0.8, 0.8]}},  # 0.64
        {"id": "d", "correct": False, "scores": {"prm": [0.1]}},
    ]
    assert convincing_wrong(scored, 2) == ["c", "b"]
    assert convincing_wrong(scored, 10) == ["c", "b", "d"]


def test_recipe_end_to_end(tmp_path):
    cfg = tmp_path / "al.yaml"
    cfg.write_text("recipe: prm_active\nseed: 2\nmodel:\n  path: builtin:arith-tiny\n")
    out = tmp_path / "run"
    small = ["task.train_digits=[3]", "task.eval_digits=[3]", "task.n_train=6", "task.n_eval=3"]
    small += ["sampling.temperature=1.5", "sampling.max_new_tokens=40", "training.steps=2", "training.batch_size=4"]
    args = ["run", str(cfg), "--out", str(out), *small, "params.k=4", "params.iterations=2", "params.budget=5"]
    assert main([*args, "params.n=4"]) == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2] and [r["labelled_solutions"] for r in rows] == [0, 5, 10]
    assert set(rows[2]["verifier_auc"]) == {"orm", "prm-random", "prm-active"}
    assert set(rows[2]["prm_quality"]) == {"prm-random", "prm-active"}
    # round 2's active PRM learns from round 1's random batch plus the pool's most convincing wrong answers
    pool = {r["id"]: r for r in read_jsonl(out / "round-000" / "pool.jsonl")}
    scores = read_jsonl(out / "round-002" / "pool_scores-active.jsonl")
    r1 = {r["source"] for r in read_jsonl(out / "round-001" / "prm-active.jsonl")}
    r2 = [r["source"] for r in read_jsonl(out / "round-002" / "prm-active.jsonl")]
    assert set(r2[:5]) == r1 and r1.isdisjoint(r["id"] for r in scores)
    assert r2[5:] == convincing_wrong(scores, 5) and not any(pool[i]["correct"] for i in r2[5:])
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert main([*args, "params.n=4", "--resume"]) == 0
    assert json.loads((out / "manifest.json").read_text())["stages"] == stages
