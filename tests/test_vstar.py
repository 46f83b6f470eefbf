"""V-STaR and its verifiers: an end-to-end run (seconds), the PRM's read-out positions, and the MC labels'
alignment with the rollouts that produced them."""

import json
import random

import pytest
import torch

from selfalign.cli import main
from selfalign.models.prm import load_process_reward_model
from selfalign.recipes.vstar import correct_incorrect_pairs
from selfalign.records import read_jsonl, write_jsonl
from selfalign.stepwise import checker_step_record, step_labels_from_check
from selfalign.tasks.arithmetic import ArithmeticTask, make_problem, solution_steps
from selfalign.training.objectives import outcome_loss, step_loss
from tests.test_recipes_e2e import run
from tests.test_stepwise import corrupt

VERIFIERS = ("vstar", "orm", "prm", "prm_mc")


@pytest.fixture(scope="module")
def vstar_run(tmp_path_factory):
    out = run(
        tmp_path_factory.mktemp("vstar"),
        "vstar",
        "task.train_digits=[3]",
        "task.eval_digits=[3]",
        "sampling.temperature=1.0",
        "params.iterations=2",
        "params.k=3",
        "params.verifier_steps=4",
        "params.verifier_lr=1e-4",
        "params.mc_solutions=4",
        "params.mc_rollouts=2",
        "params.n=4",
    )
    return out


def test_vstar_writes_d_ver_verifiers_scores_and_curves(vstar_run):
    out = vstar_run
    manifest = json.loads((out / "manifest.json").read_text())["stages"]
    for stage in [
        "round-001/samples",
        "round-001/train",
        "round-002/samples",
        "round-002/mc_rollouts",
        "round-002/test_samples",
        "round-002/verifier_scores",
        *(f"round-002/{v}" for v in VERIFIERS),
    ]:
        assert stage in manifest, stage
    for v in VERIFIERS:
        assert (out / "round-002" / v / "config.json").is_file(), v
        assert manifest[f"round-002/{v}"]["summary"]["lr"] == 1e-4, v  # params.verifier_lr, not training.lr
    assert manifest["round-001/train"]["summary"]["lr"] != 1e-4
    # D_VER is every sample of every round; the verifiers train on the union.
    d_ver = read_jsonl(out / "round-001" / "samples.jsonl") + read_jsonl(out / "round-002" / "samples.jsonl")
    assert len(d_ver) == 2 * 12 * 3
    assert len(read_jsonl(out / "round-002" / "orm.jsonl")) == len(d_ver)
    for r in read_jsonl(out / "round-002" / "vstar.jsonl"):
        assert r["chosen"] != r["rejected"]
    for name in ("prm", "prm_mc"):
        for r in read_jsonl(out / "round-002" / f"{name}.jsonl"):
            assert len(r["labels"]) == len(r["completions"]) and all(isinstance(x, bool) for x in r["labels"])
    mc = read_jsonl(out / "round-002" / "mc_rollouts.jsonl")
    assert mc and mc[0]["provenance"]["stage"] == "round-002/mc_rollouts"
    scores = read_jsonl(out / "round-002" / "verifier_scores.jsonl")
    assert len(scores) == 8 * 4 and set(scores[0]["scores"]) == set(VERIFIERS)
    assert all(len(r["scores"]["prm"]) == r["n_steps"] for r in scores)
    last = read_jsonl(out / "metrics.jsonl")[-1]
    assert last["round"] == 2 and last["selection_set"] == "3"
    curves = last["best_of_n"]
    assert {"majority vote", "vstar", "orm", "prm (product)", "prm_mc (min)", "orm weighted vote"} <= set(curves)
    assert all(list(c) == ["1", "2", "4"] for c in curves.values())
    assert all(c["4"] <= curves["pass@k (oracle)"]["4"] + 1e-9 for c in curves.values())
    assert set(last["prm_quality"]) == {"prm", "prm_mc"}
    assert (out / "best_of_n_round2.png").is_file() and "Best-of-N" in (out / "report.html").read_text()


