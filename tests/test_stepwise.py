"""Stepwise PRM data: validation, checker and Monte Carlo step labels, aggregation, and TRL-style encoding."""

from __future__ import annotations

import json
import random

import pytest

from selfalign.batching import IGNORE, encode_stepwise
from selfalign.errors import InputError
from selfalign.evaluation.best_of_n import step_quality
from selfalign.models.tokenizer import char_tokenizer
from selfalign.records import load_stepwise, write_jsonl
from selfalign.stepwise import (
    aggregate,
    good_steps,
    mc_step_labels,
    predicted_first_error,
    step_labels_from_check,
    step_prefixes,
)
from selfalign.tasks.arithmetic import ALPHABET, ArithmeticTask, answer_from_steps, make_problem, solution_steps

TASK = ArithmeticTask()
GOOD = {"prompt": "p", "completions": ["a", "b"], "labels": [True, False]}


def write(tmp_path, rows):
    path = tmp_path / "steps.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def problem():
    return make_problem(317, 865, random.Random(0))  # 3 steps, answer 1182


def corrupt(step: str) -> str:
    """The same step with a wrong two-digit sum (its last digit bumped)."""
    return step[:-1] + str((int(step[-1]) + 1) % 10)


# --- encode_stepwise -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sep", [" ", "\n", " ;"])
@pytest.mark.parametrize("bos", [True, False])
def test_labels_sit_on_the_separator_after_each_step(sep, bos):
    tok = char_tokenizer(ALPHABET + ";\n")
    if not bos:
        tok.bos_token = None
    p = problem()
    steps = solution_steps(p)
    labels = [True, False, True]
    enc = encode_stepwise(tok, p.prompt, steps, labels, sep=sep)
    ids, lab = enc["input_ids"], enc["labels"]

    assert len(ids) == len(lab) == int(bos) + len(p.prompt) + sum(len(s) + len(sep) for s in steps)
    assert (ids[0] == tok.bos_token_id) if bos else (tok.convert_tokens_to_ids("<s>") not in ids)
    assert tok.decode(ids, skip_special_tokens=True) == p.prompt + "".join(s + sep for s in steps)

    labelled = [i for i, v in enumerate(lab) if v != IGNORE]
    assert len(labelled) == len(steps)  # exactly one label per step, everything else ignored
    end = int(bos) + len(p.prompt)
    for k, (pos, step) in enumerate(zip(labelled, steps)):
        end += len(step) + len(sep)
        assert pos == end - 1  # the last character of step + sep ...
        assert tok.decode([ids[pos]]) == sep[-1]  # ... which is the separator's
        assert tok.decode(ids[pos - len(sep) - len(step) + 1 : pos + 1]) == step + sep
        assert lab[pos] == int(labels[k])


def test_label_classes():
    tok = char_tokenizer("0123456789+= abc")
    steps = ["1+1=2", "2+2=5", "b"]
    binary = encode_stepwise(tok, "a", steps, [1, 0, True])["labels"]
    ternary = encode_stepwise(tok, "a", steps, [-1, 0, 1], label_kind="ternary")["labels"]
    assert [v for v in binary if v != IGNORE] == [1, 0, 1]
    assert [v for v in ternary if v != IGNORE] == [0, 1, 2]
    with pytest.raises(ValueError, match="soft"):
        encode_stepwise(tok, "a", steps, [0.5, 0.5, 0.5], label_kind="soft")
    with pytest.raises(ValueError, match="2 labels for 3 steps"):
        encode_stepwise(tok, "a", steps, [1, 0])
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        encode_stepwise(tok, "a", steps, [2, 0, 1], label_kind="ternary")


# --- labels from a checker ------------------------------------------------------------------------------------


def test_step_labels_from_arithmetic_check_stop_at_first_error():
    task, p = TASK, problem()
    steps = solution_steps(p)
    steps[1] = corrupt(steps[1])
    check = task.check(p, " ".join(steps))
    assert not check.correct and check.first_error == 1 and check.n_steps == 3
    assert step_labels_from_check(check.n_steps, check.first_error, "binary") == [True, False]
    assert step_labels_from_check(check.n_steps, check.first_error, "ternary") == [1, -1]
    assert step_labels_from_check(check.n_steps, check.first_error, "soft") == [1.0, 0.0]

    good = task.check(p, " ".join(solution_steps(p)))
    assert step_labels_from_check(good.n_steps, good.first_error, "ternary") == [1, 1, 1]
    short = task.check(p, " ".join(solution_steps(p)[:2]))  # a missing last step flags no given step
    assert short.first_error == 2 and step_labels_from_check(short.n_steps, short.first_error, "binary") == [True] * 2
    first = task.check(p, " ".join([corrupt(solution_steps(p)[0])] + solution_steps(p)[1:]))
    assert step_labels_from_check(first.n_steps, first.first_error, "binary") == [False]
    with pytest.raises(ValueError):
        step_labels_from_check(3, 4, "binary")


