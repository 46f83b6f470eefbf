"""End-to-end preference recipes on the gold-reward testbed and its shipped SFT checkpoint (seconds each)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from selfalign.cli import main
from selfalign.records import read_jsonl

SMALL = [
    "task.n_prompts=64",
    "task.seed_fraction=0.25",
    "task.n_eval=16",
    "training.steps=6",
    "training.batch_size=8",
    "eval.k=2",
    "eval.temperature=1.0",
    "sampling.max_new_tokens=12",
]


def run(tmp_path, recipe, *overrides, name="run"):
    cfg = tmp_path / f"{recipe}.yaml"
    cfg.write_text(f"recipe: {recipe}\nseed: 3\nmodel:\n  path: builtin:letters-sft\ntask:\n  name: letters\n")
    out = tmp_path / name
    assert main(["run", str(cfg), "--out", str(out), *SMALL, *overrides]) == 0
    return out


@pytest.mark.parametrize("loss", ["sigmoid", "ipo", "robust", "dpo_nll"])
def test_dpo_on_seed_pairs(tmp_path, loss):
    extra = ["preference.label_smoothing=0.1"] if loss == "robust" else []
    out = run(tmp_path, "dpo", "params.data=seed", f"preference.loss={loss}", *extra)
    pairs = read_jsonl(out / "round-001" / "pairs.jsonl")
    assert len(pairs) == 16 and all(p["chosen"] != p["rejected"] for p in pairs)
    log = read_jsonl(out / "round-001" / "checkpoint" / "train_log.jsonl")
    assert len(log) == 6
    for key in ["rewards/accuracy", "rewards/margin", "logps/chosen", "logps/rejected", "length/chosen"]:
        assert key in log[-1], key
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["round"] for m in metrics] == [0, 1]
    assert 0 <= metrics[1]["win_rate"] <= 1 and "gold_reward" in metrics[1]
    assert (out / "report.html").is_file() and (out / "accuracy.png").is_file()


def test_dpo_from_user_jsonl_skips_identical_pairs(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "abcd:", "chosen": "abca", "rejected": "xyzq"},
        {"prompt": "efgh:", "chosen": "eeff", "rejected": "eeff"},
        {"prompt": "ijkl:", "chosen": "ijkl", "rejected": "mmmm", "margin": 1.5},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = run(tmp_path, "dpo", f"params.data={data}")
    assert len(read_jsonl(out / "round-001" / "pairs.jsonl")) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["round-001/pairs"]["summary"]["skipped"] == {"identical chosen and rejected": 1}
    assert "skipped 1 pairs (identical chosen and rejected)" in capsys.readouterr().out


def test_reward_recipe_and_rejection_with_rm_scorer(tmp_path):
    rm_run = run(tmp_path, "reward", "params.data=all", "params.margins=large", name="rm")
    metrics = read_jsonl(rm_run / "metrics.jsonl")
    assert [m["round"] for m in metrics] == [0, 1]
    assert set(metrics[1]["accuracy"]) == {"held-out pairs"}
    rows = read_jsonl(rm_run / "round-001" / "pair_eval.jsonl")
    assert len(rows) == 16 and {"reward_chosen", "reward_rejected"} <= set(rows[0])
    rm = rm_run / "round-001" / "checkpoint"
    assert json.loads((rm / "config.json").read_text())["architectures"] == ["LlamaForSequenceClassification"]

    out = run(
        tmp_path,
        "rejection",
        "params.rounds=1",
        "params.k=3",
        f"params.reward_models=[{{path: {rm}}}]",
        name="rs",
    )
    samples = read_jsonl(out / "round-001" / "samples.jsonl")
    assert len(samples) == 64 * 3
    train = read_jsonl(out / "round-001" / "train.jsonl")
    assert len(train) == 64  # no threshold with a reward model: the best of each prompt's 3 samples
    assert (out / "round-001" / "checkpoint" / "config.json").is_file()


def test_bad_pairs_file_fails_before_the_run_dir(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "abcd:", "chosen": "ab", "rejected": "cd", "margin": "big"}\n')
    cfg = tmp_path / "dpo.yaml"
    cfg.write_text(
        f"recipe: dpo\nmodel: {{path: builtin:letters-sft}}\ntask: {{name: letters}}\nparams: {{data: {data}}}\n"
    )
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    assert "pairs.jsonl, line 1: field 'margin': must be a number" in capsys.readouterr().err
    assert not out.exists()


def test_a_redone_reward_training_stage_draws_the_same_fresh_head(tmp_path):
    """The training stage seeds the RNG before it draws the fresh head, so a resumed run that redoes the stage
    (here: as a kill during training leaves it) trains the same reward model as the uninterrupted run did."""
    from safetensors.torch import load_file

    args = ["params.data=seed", "training.steps=2"]
    out = run(tmp_path, "reward", *args)
    ckpt = out / "round-001" / "checkpoint"
    whole = load_file(ckpt / "model.safetensors")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["stages"] = {k: v for k, v in manifest["stages"].items() if k.startswith("round-000/")}
    (out / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(ckpt)
    torch.manual_seed(123)  # the resuming process starts from another RNG state
    cfg = tmp_path / "reward.yaml"
    assert main(["run", str(cfg), "--out", str(out), "--resume", *SMALL, *args]) == 0
    redone = load_file(ckpt / "model.safetensors")
    assert whole.keys() == redone.keys() and all(torch.equal(whole[k], redone[k]) for k in whole)
