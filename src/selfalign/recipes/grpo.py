"""GRPO (Shao et al. 2024, DeepSeekMath Alg. 1) and RLOO (Ahmadian et al. 2024): online RL with group baselines.

    for round t = 1..T:                           (T evaluation points; training continues across rounds)
        for step = 1..S:
            draw B/n prompts q; sample a group of n responses o_1..o_n per prompt from pi_theta
            rewards r_i by the scorer (the task checker or gold reward, a reward model, an ORM or a PRM)
            (process supervision: a PRM scores each step; token t gets the normalised scores of the steps from t on)
            GRPO: A_i = (r_i - mean(r)) / std(r);  RLOO: A_i = r_i - mean of the other n-1 rewards
            update pi_theta on the clipped surrogate (+ beta KL(pi_theta || pi_ref) for GRPO)
        evaluate pi_theta
The reference pi_ref is the starting model (LoRA: adapters off). Each step logs reward, gold reward, KL, entropy,
completion length and clip fractions (`round-XXX/checkpoint/train_log.jsonl`).
"""

from __future__ import annotations

from functools import partial
from typing import Literal

from pydantic import Field

from selfalign.config import PointwiseJudgeConfig, RunConfig, Strict
from selfalign.errors import InputError
from selfalign.loop import Loop
from selfalign.rollout import GroupRollout
from selfalign.scoring.factory import REWARD_HELP, RewardKind, check_reward, reward_scorer
from selfalign.tasks.base import Task
from selfalign.training.grpo import Algorithm
from selfalign.training.rl_objectives import LossType, ScaleRewards

SUMMARY = "GRPO / RLOO: online RL, n samples per prompt, group-relative advantages, any scorer as reward."


class GrpoParams(Strict):
    algorithm: Algorithm = Field("grpo", description="grpo: mean/std group baseline; rloo: leave-one-out baseline")
    rounds: int = Field(1, gt=0, description="evaluation points; each round trains training.steps more steps")
    group_size: int = Field(8, gt=1, description="n, responses sampled per prompt (training.batch_size counts them)")
    temperature: float | None = Field(None, gt=0, description="sampling temperature (default: sampling.temperature)")
    loss_type: LossType = Field(
        "dapo", description="GRPO aggregation as TRL: grpo (per-sequence mean), bnpo, dr_grpo, dapo (tokens)"
    )
    scale_rewards: ScaleRewards = Field("group", description="GRPO: divide by the group's std, the batch's, or none")
    epsilon: float = Field(0.2, gt=0, description="clip range epsilon of the ratio pi_theta / pi_theta_old")
    epsilon_high: float | None = Field(None, gt=0, description="upper clip range (DAPO's clip-higher); default epsilon")
    beta: float = Field(0.0, ge=0, description="KL coefficient beta: k3 in the GRPO loss; RLOO: k1 in the reward")
    scorer: RewardKind = Field("checker", description=REWARD_HELP)
    scorer_path: str | None = Field(
        None, description="the reward model, verifier or judge directory (scorer rm/orm/prm/judge)"
    )
    judge: PointwiseJudgeConfig = Field(
        default_factory=PointwiseJudgeConfig, description="scorer judge: the rating prompt and labels (d-RLAIF)"
    )
    aggregate: Literal["product", "min", "last"] = Field("product", description="how a PRM's step scores combine")
    supervision: Literal["outcome", "process"] = Field(
        "outcome",
        description="outcome: one reward per response (a PRM's aggregated score); process (GRPO with a PRM or the"
        " gold step labels, DeepSeekMath 4.1.3): each step's score, normalised over the group, credits the tokens"
        " up to that step",
    )


PARAMS = GrpoParams


def validate(p: GrpoParams, task: Task, cfg: RunConfig) -> None:
    if cfg.training.batch_size % p.group_size:
        msg = f"must be a multiple of params.group_size ({p.group_size}): it counts sampled responses"
        raise InputError("<config>", msg, field="training.batch_size")
    check_reward(p.scorer, p.scorer_path, p.judge)
    if p.supervision == "process" and (p.scorer not in ("prm", "gold") or p.algorithm != "grpo"):
        msg = "process supervision needs algorithm grpo and step scores: scorer prm, or gold (the checker's steps)"
        raise InputError("<config>", msg, field="params.supervision")


def run(loop: Loop) -> None:
    p: GrpoParams = loop.params
    cfg, s = loop.cfg, loop.cfg.sampling
    scorer = reward_scorer(p.scorer, p.scorer_path, loop.load, loop.task, p.aggregate, p.judge)
    model = loop.base
    loop.evaluate(0, model)
    for t in range(1, p.rounds + 1):
        problems = loop.task.train_problems(t, cfg.seed)
        rollout = partial(  # the trainer hands it the policy it trains
            GroupRollout,
            **loop.rollout_args(t, problems, scorer, p.group_size, p.temperature),
            prompts_per_batch=cfg.training.batch_size // p.group_size,
            algorithm=p.algorithm,
            scale_rewards=p.scale_rewards,
            beta=p.beta,
            process=p.supervision == "process",
        )
        prompts = [{"problem_id": q.id, "prompt": q.prompt} for q in problems]
        model = loop.train(
            t,
            model,
            prompts,
            trainer="grpo",
            rollout=rollout,
            algorithm=p.algorithm,
            loss_type=p.loss_type,
            epsilon=p.epsilon,
            epsilon_high=p.epsilon_high,
            beta=p.beta,
            max_new_tokens=s.max_new_tokens,
        )
        steps = cfg.training.steps * t
        loop.evaluate(t, model, steps=steps, samples=steps * cfg.training.grad_accum * cfg.training.batch_size)