def test_good_steps_counts_ternary_neutral_as_good():
    assert good_steps([True, False, 1, 0], "binary") == [True, False, True, False]
    assert good_steps([1, 0, -1, 0], "ternary") == [True, True, False, True]


def test_checker_labels_round_trip_through_load_stepwise(tmp_path):
    task, p = TASK, problem()
    steps = solution_steps(p)
    steps[1] = corrupt(steps[1])
    check = task.check(p, " ".join(steps))
    labels = step_labels_from_check(check.n_steps, check.first_error, "ternary")
    path = tmp_path / "prm.jsonl"
    write_jsonl(path, [{"prompt": p.prompt, "completions": steps[: len(labels)], "labels": labels}])
    assert load_stepwise(path, "ternary") == [{"prompt": p.prompt, "completions": steps[:2], "labels": [1, -1]}]


# --- Monte Carlo labels --------------------------------------------------------------------------------------

N = 4
SUCCESSES = {1: 3, 2: 1, 3: 4}  # rollouts (of N) that reach the gold answer from k correct steps


def toy_policy(p, prefix: str) -> list[str | None]:
    """N deterministic rollouts continued from `prefix`: final answers only.

    From a prefix of k correct steps, the first SUCCESSES[k] rollouts finish the solution correctly and the
    rest either slip on the next step (a wrong answer) or babble (no answer). A prefix containing an error
    is continued correctly, which carries the error to the final answer, so no rollout succeeds.
    """
    gold_steps = solution_steps(p)
    done = TASK.steps(prefix)
    k = len(done)
    if done != gold_steps[:k]:
        return [answer_from_steps(done + gold_steps[k:]) for _ in range(N)]
    rest = gold_steps[k:]
    answers = []
    for r in range(N):
        if r < SUCCESSES[k]:
            answers.append(answer_from_steps(done + rest))
        elif r % 2:
            answers.append(answer_from_steps(done + [corrupt(rest[0])] + rest[1:]))
        else:
            answers.append(answer_from_steps(done + ["??"]))
    return answers


def test_step_prefixes():
    assert step_prefixes(["a", "b", "c"]) == ["a ", "a b ", "a b c "]
    assert step_prefixes(["a", "b"], sep="\n") == ["a\n", "a\nb\n"]


def test_mc_step_labels_on_a_toy_policy():
    p = problem()
    gold = solution_steps(p)
    answers = [toy_policy(p, prefix) for prefix in step_prefixes(gold)]
    flat = [a for step in answers for a in step]
    assert None in flat and any(a not in (None, p.answer) for a in flat)  # both kinds of failure occur
    assert mc_step_labels(answers, p.answer, "hard") == [1.0, 1.0, 1.0]
    assert mc_step_labels(answers, p.answer, "soft") == [0.75, 0.25, 1.0]

    bad = [gold[0], corrupt(gold[1]), gold[2]]
    answers = [toy_policy(p, prefix) for prefix in step_prefixes(bad)]
    hard = mc_step_labels(answers, p.answer, "hard")
    assert hard == [1.0, 0.0, 0.0]  # no rollout recovers once step 1 is wrong
    assert mc_step_labels(answers, p.answer, "soft") == [0.75, 0.0, 0.0]
    # on the supervised prefix, Monte Carlo hard labels agree with the checker's
    check = TASK.check(p, " ".join(bad))
    truth = step_labels_from_check(check.n_steps, check.first_error, "soft")
    assert hard[: len(truth)] == truth

    with pytest.raises(ValueError, match="no rollouts"):
        mc_step_labels([["1"], []], "1", "soft")


# --- aggregation ---------------------------------------------------------------------------------------------


def test_aggregate():
    scores = [0.9, 0.5, 0.8]
    assert aggregate(scores, "product") == pytest.approx(0.36)
    assert aggregate(scores, "min") == 0.5
    assert aggregate(scores, "last") == 0.8
    with pytest.raises(ValueError):
        aggregate([], "min")
    with pytest.raises(ValueError):
        aggregate(scores, "mean")


