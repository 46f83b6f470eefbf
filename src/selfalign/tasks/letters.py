"""A gold-reward preference testbed: answer with the prompt's letters.

The prompt is a set of four letters; the response is a short string of letters. The hidden gold
reward is the share of response letters that belong to the prompt's set (length-neutral, so a
longer response is never better). The SFT data mixes good and bad responses: each example draws a
quality q ~ U(0, 1) and picks each letter from the set with probability q, so the SFT policy is
mediocre on average and diverse. Gold-labelled pairs are two responses from that same distribution,
the higher-reward one chosen; a tiny model can learn the preference from pairs.

    prompt:    bdmq:
    response:  dqbxmd       gold reward 5/6
"""

from __future__ import annotations

import random
import string

from selfalign.config import LettersTaskConfig
from selfalign.tasks.base import Check, Problem, Task

LETTERS = string.ascii_lowercase
ALPHABET = LETTERS + ":"
SET_SIZE = 4
LENGTHS = (4, 10)  # response length range, in letters
EVAL_SEED = 4321
# Llama-2 label strengths, by gold-reward gap
STRENGTHS = ((0.5, "significantly"), (0.3, "better"), (0.1, "slightly"), (0.0, "negligibly"))


def gold_reward(prompt: str, response: str) -> float:
    allowed = set(prompt.rstrip(":"))
    return sum(c in allowed for c in response) / len(response) if response else 0.0


def random_prompt(rng: random.Random) -> str:
    return "".join(sorted(rng.sample(LETTERS, SET_SIZE))) + ":"


def sft_response(prompt: str, rng: random.Random) -> str:
    allowed = prompt.rstrip(":")
    others = [c for c in LETTERS if c not in allowed]
    q = rng.random()
    return "".join(
        rng.choice(allowed) if rng.random() < q else rng.choice(others) for _ in range(rng.randint(*LENGTHS))
    )


def strength(gap: float) -> str:
    return next(name for low, name in STRENGTHS if gap >= low)


def gold_pair(prompt: str, rng: random.Random) -> dict:
    """Two SFT-distribution responses, the better one chosen; ties are redrawn."""
    while True:
        a, b = sft_response(prompt, rng), sft_response(prompt, rng)
        ga, gb = gold_reward(prompt, a), gold_reward(prompt, b)
        if ga != gb:
            break
    (gc, chosen), (gr, rejected) = sorted([(ga, a), (gb, b)], reverse=True)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "strength": strength(gc - gr), "gap": gc - gr}


class LettersTask(Task):
    name = "letters"
    graded = True  # Check.reward is the hidden gold reward: evaluations report it and the win rate

    def __init__(self, cfg: LettersTaskConfig):
        self.cfg = cfg
        rng = random.Random(EVAL_SEED)
        prompts = self._prompts(cfg.n_eval, rng)
        self._eval = [
            Problem(id=f"letters-eval-{i}", prompt=p, answer="", difficulty="letters") for i, p in enumerate(prompts)
        ]
        self._eval_pairs = [gold_pair(p, rng) for p in prompts]
        pool_rng = random.Random(EVAL_SEED + 1)
        self.pool = [
            Problem(id=f"letters-{i}", prompt=p, answer="", difficulty="letters")
            for i, p in enumerate(self._prompts(cfg.n_prompts, pool_rng))
        ]
        self.n_seed = max(1, round(cfg.seed_fraction * cfg.n_prompts))

    @staticmethod
    def _prompts(n: int, rng: random.Random) -> list[str]:
        return [random_prompt(rng) for _ in range(n)]

    def gold_pairs(self, which: str) -> list[dict]:
        """Gold-labelled pairs: `seed` for the labelled seed prompts, `all` for the whole pool."""
        problems = self.pool[: self.n_seed] if which == "seed" else self.pool
        return [{"id": p.id, **gold_pair(p.prompt, random.Random(f"pair-{p.id}"))} for p in problems]

    def eval_pairs(self) -> list[dict]:
        return self._eval_pairs

    def unlabelled(self) -> list[Problem]:
        """The pool without the seed prompts: prompts only, their gold labels never shown."""
        return self.pool[self.n_seed :]

    def sft_records(self, n: int, seed: int) -> list[dict]:
        rng = random.Random(seed)
        return [{"prompt": p.prompt, "completion": sft_response(p.prompt, rng)} for p in rng.choices(self.pool, k=n)]

    # -- the Task interface -------------------------------------------------------------------
    def train_problems(self, round: int, seed: int) -> list[Problem]:
        return self.pool

    def eval_sets(self) -> dict[str, list[Problem]]:
        return {"eval": self._eval}

    def check(self, problem: Problem, completion: str) -> Check:
        reward = gold_reward(problem.prompt, completion)
        return Check(correct=reward == 1.0, answer=None, reward=reward, n_steps=len(completion))

    def hint(self, problem: Problem) -> str:
        return problem.prompt

    def steps(self, completion: str) -> list[str]:
        return list(completion)
