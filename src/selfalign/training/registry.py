"""The trainers a recipe can name: each is how its starting model is loaded plus the fit that trains it.

    fit(model, records, training cfg, out_dir, *, seed, steps, desc, **options) -> per-step log

| name     | model    | records                                     | objective                                |
|----------|----------|---------------------------------------------|------------------------------------------|
| `sft`    | policy   | prompt, completion                          | NLL on completion tokens                 |
| `pairs`  | policy   | prompt, chosen, rejected [, epsilon]        | `preference.loss` (DPO family)           |
| `reward` | reward   | prompt, chosen, rejected [, margin/strength] | Bradley-Terry (+ Llama-2 margins)        |
| `orm`    | reward   | prompt, completion, correct                 | BCE on the last-token logit              |
| `prm`    | prm      | prompt, completions (steps), labels         | cross-entropy at each step's last token  |
| `classifier` | reward | prompt, completions (1, or a pair), label | weak-to-strong CE (+ confidence loss)   |
| `grpo`   | policy   | problem_id, prompt (a `rollout` samples)    | GRPO / RLOO clipped surrogate (+ KL)     |
| `ppo`    | policy   | problem_id, prompt (a `rollout` samples)    | PPO clipped surrogate + value loss (+ KL) |
| `quiet_star` | policy | prompt, completion (read as one text)  | Quiet-STaR: LM + mixed LM + REINFORCE     |
| `hir`    | policy   | prompt, negative_prompt, completion         | HIR: smoothed NLL + contrastive + entropy |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from selfalign.models import ModelKind
from selfalign.stepwise import CLASSES
from selfalign.training.classifier import train_classifier
from selfalign.training.grpo import train_grpo
from selfalign.training.hir import train_hir
from selfalign.training.orm_prm import train_orm, train_prm
from selfalign.training.pairwise import train_pairwise
from selfalign.training.ppo import train_ppo
from selfalign.training.quiet_star import train_quiet_star
from selfalign.training.reward import train_reward
from selfalign.training.trainer import train_sft


@dataclass(frozen=True)
class Trainer:
    model: ModelKind  # what the starting checkpoint is loaded as
    fit: Callable[..., list[dict]]
    preference: bool = False  # fit takes the run's `preference` section as `pref`
    load_options: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda options: {})


TRAINERS: dict[str, Trainer] = {
    "sft": Trainer("policy", train_sft),
    "pairs": Trainer("policy", train_pairwise, preference=True),
    "reward": Trainer("reward", train_reward),
    "orm": Trainer("reward", train_orm),
    "classifier": Trainer("reward", train_classifier),
    "grpo": Trainer("policy", train_grpo),
    "ppo": Trainer("policy", train_ppo),
    "quiet_star": Trainer("policy", train_quiet_star),
    "hir": Trainer("policy", train_hir),
    "prm": Trainer("prm", train_prm, load_options=lambda o: {"num_labels": CLASSES[o.get("label_kind", "binary")]}),
}