def test_eval_scores_a_runs_samples_as_the_recipe_did(vstar_run, tmp_path):
    """`selfalign eval --verifier` on the run's own test samples reproduces the recipe's verifier scores and curves."""
    r2, out = vstar_run / "round-002", tmp_path / "ev"
    args = ["eval", "--model", str(r2 / "checkpoint"), "--out", str(out), "task.eval_digits=[3]", "task.n_eval=8"]
    args += ["--samples", str(r2 / "test_samples.jsonl"), "--set", "3"]
    args += ["--verifier", f"orm:{r2 / 'orm'}", "--verifier", f"prm:{r2 / 'prm'}"]
    args += ["--verifier", f"implicit:{r2 / 'vstar'}", "--reference", "builtin:arith-tiny"]
    assert main(args) == 0
    ours = read_jsonl(out / "round-000" / "verifier_scores.jsonl")
    theirs = read_jsonl(r2 / "verifier_scores.jsonl")
    assert [r["id"] for r in ours] == [r["id"] for r in theirs]
    for a, b in zip(ours, theirs):
        assert a["scores"]["orm"] == pytest.approx(b["scores"]["orm"], abs=1e-5)
        assert a["scores"]["prm"] == pytest.approx(b["scores"]["prm"], abs=1e-5)
        assert a["scores"]["implicit"] == pytest.approx(b["scores"]["vstar"], abs=1e-3)
    row = read_jsonl(out / "metrics.jsonl")[-1]
    recipe = read_jsonl(vstar_run / "metrics.jsonl")[-1]["best_of_n"]
    for ours_name, theirs_name in [("orm", "orm"), ("prm (min)", "prm (min)"), ("implicit", "vstar")]:
        assert row["best_of_n"][ours_name] == pytest.approx(recipe[theirs_name], abs=1e-6)
    assert set(row["prm_quality"]) == {"prm"} and "orm weighted vote" in row["best_of_n"]
    assert (out / "best_of_n_round0.png").is_file()


def test_eval_verifier_bad_input_is_named(vstar_run, tmp_path, capsys):
    base = ["eval", "--model", "builtin:arith-tiny", "--out", str(tmp_path / "ev")]
    assert main([*base, "--verifier", "rm:somewhere"]) == 2
    assert "--verifier" in capsys.readouterr().err
    bad = tmp_path / "samples.jsonl"
    for missing in ("gold", "id"):  # id: the scores are keyed by it
        rows = read_jsonl(vstar_run / "round-002" / "test_samples.jsonl")[:2]
        del rows[1][missing]
        bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        assert main([*base, "--verifier", f"orm:{vstar_run / 'round-002' / 'orm'}", "--samples", str(bad)]) == 2
        err = capsys.readouterr().err
        assert "samples.jsonl" in err and "line 2" in err and f"field '{missing}'" in err
        assert not (tmp_path / "ev").exists()


def test_prm_reads_one_score_per_step_at_the_separator(tiny_model_dir):
    prm = load_process_reward_model(str(tiny_model_dir))
    p = make_problem(317, 865, random.Random(0))
    steps = solution_steps(p)
    scores = prm.step_scores([p.prompt, p.prompt], [steps, steps[:1]])
    assert [len(s) for s in scores] == [3, 1] and scores[0][0] == pytest.approx(scores[1][0], abs=1e-5)
    assert prm.step_scores([p.prompt], [[]]) == [[]]


def test_checker_step_record_stops_at_the_first_error():
    task = ArithmeticTask()
    p = make_problem(317, 865, random.Random(0))
    steps = solution_steps(p)
    bad = [steps[0], steps[1][:-1] + "9", steps[2]]
    check = task.check(p, " ".join(bad))
    rec = checker_step_record({"prompt": p.prompt, "id": "x", "first_error": check.first_error}, bad)
    assert rec["completions"] == bad[:2] and rec["labels"] == [True, False]
    short = task.check(p, " ".join(steps[:2]))  # stopped early: no wrong step among those written
    rec = checker_step_record({"prompt": p.prompt, "id": "y", "first_error": short.first_error}, steps[:2])
    assert rec["labels"] == [True, True]


def test_pairs_are_correct_x_incorrect_and_capped():
    rows = [
        {"problem_id": "a", "prompt": "q", "completion": c, "correct": ok}
        for c, ok in [("r1", True), ("r2", True), ("w1", False), ("w2", False), ("w1", False)]
    ]
    pairs = correct_incorrect_pairs(rows, per_problem=10, seed=0)
    assert sorted((p["chosen"], p["rejected"]) for p in pairs) == [
        ("r1", "w1"),
        ("r1", "w2"),
        ("r2", "w1"),
        ("r2", "w2"),
    ]
    assert len(correct_incorrect_pairs(rows, per_problem=3, seed=0)) == 3
    assert correct_incorrect_pairs(rows[:2], per_problem=3, seed=0) == []


