"""Weak-to-strong testbeds (Burns et al. 2023): one shared pretraining corpus and binary tasks with ground truth.

Every model of the ladder is pretrained (LM objective) on the same corpus, which holds the three domains the
tasks ask about, so a larger model has more of what a task needs already in its features ("saliency"):

- `arith_check`  is the last step of this partial scratchpad right (a PRM's question)? Gold scratchpads of 3-4
                 digit sums (`tasks.arithmetic`) cut after a random step, or after a step whose two-digit sum
                 `tamper` made wrong, half each. The corpus has only correct solutions. (Copied digits and flipped
                 carries, the generator's own commonest errors, are not learnt at this scale from 1,000 records:
                 every size stayed at chance.)
- `letters_rm`   the paper's reward-modelling task, pairwise: which of two responses to a letters prompt has the
                 higher gold reward (`tasks.letters`)? The corpus has prompts with responses of every quality.
- `facts`        is this fact right? The corpus states a digit for each of 1,000 made-up words ("qzmo=7"); a
                 record is a fact as stated or with another digit (sciq's question with a distractor). Train and
                 test facts are disjoint, so only what pretraining memorised can answer, and memory grows sharply
                 with model size.

A record: {id, prompt, completions: [one text] or [first, second], label}; `label` is the probability of class
1 (the last step is right / the first response is better / the fact is right), 0 or 1 for ground truth, soft for weak
labels. Splits: half A (the supervisor's ground truth), half B (what the student learns from; its ground truth
trains the ceiling), test. Fixed by `seed`; the test set and the facts never depend on it.
"""

from __future__ import annotations

import random
import string

from selfalign.tasks import arithmetic, letters

FACTS_SEED, TEST_SEED = 9876, 5432
N_FACTS, TEST_FACTS = 1000, 300  # the last TEST_FACTS are the test set's
WORD_LENGTHS = (4, 6)
ALPHABET = arithmetic.ALPHABET + letters.ALPHABET


def facts() -> dict[str, str]:
    """The corpus's made-up facts: word -> digit."""
    rng, words = random.Random(FACTS_SEED), {}
    while len(words) < N_FACTS:
        words["".join(rng.choices(string.ascii_lowercase, k=rng.randint(*WORD_LENGTHS)))] = str(rng.randrange(10))
    return words


def corpus(n: int, seed: int) -> list[dict]:
    """n pretraining texts, a third from each domain, as prompt-less SFT records."""
    rng, known = random.Random(f"corpus-{seed}"), list(facts().items())
    texts = []
    for i in range(n):
        if i % 3 == 0:
            p = arithmetic.make_problem(*arithmetic.random_operands(rng.choice((3, 4)), rng), rng)
            texts.append(f"{p.prompt}{arithmetic.solution(p)}")
        elif i % 3 == 1:
            prompt = "".join(sorted(rng.sample(letters.LETTERS, letters.SET_SIZE))) + ":"
            texts.append(prompt + letters.sft_response(prompt, rng))
        else:
            texts.append(" ".join(f"{w}={d}" for w, d in rng.choices(known, k=4)))
    return [{"prompt": "", "completion": t} for t in texts]


def _arith_check(i: int, rng: random.Random) -> dict:
    p = arithmetic.make_problem(*arithmetic.random_operands(rng.choice((3, 4)), rng), rng)
    correct = rng.random() < 0.5
    if correct:
        steps = arithmetic.solution_steps(p)
        at = rng.randrange(len(steps))
    else:
        steps, at, _ = arithmetic.tamper(p, rng, "sum")
    return {"prompt": p.prompt, "completions": [" ".join(steps[: at + 1])], "label": int(correct)}


def _letters_rm(i: int, rng: random.Random) -> dict:
    prompt = "".join(sorted(rng.sample(letters.LETTERS, letters.SET_SIZE))) + ":"
    pair = letters.gold_pair(prompt, rng)
    first = rng.random() < 0.5
    texts = [pair["chosen"], pair["rejected"]] if first else [pair["rejected"], pair["chosen"]]
    return {"prompt": prompt, "completions": texts, "label": int(first)}


def _fact(i: int, rng: random.Random, known: list[tuple[str, str]]) -> dict:
    word, digit = known[i % len(known)]
    correct = rng.random() < 0.5
    stated = digit if correct else rng.choice([d for d in string.digits if d != digit])
    return {"prompt": "", "completions": [f"{word}={stated}"], "label": int(correct)}


DATASETS = ("arith_check", "letters_rm", "facts")


def splits(name: str, n: int, n_test: int, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Half A and half B (n records each, drawn with `seed`) and the test set (n_test, fixed)."""
    known = list(facts().items())
    pools = {"train": known[:-TEST_FACTS], "test": known[-TEST_FACTS:]}

    def draw(count: int, rng: random.Random, tag: str) -> list[dict]:
        if name == "facts":
            rng.shuffle(pool := list(pools[tag]))
            made = [_fact(i, rng, pool) for i in range(count)]
        else:
            make = {"arith_check": _arith_check, "letters_rm": _letters_rm}[name]
            made = [make(i, rng) for i in range(count)]
        return [{"id": f"{name}-{tag}-{i}", **r} for i, r in enumerate(made)]

    both = draw(2 * n, random.Random(f"{name}-{seed}"), "train")
    return both[:n], both[n:], draw(n_test, random.Random(f"{name}-{TEST_SEED}"), "test")
