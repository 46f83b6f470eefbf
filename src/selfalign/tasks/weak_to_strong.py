"""Weak-to-strong testbeds (Burns et al. 2023): one shared pretraining corpus and binary tasks with ground truth.

Every model of the ladder is pretrained (LM objective) on the same corpus, which holds the three domains the
tasks ask about, so a larger model has more of what a task needs already in its features ("saliency"):

- `arith_check`  is this scratchpad step right? One step of a 3-4 digit sum (`tasks.arithmetic`), as the gold
                 solution has it or with a wrong two-digit sum (`tamper`), half each. The corpus has worked sums
                 and, as text on the web judges work, single steps followed by a verdict ("o7+O5+0=13 no"):
                 the judgement is there to be learnt in pretraining, and a bigger model learns more of it.
                 (Without the verdicts, whole solutions or single steps, every size stayed at chance: a model
                 this small does not learn to check sums from 1,000 fine-tuning records.)
- `letters_rm`   the paper's reward-modelling task, pairwise: which of two responses to a letters prompt has the
                 higher gold reward (`tasks.letters`)? The corpus has prompts with responses of every quality.
- `facts`        is this fact right? The corpus states a digit for each of 200 made-up words ("qzmo=7"); a
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
N_FACTS, TEST_FACTS = 200, 60  # the last TEST_FACTS are the test set's
WORD_LENGTHS = (4, 6)
ALPHABET = arithmetic.ALPHABET + letters.ALPHABET


def facts() -> dict[str, str]:
    """The corpus's made-up facts: word -> digit."""
    rng, words = random.Random(FACTS_SEED), {}
    while len(words) < N_FACTS:
        words["".join(rng.choices(string.ascii_lowercase, k=rng.randint(*WORD_LENGTHS)))] = str(rng.randrange(10))
    return words


def corpus(n: int, seed: int) -> list[dict]:
    """n pretraining texts, a quarter from each domain, as prompt-less SFT records."""
    rng, known = random.Random(f"corpus-{seed}"), list(facts().items())
    texts = []
    for i in range(n):
        if i % 4 == 0:
            p = arithmetic.make_problem(*arithmetic.random_operands(rng.choice((3, 4)), rng), rng)
            texts.append(f"{p.prompt}{arithmetic.solution(p)}")
        elif i % 4 == 1:
            step = _arith_check(i, rng)
            texts.append(f"{step['completions'][0]} {'ok' if step['label'] else 'no'}")
        elif i % 4 == 2:
            prompt = letters.random_prompt(rng)
            texts.append(prompt + letters.sft_response(prompt, rng))
        else:
            texts.append(" ".join(f"{w}={d}" for w, d in rng.choices(known, k=4)))
    return [{"prompt": "", "completion": t} for t in texts]


def _arith_check(i: int, rng: random.Random) -> dict:
    p = arithmetic.make_problem(*arithmetic.random_operands(rng.choice((3, 4)), rng), rng)
    if correct := rng.random() < 0.5:
        step = rng.choice(arithmetic.solution_steps(p))
    else:
        steps, at, _ = arithmetic.tamper(p, rng, "sum")
        step = steps[at]
    return {"prompt": "", "completions": [step], "label": int(correct)}


def _letters_rm(i: int, rng: random.Random) -> dict:
    prompt = letters.random_prompt(rng)
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