def test_verifier_losses_on_hand_values():
    logits, correct = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    expected = torch.tensor([torch.log(torch.tensor(2.0)), 2.0 + torch.log1p(torch.exp(torch.tensor(-2.0)))])
    assert torch.allclose(outcome_loss(logits, correct), expected, atol=1e-6)
    step_logits = torch.tensor([[[0.0, 0.0], [1.0, 3.0], [5.0, 5.0]]])
    labels = torch.tensor([[-100, 1, 0]])
    want = (torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log(torch.tensor(2.0))) / 2
    assert step_loss(step_logits, labels) == pytest.approx(want.item(), abs=1e-6)


@pytest.mark.parametrize("kind", ["orm", "prm"])
def test_a_trained_verifier_scores_rejection_sampling(vstar_run, tmp_path, kind):
    path = vstar_run / "round-002" / kind
    out = run(tmp_path, "rejection", "params.rounds=1", "params.k=2", f"params.verifier={{path: {path}, kind: {kind}}}")
    samples = read_jsonl(out / "round-001" / "train.jsonl")
    assert samples and all(r["provenance"]["scorer"].startswith(f"{kind}:") for r in samples)


def stepwise_file(path, n, seed, label_kind="binary"):
    """Arithmetic solutions, half with one corrupted step; checker labels (binary: up to the first error)."""
    rng, rows = random.Random(seed), []
    for i in range(n):
        p = make_problem(rng.randrange(100, 1000), rng.randrange(100, 1000), rng)
        steps = solution_steps(p)
        if i % 2:
            at = rng.randrange(len(steps))
            steps[at] = corrupt(steps[at])
        check = ArithmeticTask().check(p, " ".join(steps))
        labels = step_labels_from_check(check.n_steps, check.first_error, label_kind)
        rows.append({"prompt": p.prompt, "completions": steps[: len(labels)], "labels": labels})
    write_jsonl(path, rows)
    return path


@pytest.mark.parametrize("label_kind", ["binary", "ternary"])
def test_prm_recipe_trains_on_a_stepwise_file(tmp_path, label_kind):
    train = stepwise_file(tmp_path / "train.jsonl", 16, 0, label_kind)
    test = stepwise_file(tmp_path / "test.jsonl", 6, 1, label_kind)
    out = run(tmp_path, "prm", f"params.data={train}", f"params.eval_data={test}", f"params.label_kind={label_kind}")
    assert (out / "round-001" / "prm" / "config.json").is_file()
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["train_records"] == 16
    for r in rows:
        assert 0 <= r["accuracy"]["held-out steps"] <= 1 and 0 <= r["first_error_accuracy"] <= 1
    scored = read_jsonl(out / "round-001" / "step_eval.jsonl")
    assert [len(r["scores"]) for r in scored] == [len(r["completions"]) for r in scored]


def test_prm_recipe_names_a_bad_stepwise_line(tmp_path, capsys):
    train = stepwise_file(tmp_path / "train.jsonl", 4, 0)
    lines = train.read_text().splitlines()
    rec = json.loads(lines[2])
    rec["labels"] = rec["labels"] + [True]
    lines[2] = json.dumps(rec)
    train.write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "prm.yaml"
    cfg.write_text(f"recipe: prm\nparams:\n  data: {train}\n  eval_data: {train}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "train.jsonl, line 3: field 'labels'" in err and "labels for" in err
    assert not (tmp_path / "run").exists()


def test_verifier_batches_are_not_length_grouped(tiny_model_dir, monkeypatch):
    """Stepwise records end at their first error, so length-sorted batches would be label-sorted."""
    from selfalign.config import TrainingConfig
    from selfalign.models.reward import load_reward_model
    from selfalign.training import trainer
    from selfalign.training.orm_prm import train_orm, train_prm

    def refuse(*args, **kwargs):
        raise AssertionError("verifier training must not group batches by length")

    monkeypatch.setattr(trainer, "LengthGroupedBatchSampler", refuse)
    cfg = TrainingConfig(steps=1, batch_size=2, group_by_length=True)
    p = make_problem(123, 456, random.Random(0))
    steps = solution_steps(p)
    stepwise = [{"prompt": p.prompt, "completions": steps[:n], "labels": [True] * n} for n in (1, 2, 3)]
    train_prm(load_process_reward_model(str(tiny_model_dir)), stepwise, cfg, None)
    outcomes = [{"prompt": p.prompt, "completion": " ".join(steps[:n]), "correct": n == 3} for n in (1, 2, 3)]
    train_orm(load_reward_model(str(tiny_model_dir)), outcomes, cfg, None)
