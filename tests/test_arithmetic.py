import random

from selfalign.config import ArithmeticTaskConfig
from selfalign.tasks.arithmetic import (
    ArithmeticTask,
    answer_from_steps,
    make_problem,
    solution,
    solution_steps,
)


def test_gold_solution_checks_out_for_many_problems():
    task = ArithmeticTask()
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 9)
        lo = 10 ** (n - 1) if n > 1 else 0
        p = make_problem(rng.randint(lo, 10**n - 1), rng.randint(lo, 10**n - 1), rng)
        check = task.check(p, solution(p))
        assert check.correct and check.first_error is None and check.answer == p.answer
        assert check.n_steps == n and p.difficulty == n


def test_first_wrong_step_is_located():
    task = ArithmeticTask()
    p = make_problem(317, 865, random.Random(0))
    steps = solution_steps(p)
    assert len(steps) == 3
    for i in range(3):
        bad = list(steps)
        bad[i] = bad[i][:-1] + str((int(bad[i][-1]) + 1) % 10)  # corrupt this step's sum
        check = task.check(p, " ".join(bad))
        assert check.first_error == i
        assert not check.correct
    # Missing and extra steps are errors at the first absent / surplus position.
    assert task.check(p, " ".join(steps[:2])).first_error == 2
    assert task.check(p, " ".join(steps + steps[:1])).first_error == 3
    assert task.check(p, "garbage").first_error == 0 and task.check(p, "garbage").answer is None


def test_answer_is_read_off_the_steps():
    p = make_problem(317, 865, random.Random(0))
    assert answer_from_steps(solution_steps(p)) == "1182"
    assert answer_from_steps([]) is None


def test_hint_contains_the_answer_and_keeps_the_problem():
    task = ArithmeticTask()
    p = make_problem(317, 865, random.Random(0))
    hinted = task.hint(p)
    assert hinted.startswith(p.prompt[:-1]) and hinted.endswith("=")
    assert "".join(ch for ch in hinted.split("?")[1] if ch.isdigit()) == "1182"


def test_eval_sets_are_fixed_and_held_out_from_training():
    cfg = ArithmeticTaskConfig(train_digits=[2], eval_digits=[2, 3], n_train=200, n_eval=50)
    a, b = ArithmeticTask(cfg), ArithmeticTask(cfg)
    assert [p.id for p in a.eval_sets()["2"]] == [p.id for p in b.eval_sets()["2"]]
    held_out = {(p.meta["a"], p.meta["b"]) for ps in a.eval_sets().values() for p in ps}
    for rnd in (1, 2):
        train = a.train_problems(rnd, seed=0)
        assert len(train) == 200 and not held_out & {(p.meta["a"], p.meta["b"]) for p in train}
    assert [p.id for p in a.train_problems(1, 0)] != [p.id for p in a.train_problems(2, 0)]


def test_curriculum_grows_difficulty_per_round():
    task = ArithmeticTask(ArithmeticTaskConfig(train_digits=[3], grow_digits=1, n_train=5, eval_digits=[3]))
    assert {p.difficulty for p in task.train_problems(1, 0)} == {3}
    assert {p.difficulty for p in task.train_problems(3, 0)} == {5}


def test_prompt_order_carries_no_information():
    """Each operand's column-tagged digits are shuffled; reading them back by column gives the sum."""
    orders = set()
    for seed in range(20):
        p = make_problem(31704, 86529, random.Random(seed))
        left, right = p.prompt[:-1].split("+")
        for text, want, upper in ((left, "31704", False), (right, "86529", True)):
            pairs = [(text[i], text[i + 1]) for i in range(0, len(text), 2)]
            assert all(c.isupper() == upper for c, _ in pairs)
            assert "".join(d for _, d in sorted(pairs, key=lambda cd: cd[0].lower(), reverse=True)) == want
        orders.add(left[::2].lower())
    assert len(orders) > 10
