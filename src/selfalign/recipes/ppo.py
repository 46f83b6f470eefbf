"""PPO-RLHF (Ziegler et al. 2019; InstructGPT, Ouyang et al. 2022, eq. 2; Llama 2, Touvron et al. 2023, §3.2.3).

    for round t = 1..T:                            (T evaluation points; training continues across rounds)
        repeat S / (K x M) times:                  (S = training.steps optimizer updates)
            draw B prompts x; sample y ~ pi_theta_old = pi_theta;  B = M x grad_accum x training.batch_size
            score r_phi(x, y) by the scorer (a reward model, the checker, the gold reward, an ORM or a PRM)
            per-token reward r_t = -beta log(pi_theta_old / pi_ref)(y_t) (+ r_phi(x, y) at the last token)
            values V(s_t) by the value head; GAE(gamma, lambda) advantages A_t (whitened), returns A_t + V(s_t)
            K epochs: M minibatch updates of the clipped surrogate + c_1 x the clipped value loss
            beta <- adaptive KL controller (Ziegler eq. 2) if a KL target is set, else fixed
        evaluate pi_theta
The reference pi_ref is the starting model (LoRA: adapters off). Each step logs reward, gold reward, KL, beta,
entropy, completion length, clip fractions, value loss and approximate KL (`round-XXX/checkpoint/train_log.jsonl`).
"""

from __future__ import annotations

from functools import partial
from typing import Literal

from pydantic import Field

from selfalign.config import PointwiseJudgeConfig, RunConfig, Strict
from selfalign.errors import InputError
from selfalign.loop import Loop
from selfalign.rollout import PPORollout
from selfalign.scoring.factory import REWARD_HELP, RewardKind, check_reward, reward_scorer
from selfalign.tasks.base import Task
from selfalign.training.ppo import KLIn

SUMMARY = "PPO-RLHF: value head, GAE, clipped ratio, K epochs per rollout, per-token KL to the reference, any scorer."


class PpoParams(Strict):
    rounds: int = Field(1, gt=0, description="evaluation points; each round trains training.steps more steps")
    temperature: float | None = Field(None, gt=0, description="sampling temperature (default: sampling.temperature)")
    ppo_epochs: int = Field(4, gt=0, description="K, epochs over each rollout batch (Schulman et al. 2017)")
    minibatches: int = Field(
        1, gt=0, description="M, optimizer updates per epoch; a rollout is M x grad_accum x training.batch_size"
    )
    cliprange: float = Field(0.2, gt=0, description="epsilon, clip range of the ratio pi_theta / pi_theta_old")
    cliprange_value: float = Field(0.2, gt=0, description="clip range of the value around V_old")
    vf_coef: float = Field(0.1, ge=0, description="c_1, weight of the value loss (Schulman et al. 2017, eq. 9)")
    gamma: float = Field(1.0, ge=0, le=1, description="gamma, discount of GAE")
    lam: float = Field(0.95, ge=0, le=1, description="lambda, GAE's bias-variance trade-off")
    kl_coef: float = Field(0.05, ge=0, description="beta, the KL coefficient (initial value when adaptive)")
    kl_in: KLIn = Field(
        "reward", description="reward: -beta k1 in every token's reward (InstructGPT); loss: + beta k3 in the loss"
    )
    kl_target: float | None = Field(
        None, gt=0, description="adaptive beta: Ziegler's KL_target, nats per response (none: beta stays fixed)"
    )
    kl_horizon: float = Field(10_000, gt=0, description="adaptive beta: Ziegler's horizon K_beta, in responses")
    whiten_rewards: bool = Field(False, description="rescale the per-token rewards to unit variance before GAE")
    scorer: RewardKind = Field("rm", description=REWARD_HELP)
    scorer_path: str | None = Field(
        None, description="the reward model, verifier or judge directory (scorer rm/orm/prm/judge)"
    )
    judge: PointwiseJudgeConfig = Field(
        default_factory=PointwiseJudgeConfig, description="scorer judge: the rating prompt and labels (d-RLAIF)"
    )
    aggregate: Literal["product", "min", "last"] = Field("product", description="how a PRM's step scores combine")


PARAMS = PpoParams


def validate(p: PpoParams, task: Task, cfg: RunConfig) -> None:
    if cfg.training.steps % (p.ppo_epochs * p.minibatches):
        msg = f"must be a multiple of params.ppo_epochs x params.minibatches ({p.ppo_epochs * p.minibatches}):"
        raise InputError("<config>", f"{msg} the updates each rollout batch makes", field="training.steps")
    check_reward(p.scorer, p.scorer_path, p.judge)


def run(loop: Loop) -> None:
    p: PpoParams = loop.params
    cfg = loop.cfg
    scorer = reward_scorer(p.scorer, p.scorer_path, loop.load, loop.task, p.aggregate, p.judge)
    rollout_size = p.minibatches * cfg.training.grad_accum * cfg.training.batch_size
    model = loop.base
    loop.evaluate(0, model)
    for t in range(1, p.rounds + 1):
        problems = loop.task.train_problems(t, cfg.seed)
        rollout = partial(  # the trainer hands it the policy it trains and the policy with its value head
            PPORollout,
            **loop.rollout_args(t, problems, scorer, 1, p.temperature),
            prompts_per_batch=rollout_size,
            ppo_epochs=p.ppo_epochs,
            minibatches=p.minibatches,
            kl_coef=p.kl_coef,
            kl_in=p.kl_in,
            kl_target=p.kl_target,
            kl_horizon=p.kl_horizon,
            gamma=p.gamma,
            lam=p.lam,
            whiten_rewards=p.whiten_rewards,
        )
        prompts = [{"problem_id": q.id, "prompt": q.prompt} for q in problems]
        model = loop.train(
            t,
            model,
            prompts,
            trainer="ppo",
            rollout=rollout,
            cliprange=p.cliprange,
            cliprange_value=p.cliprange_value,
            vf_coef=p.vf_coef,
            kl_in=p.kl_in,
            init_from=None if t == 1 else model,  # the value head and beta continue from the last round
        )
        steps = cfg.training.steps * t
        rollouts = steps // (p.ppo_epochs * p.minibatches)
        loop.evaluate(t, model, steps=steps, samples=rollouts * rollout_size)
