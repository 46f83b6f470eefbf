"""Multi-digit addition with a checkable scratchpad (the STaR arithmetic testbed, made CPU-sized).

Digits carry index hints (Zhou et al. 2023): each digit is preceded by a letter naming its column,
counting up the alphabet from the units column, which starts at a random letter; operand a uses
lower case and operand b upper case. The column-tagged digits of each operand come in a random
order, so position says nothing and every scratchpad move is a lookup by content (start at the
smallest letter, step to the next letter, stop when it is absent, fetch the digit after a letter).
A model trained this way cannot count its way through the sum, which is what lets a tiny model
extend to numbers a digit longer than it was trained on and bootstrap from there.

    prompt:      m7o3n1+O8M5N6=           (317 + 865, units column m)
    completion:  m7+M5+0=12 n1+N6+1=08 o3+O8+0=11

Each step is `<column><digit a>+<COLUMN><digit b>+<carry in>=<two-digit sum>`, right to left, so
every step can be checked on its own. The final answer is read off the steps: the last step's tens
digit followed by the ones digits from left to right (here 1182). Difficulty = number of digits.
"""

from __future__ import annotations

import random
import re
import string

from selfalign.config import ArithmeticTaskConfig
from selfalign.errors import InputError
from selfalign.tasks.base import Check, Problem, Task

COLUMNS = string.ascii_lowercase
ALPHABET = "0123456789+=? " + COLUMNS + COLUMNS.upper()  # every character the task can produce
EVAL_SEED = 1234  # held-out sets never depend on the run seed
STEP = re.compile(r"^([a-z])(\d)\+([A-Z])(\d)\+(\d)=(\d\d)$")


def make_problem(a: int, b: int, rng: random.Random) -> Problem:
    sa, sb = str(a), str(b)
    if len(sa) != len(sb):
        raise ValueError("operands must have the same number of digits")
    n = len(sa)
    start = rng.randint(0, len(COLUMNS) - n)
    cols = COLUMNS[start : start + n][::-1]  # most significant digit first, units column = start
    da, db = [c + d for c, d in zip(cols, sa)], [c.upper() + d for c, d in zip(cols, sb)]
    rng.shuffle(da)
    rng.shuffle(db)
    prompt = "".join(da) + "+" + "".join(db) + "="
    return Problem(
        id=f"add{n}-{a}+{b}-{cols[-1]}",
        prompt=prompt,
        answer=str(a + b),
        difficulty=n,
        meta={"a": sa, "b": sb, "columns": cols},
    )


def solution_steps(problem: Problem) -> list[str]:
    sa, sb, cols = problem.meta["a"], problem.meta["b"], problem.meta["columns"]
    steps, carry = [], 0
    for i in range(len(sa) - 1, -1, -1):
        total = int(sa[i]) + int(sb[i]) + carry
        steps.append(f"{cols[i]}{sa[i]}+{cols[i].upper()}{sb[i]}+{carry}={total:02d}")
        carry = total // 10
    return steps


TAMPER_KINDS = ("copy", "carry", "sum")  # the kinds of the generator's own first errors


def tamper(problem: Problem, rng: random.Random, kind: str | None = None) -> tuple[list[str], int, str]:
    """A gold solution with one subtle error, carried through like a real one: the steps, the wrong step's index
    and the kind. `copy`: an operand digit replaced by another column's digit of the same operand (the
    generator's commonest error), the step's sum then right for it; `carry`: the carry-in flipped, the sum right
    for it; `sum`: a wrong two-digit sum. Later steps take the carry the wrong step implies."""
    sa, sb, cols = problem.meta["a"], problem.meta["b"], problem.meta["columns"]
    kind = kind or rng.choice(TAMPER_KINDS)
    n = len(sa)
    at = rng.randrange(n)  # in solution order: step `at` is column n - 1 - at
    col = n - 1 - at
    if kind == "copy" and len(set(sa)) == 1:
        kind = "carry"  # every digit of a is the same: no other column's digit differs
    steps, carry = [], 0
    for j, i in enumerate(range(n - 1, -1, -1)):
        da = sa[i]
        if j == at and kind == "copy":
            da = rng.choice([sa[k] for k in range(n) if k != col and sa[k] != sa[col]])
        if j == at and kind == "carry":
            carry = 1 - carry
        total = int(da) + int(sb[i]) + carry
        if j == at and kind == "sum":
            total = rng.choice([t for t in range(20) if t != total])
        steps.append(f"{cols[i]}{da}+{cols[i].upper()}{sb[i]}+{carry}={total:02d}")
        carry = total // 10
    return steps, at, kind


