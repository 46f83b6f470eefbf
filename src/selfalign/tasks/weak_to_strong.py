"""Weak-to-strong testbeds (Burns et al. 2023): one shared pretraining corpus and binary tasks with ground truth.

Every model of the ladder is pretrained (LM objective) on the same corpus, which holds the three domains the
tasks ask about, so a larger model has more of what a task needs already in its features ("saliency"):

- `arith_check`  is this worked sum correct? Gold scratchpads of 3-4 digit sums (`tasks.arithmetic`), half of
                 them with one subtle error (`tamper`: a digit copied from another column, a flipped carry, a
                 wrong sum). The corpus has only correct solutions.
- `letters_rm`   the paper's reward-modelling task, pairwise: which of two responses to a letters prompt has the
                 higher gold reward (`tasks.letters`)? The corpus has prompts with responses of every quality.
- `lexicon`      is this string a word of the corpus's lexicon, or a random string of the same length? Nothing
                 in the fine-tuning data says which strings are words (train and test words are disjoint), so
                 only what pretraining memorised can answer, and memory grows sharply with model size.

A record: {id, prompt, completions: [one text] or [first, second], label}; `label` is the probability of class
1 (the solution is correct / the first response is better / a word), 0 or 1 for ground truth, soft for weak
labels. Splits: half A (the supervisor's ground truth), half B (what the student learns from; its ground truth
trains the ceiling), test. Fixed by `seed`; the test set and the lexicon never depend on it.
"""

from __future__ import annotations

import random
import string

from selfalign.tasks import arithmetic, letters

LEXICON_SEED, TEST_SEED = 9876, 5432
LEXICON_SIZE, LEXICON_TEST = 3000, 1000  # words; the last LEXICON_TEST are the test set's
WORD_LENGTHS = (4, 6)
ALPHABET = arithmetic.ALPHABET + letters.ALPHABET


def lexicon() -> list[str]:
    rng, words = random.Random(LEXICON_SEED), {}
    while len(words) < LEXICON_SIZE:
        words[random_word(rng)] = None
    return list(words)


def random_word(rng: random.Random, length: int | None = None) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=length or rng.randint(*WORD_LENGTHS)))


def corpus(n: int, seed: int) -> list[dict]:
    """n pretraining texts, a third from each domain, as prompt-less SFT records."""
    rng, words = random.Random(f"corpus-{seed}"), lexicon()
    texts = []
    for i in range(n):
        if i % 3 == 0:
            p = arithmetic.make_problem(*arithmetic.random_operands(rng.choice((3, 4)), rng), rng)
            texts.append(f"{p.prompt}{arithmetic.solution(p)}")
        elif i % 3 == 1:
            prompt = "".join(sorted(rng.sample(letters.LETTERS, letters.SET_SIZE))) + ":"
            texts.append(prompt + letters.sft_response(prompt, rng))
        else:
            texts.append(" ".join(rng.choices(words, k=6)))
    return [{"prompt": "", "completion": t} for t in texts]


def _arith_check(i: int, rng: random.Random) -> dict:
    p = arithmetic.make_problem(*arithmetic.random_operands(rng.choice((3, 4)), rng), rng)
    correct = rng.random() < 0.5
    steps = arithmetic.solution_steps(p) if correct else arithmetic.tamper(p, rng)[0]
    return {"prompt": p.prompt, "completions": [" ".join(steps)], "label": int(correct)}


def _letters_rm(i: int, rng: random.Random) -> dict:
    prompt = "".join(sorted(rng.sample(letters.LETTERS, letters.SET_SIZE))) + ":"
    pair = letters.gold_pair(prompt, rng)
    first = rng.random() < 0.5
    texts = [pair["chosen"], pair["rejected"]] if first else [pair["rejected"], pair["chosen"]]
    return {"prompt": prompt, "completions": texts, "label": int(first)}


def _lexicon(i: int, rng: random.Random, words: list[str], known: set[str]) -> dict:
    if rng.random() < 0.5:
        return {"prompt": "", "completions": [words[i % len(words)]], "label": 1}
    while (w := random_word(rng)) in known:
        pass
    return {"prompt": "", "completions": [w], "label": 0}


DATASETS = ("arith_check", "letters_rm", "lexicon")


def splits(name: str, n: int, n_test: int, seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Half A and half B (n records each, drawn with `seed`) and the test set (n_test, fixed)."""
    words = lexicon()
    train_words, test_words = words[:-LEXICON_TEST], words[-LEXICON_TEST:]

    def draw(count: int, rng: random.Random, pool: list[str], tag: str) -> list[dict]:
        if name == "lexicon":
            rng.shuffle(pool := list(pool))
            made = [_lexicon(i, rng, pool, set(words)) for i in range(count)]
        else:
            make = {"arith_check": _arith_check, "letters_rm": _letters_rm}[name]
            made = [make(i, rng) for i in range(count)]
        return [{"id": f"{name}-{tag}-{i}", **r} for i, r in enumerate(made)]

    both = draw(2 * n, random.Random(f"{name}-{seed}"), train_words, "train")
    return both[:n], both[n:], draw(n_test, random.Random(f"{name}-{TEST_SEED}"), test_words, "test")
