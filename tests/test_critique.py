"""Critiques of arithmetic scratchpads: ground-truth faults, parsing, grading, the budgeted evaluator, FSBS's pick,
and the critique recipe end to end."""

from __future__ import annotations

import json
import random

import pytest

from selfalign.cli import main
from selfalign.recipes.critique import best_of_sizes, comparison_pairs, pick
from selfalign.records import read_jsonl
from selfalign.tasks import critique as cq
from selfalign.tasks.arithmetic import TAMPER_KINDS, make_problem, solution_steps, tamper


def problems(count: int, seed: int = 0):
    rng = random.Random(seed)
    for _ in range(count):
        n = rng.randint(2, 6)
        yield make_problem(rng.randint(10 ** (n - 1), 10**n - 1), rng.randint(10 ** (n - 1), 10**n - 1), rng)


def test_tampered_solution_has_exactly_the_tamper_as_fault_and_reference_critique_fixes_it():
    rng = random.Random(1)
    kinds = set()
    for q in problems(500):
        assert cq.faults(q, solution_steps(q)) == {}
        steps, at, kind = tamper(q, rng)
        assert cq.faults(q, steps) == {at: kind}
        kinds.add(kind)
        reference = cq.reference_critique(q, steps)
        g = cq.grade(q, steps, reference)
        assert g["cbi"] and g["comprehensive"] and g["diagnosed"] and g["fixed"]
        assert (g["hallucinated"], g["nitpicks"], g["quality"]) == (0, 0, 2.0)
        (h,) = cq.parse(reference, steps)
        repaired = steps[: h.step] + [h.fix] + steps[h.step + 1 :]
        assert h.step not in cq.faults(q, repaired)
    assert kinds == set(TAMPER_KINDS)


def test_false_highlights_are_nitpicks_downstream_of_a_bug_and_hallucinations_elsewhere():
    q = make_problem(317, 865, random.Random(1))  # 7+5=12, 1+6+1=08, 3+8+0=11
    gold = solution_steps(q)
    bugged = [gold[0].replace("=12", "=02"), gold[1].replace("+1=08", "+0=07"), gold[2]]  # carry followed faithfully
    assert cq.faults(q, bugged) == {0: "sum"}
    g = cq.grade(q, bugged, f"?{bugged[1]} carry {gold[1]} ?{bugged[2]} sum {gold[2]}")
    assert (g["cbi"], g["nitpicks"], g["hallucinated"], g["caught"]) == (False, 1, 1, 0.0)
    assert g["quality"] == -1.0
    ok = cq.grade(q, gold, cq.NO_FLAW)
    assert (ok["flawed"], ok["highlights"], ok["quality"]) == (False, 0, 0.0)


def test_stopping_early_and_extra_steps_are_form_faults_with_a_fix():
    q = make_problem(317, 865, random.Random(1))
    gold = solution_steps(q)
    assert cq.faults(q, gold[:2]) == {1: "form"}
    assert cq.reference_critique(q, gold[:2]) == f"?{gold[1]} form {gold[2]}"  # the fix: the missing step
    assert cq.faults(q, gold + ["x"]) == {3: "form"}
    assert cq.reference_critique(q, gold + ["x"]) == "?x form none"
    assert cq.faults(q, [gold[0], "f1+F6+1=8", gold[2]]) == {1: "form"}


@pytest.mark.parametrize(
    "critique",
    [
        "",
        "garbage",
        "?",
        "?e7+E5+0=12 sum",
        "?e7+E5+0=99 sum e7+E5+0=12",
        "?e7+E5+0=12 typo e7+E5+0=12",
        "?e7+E5+0=12 sum 12",
        "ok ?e7+E5+0=12 sum e7+E5+0=12",
        "?e7+E5+0=12 sum e7+E5+0=12 ?",
    ],
)
def test_a_malformed_critique_or_a_quote_of_no_step_is_a_counted_invalid_critique(critique):
    q = make_problem(317, 865, random.Random(1))
    steps = solution_steps(q)
    assert cq.parse(critique, steps) is None
    g = cq.grade(q, steps, critique)
    assert (g["valid"], g["highlights"], g["quality"]) == (False, 0, -1.0)
    assert cq.critique_metrics([g, cq.grade(q, steps, cq.NO_FLAW)])["invalid"] == 0.5


def test_critique_metrics_are_shares_of_flawed_solutions():
    q = make_problem(317, 865, random.Random(1))
    gold = solution_steps(q)
    steps, at, _ = tamper(q, random.Random(0), "sum")
    caught = cq.grade(q, steps, cq.reference_critique(q, steps))
    other = next(j for j in range(3) if j != at)
    missed = cq.grade(q, steps, f"?{steps[other]} sum {steps[other]}")
    flagged_gold = cq.grade(q, gold, f"?{gold[0]} sum {gold[0]}")
    m = cq.critique_metrics([caught, missed, flagged_gold])
    assert m["cbi"] == 0.5 and m["comprehensive"] == 0.5
    assert m["hallucination"] + m["nitpick"] == 0.5
    assert m["false_flag_on_flawless"] == 1.0 and m["invalid"] == 0.0