def solution(problem: Problem) -> str:
    return " ".join(solution_steps(problem))


def answer_from_steps(steps: list[str]) -> str | None:
    sums = []
    for s in steps:
        m = STEP.match(s)
        if not m:
            return None
        sums.append(m.group(6))
    if not sums:
        return None
    return str(int(sums[-1][0] + "".join(s[1] for s in reversed(sums))))


def check_rounds(cfg: ArithmeticTaskConfig, rounds: int) -> None:
    """Refuse a curriculum (grow_digits) that outgrows the column letters before its last round."""
    top = max(cfg.train_digits) + cfg.grow_digits * (rounds - 1)
    if top > len(COLUMNS):
        raise InputError(
            "<config>",
            f"{rounds} rounds growing train_digits (up to {max(cfg.train_digits)}) by {cfg.grow_digits} reach "
            f"{top}-digit sums; at most {len(COLUMNS)} digits have column letters",
            field="task.grow_digits",
        )


def random_operands(n: int, rng: random.Random) -> tuple[int, int]:
    lo = 10 ** (n - 1) if n > 1 else 0
    return rng.randint(lo, 10**n - 1), rng.randint(lo, 10**n - 1)


class ArithmeticTask(Task):
    name = "arithmetic"

    def __init__(self, cfg: ArithmeticTaskConfig | None = None):
        self.cfg = cfg or ArithmeticTaskConfig()
        self._eval = {
            str(d): self._draw(d, self.cfg.n_eval, random.Random(EVAL_SEED + d)) for d in self.cfg.eval_digits
        }
        self._held_out = {(p.meta["a"], p.meta["b"]) for ps in self._eval.values() for p in ps}

    def _draw(self, n: int, count: int, rng: random.Random, exclude: set = frozenset()) -> list[Problem]:
        problems, seen = [], set(exclude)
        space = (10**n - 10 ** (n - 1) if n > 1 else 10) ** 2
        excluded = sum(len(a) == n for a, _ in exclude)  # held-out sums of other lengths take no room here
        while len(problems) < min(count, space - excluded):
            a, b = random_operands(n, rng)
            if (str(a), str(b)) not in seen:
                seen.add((str(a), str(b)))
                problems.append(make_problem(a, b, rng))
        return problems

    def train_digits(self, round: int) -> list[int]:
        return [d + self.cfg.grow_digits * (round - 1) for d in self.cfg.train_digits]

    def train_problems(self, round: int, seed: int) -> list[Problem]:
        rng = random.Random(f"{seed}-{round}")
        out = []
        for d in self.train_digits(round):
            out += self._draw(d, self.cfg.n_train, rng, exclude=self._held_out)
        return out

    def eval_sets(self) -> dict[str, list[Problem]]:
        return self._eval

    def steps(self, completion: str) -> list[str]:
        return completion.split()

    def check(self, problem: Problem, completion: str) -> Check:
        got, want = self.steps(completion), solution_steps(problem)
        first_error = next((i for i, (g, w) in enumerate(zip(got, want)) if g != w), None)
        if first_error is None and len(got) != len(want):
            first_error = min(len(got), len(want))
        answer = answer_from_steps(got)
        return Check(correct=answer == problem.answer, answer=answer, first_error=first_error, n_steps=len(got))

    def hint(self, problem: Problem) -> str:
        """The prompt with the answer given, digit by digit under its column (STaR rationalization)."""
        cols, total = problem.meta["columns"], problem.answer.zfill(len(problem.meta["a"]) + 1)
        indexed = total[0] + "".join(c + d for c, d in zip(cols, total[1:]))
        return problem.prompt[:-1] + "?" + indexed + "="