def test_predicted_first_error():
    assert predicted_first_error([0.9, 0.4, 0.2]) == 1
    assert predicted_first_error([0.9, 0.4, 0.2], threshold=0.3) == 2
    assert predicted_first_error([0.9, 0.5, 0.6]) is None  # a score at the threshold is not an error
    assert predicted_first_error([]) is None


def test_step_quality_by_hand():
    # labels run up to the first error; scores past them are not judged
    solutions = [([0.9, 0.3, 0.8], [True, False]), ([0.7, 0.6], [True, True]), ([0.2], [True])]
    q = step_quality(solutions)
    assert q["step_accuracy"] == pytest.approx(4 / 5)  # only 0.2 on a good step is wrong
    assert q["first_error_accuracy"] == pytest.approx(2 / 3)  # the third has no error but is predicted one at 0
    assert q["step_auc"] == pytest.approx(3 / 4)  # good steps 0.9, 0.7, 0.6, 0.2 against the bad step's 0.3


# --- load_stepwise -------------------------------------------------------------------------------------------


def test_valid_files_load(tmp_path):
    rows = [GOOD, {"prompt": "", "completions": ["x"], "labels": [1]}, {**GOOD, "labels": [0, 1], "extra": 3}]
    assert load_stepwise(write(tmp_path, rows)) == rows
    ternary = [{**GOOD, "labels": [-1, 0]}, {"prompt": "q", "completions": ["x"], "labels": [1]}]
    assert load_stepwise(write(tmp_path, ternary), "ternary") == ternary
    soft = [{**GOOD, "labels": [0.25, 1]}, {**GOOD, "labels": [0, 0.0]}]
    assert load_stepwise(write(tmp_path, soft), "soft") == soft
    with pytest.raises(ValueError):
        load_stepwise(write(tmp_path, [GOOD]), "fuzzy")


@pytest.mark.parametrize(
    ("bad", "kind", "message"),
    [
        ("{not json", "binary", "line 2: not valid JSON"),
        ({"prompt": "p", "completions": ["a"]}, "binary", "line 2: field 'labels': missing required field"),
        ({**GOOD, "prompt": 3}, "binary", "line 2: field 'prompt': must be a string"),
        ({**GOOD, "completions": "a b"}, "binary", "line 2: field 'completions': must be a non-empty list"),
        ({**GOOD, "completions": [], "labels": []}, "binary", "line 2: field 'completions': must be a non-empty"),
        ({**GOOD, "completions": ["a", " "]}, "binary", "line 2: field 'completions': empty step at index 1"),
        ({**GOOD, "completions": ["a", 2]}, "binary", "line 2: field 'completions': step at index 1 must be a str"),
        ({**GOOD, "labels": "10"}, "binary", "line 2: field 'labels': must be a list"),
        ({**GOOD, "labels": [True]}, "binary", "line 2: field 'labels': has 1 labels for 2 steps"),
        ({**GOOD, "labels": [1, 0, 1]}, "binary", "line 2: field 'labels': has 3 labels for 2 steps"),
        ({**GOOD, "labels": [True, 2]}, "binary", "line 2: field 'labels': binary label at index 1"),
        ({**GOOD, "labels": [0.5, 1]}, "binary", "line 2: field 'labels': binary label at index 0"),
        ({**GOOD, "labels": [1, 2]}, "ternary", "line 2: field 'labels': ternary label at index 1"),
        ({**GOOD, "labels": [True, 1]}, "ternary", "line 2: field 'labels': ternary label at index 0"),
        ({**GOOD, "labels": [0.5, 1.5]}, "soft", "line 2: field 'labels': soft label at index 1"),
        ({**GOOD, "labels": ["0.5", 1]}, "soft", "line 2: field 'labels': soft label at index 0"),
        ({**GOOD, "labels": [0.5, float("nan")]}, "soft", "line 2: field 'labels': soft label at index 1"),
    ],
)
def test_bad_record_is_located(tmp_path, bad, kind, message):
    first = {**GOOD, "labels": [1, 0]}  # valid under every label kind
    path = write(tmp_path, [first, bad])
    with pytest.raises(InputError) as e:
        load_stepwise(path, kind)
    assert str(e.value).startswith(str(path)) and message in str(e.value)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_empty_file_is_an_error(tmp_path, text):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    with pytest.raises(InputError, match="no stepwise records") as e:
        load_stepwise(path)
    assert str(e.value).startswith(str(path))