def test_budgeted_evaluator_checks_the_pointed_steps_first():
    rng = random.Random(0)
    assert cq.evaluator_finds_bug({3}, 5, [3], 1, rng)
    assert not cq.evaluator_finds_bug({3}, 5, [1], 1, rng)
    assert cq.evaluator_finds_bug({3}, 5, [], 5, rng)  # a budget of every step always finds it
    assert cq.evaluator_finds_bug({3}, 5, [9, 3], 1, rng)  # 9 is not a step: skipped, so step 3 is checked
    found = sum(cq.evaluator_finds_bug({3}, 5, [], 1, random.Random(i)) for i in range(2000)) / 2000
    assert found == pytest.approx(0.2, abs=0.03)


def test_fsbs_pick_trades_rm_score_against_highlight_count():
    crits = [{"completion": "ok"}, {"completion": "?a x y"}, {"completion": "?a x y ?b x y ?c x y"}]
    rewards = [1.0, 0.5, 0.0]
    assert pick(crits, rewards, 0.0) is crits[0]  # best-of-N by the RM
    assert pick(crits, rewards, 0.4) is crits[2]
    assert pick(crits, rewards, -1.0) is crits[0]
    assert best_of_sizes(8) == [1, 2, 4, 8] and best_of_sizes(6) == [1, 2, 4, 6]


def test_comparison_pairs_rank_by_ground_truth():
    q = make_problem(317, 865, random.Random(1))
    steps, at, _ = tamper(q, random.Random(0), "carry")
    texts = [cq.reference_critique(q, steps), cq.NO_FLAW, "garbage", cq.NO_FLAW]
    graded = [{"prompt": "p", "completion": t, "source": "s"} | cq.grade(q, steps, t) for t in texts]
    same = [{"prompt": "p", "completion": cq.NO_FLAW, "source": "s2"} | cq.grade(q, steps, cq.NO_FLAW)] * 4
    pairs = comparison_pairs([object(), object()], graded + same)
    assert len(pairs) == 1
    assert (pairs[0]["chosen"], pairs[0]["rejected"]) == (texts[0], "garbage")


def test_critique_recipe_end_to_end_and_resume(tmp_path):
    cfg = tmp_path / "critique.yaml"
    cfg.write_text("recipe: critique\nseed: 0\nmodel:\n  path: builtin:arith-tiny\n")
    out = tmp_path / "run"
    small = ["task.train_digits=[3]", "task.eval_digits=[3]", "task.n_train=24", "task.n_eval=6"]
    small += ["sampling.temperature=1.0", "sampling.max_new_tokens=40", "training.batch_size=16", "training.lr=3e-3"]
    small += ["params.critic_steps=60", "params.rm_steps=5", "params.rs_steps=5", "params.n=4", "params.fsbs_depth=2"]
    small += ["params.rm_sums=6", "params.tampers=2", "params.critique_copies=2"]
    args = ["run", str(cfg), "--out", str(out), *small]
    assert main(args) == 0
    (row,) = read_jsonl(out / "metrics.jsonl")
    assert set(row["critics"]) >= {"sft tampered", "rs natural", "sft own", "sft best-of-4 tampered"}
    assert set(row["fsbs"]["sft tampered"]) == {"-1", "0", "0.5", "1", "2"}
    assert {"unassisted tampered", "sft critic tampered", "rs FSBS tampered"} <= set(row["assisted"])
    assert {"natural fixed, reference critique", "own broken, no critique"} <= set(row["refinement"])
    assert "D critiqueability accuracy" in row["gdc"]
    mixture = [r["prompt"].rsplit(maxsplit=1)[-1] for r in read_jsonl(out / "round-001" / "critic-sft.jsonl")]
    assert mixture.count("critique") == 2 * mixture.count("flaw")  # critique_copies
    assert row["rm_pairs"] > 0
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "manifest.json").read_text())["stages"] == stages
    assert (out / "report.html").is_file()

    # CriticGPT's critic: reference critiques only, so nothing of self-critique or refinement is measured
    assert main([*args[:3], str(tmp_path / "critic-only"), *small, "params.mixture=critiques"]) == 0
    (row,) = read_jsonl(tmp_path / "critic-only" / "metrics.jsonl")
    tasks = {
        r["prompt"].rsplit(maxsplit=1)[-1] for r in read_jsonl(tmp_path / "critic-only/round-001/critic-sft.jsonl")
    }
    assert tasks == {"critique"}
    assert set(row["critics"]) >= {"sft tampered", "rs natural"} and not any("own" in k for k in row["critics"])
    assert (
        "refinement" not in row
        and "gdc" not in row
        and set(row["fsbs"]) == {"sft tampered", "sft natural", "rs tampered", "rs natural"}
    )


def test_too_few_training_sums_or_another_task_is_refused_before_the_run(tmp_path, capsys):
    cfg = tmp_path / "critique.yaml"
    cfg.write_text("recipe: critique\nmodel:\n  path: builtin:arith-tiny\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "task.n_train=20", "params.rm_sums=10"]) == 2
    err = capsys.readouterr().err
    assert "task.n_train" in err and "must exceed 2 * params.rm_sums (20)" in err and "Traceback" not in err
    cfg.write_text("recipe: critique\ntask:\n  name: letters\n")
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "needs the arithmetic task" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
