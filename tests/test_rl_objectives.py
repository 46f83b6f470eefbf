"""Our online-RL objectives against TRL 1.16's GRPOTrainer and RLOOTrainer on the same model and batch, and the PPO
pieces (which TRL 1.16 no longer ships) against hand-computed examples. TRL is test-only."""

from __future__ import annotations

import dataclasses
import inspect
import math

import pytest
import torch

from selfalign.training import rl_objectives as rl
from selfalign.training.objectives import IGNORE, token_logprobs

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

PROMPTS = ["c3b1+c8b6=", "a7+a5=", "d9c9+d1c1=", "b2+b2="]
COMPLETIONS = ["b1+6+0=07", "a7+", "c9+1+0=1", "b"]  # ragged: the completion mask has padding
MAX_COMPLETION_LENGTH = 12  # > the batch's longest completion, so dr_grpo's constant is not the tensor width


@pytest.fixture(scope="module")
def tok_policy(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    policy.eval()  # TRL's "eval" mode: no gradient-accumulation divisor
    return tok, policy


def _args(cls, tmp_path, **kw):
    return cls(output_dir=str(tmp_path), report_to=[], use_cpu=True, bf16=False, **kw)


def _trainer(kind, tmp_path, tok, policy, reward_fn, **kw):
    cls, args_cls = (trl.GRPOTrainer, trl.GRPOConfig) if kind == "grpo" else (trl.RLOOTrainer, trl.RLOOConfig)
    rows = [{"prompt": p} for p in PROMPTS]
    return cls(
        model=policy,
        reward_funcs=reward_fn,
        args=_args(args_cls, tmp_path, **kw),
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tok,
    )


def _completion_logps(model, batch):
    """Per-token log-probs [B, C] of the completions through selfalign's own `token_logprobs`."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    scored = torch.cat([torch.zeros_like(batch["prompt_mask"]), batch["completion_mask"]], dim=1)
    labels = input_ids.masked_fill(scored == 0, IGNORE)
    logp, _ = token_logprobs(model(input_ids=input_ids, attention_mask=attention).logits, labels)
    return logp[:, batch["prompt_ids"].size(1) - 1 :]


def _batch(tok, policy):
    """A GRPO inputs dict with known old/ref log-probs (far from the policy's, so clipping and KL are active)."""
    prompts = tok(PROMPTS, padding=True, return_tensors="pt")  # left-padded
    tok.padding_side = "right"
    completions = tok(COMPLETIONS, padding=True, add_special_tokens=False, return_tensors="pt")
    tok.padding_side = "left"
    batch = {
        "prompt_ids": prompts["input_ids"],
        "prompt_mask": prompts["attention_mask"],
        "completion_ids": completions["input_ids"],
        "completion_mask": completions["attention_mask"],
    }
    assert (batch["completion_mask"] == 0).any()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        logps = _completion_logps(policy, batch)
    shape = logps.shape
    # log-ratios cycle through -0.4, 0.4, -0.1, 0.1: outside and inside [log 0.8, log 1.28], far from its edges
    shift = torch.tensor([0.4, -0.4, 0.1, -0.1]).repeat(shape[1])[: shape[1]]
    batch["old_per_token_logps"] = logps + shift.roll(1) * torch.tensor([[1.0], [-1.0], [1.0], [-1.0]])
    batch["ref_per_token_logps"] = logps + 0.5 * torch.randn(shape, generator=g)
    batch["advantages"] = torch.tensor([1.3, -0.7, 0.4, -1.1])
    batch["num_items_in_batch"] = batch["completion_mask"].sum() + 5  # as if the generation batch were larger
    return batch


def _grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize(("beta", "kl_correction"), [(0.0, True), (0.04, True), (0.04, False)])
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_grpo_loss_matches_trl(tmp_path, tok_policy, loss_type, beta, kl_correction):
    tok, policy = tok_policy
    eps, eps_high = 0.2, 0.28
    trainer = _trainer(
        "grpo",
        tmp_path,
        tok,
        policy,
        lambda completions, **_: [0.0] * len(completions),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=MAX_COMPLETION_LENGTH,
        loss_type=loss_type,
        beta=beta,
        epsilon=eps,
        epsilon_high=eps_high,
        use_bias_correction_kl=kl_correction,
    )
    batch = _batch(tok, policy)

    policy.zero_grad()
    want = trainer.compute_loss(policy, batch)
    want.backward()
    want_grad = _grads(policy)
    logged = {k: v[-1] for k, v in trainer._metrics["eval"].items()}

    policy.zero_grad()
    mask = batch["completion_mask"]
    got, metrics = rl.grpo_loss(
        _completion_logps(policy, batch),
        batch["old_per_token_logps"],
        batch["advantages"],
        mask,
        loss_type=loss_type,
        epsilon=eps,
        epsilon_high=eps_high,
        beta=beta,
        ref_logps=batch["ref_per_token_logps"],
        max_completion_length=MAX_COMPLETION_LENGTH,
        num_items_in_batch=batch["num_items_in_batch"],
        kl_ratio_correction=kl_correction,
    )
    got.backward()

    assert metrics["clip_ratio/low_mean"] > 0 and metrics["clip_ratio/high_mean"] > 0  # clipping is active
    assert got.item() == pytest.approx(want.item(), abs=1e-5)
    torch.testing.assert_close(_grads(policy), want_grad, atol=1e-5, rtol=1e-4)
    for name in ["clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"] + ["kl"] * (beta != 0):
        assert metrics[name].item() == pytest.approx(logged[name], abs=1e-6), name
    if loss_type == "dr_grpo":  # the constant is max_completion_length, not the batch's width
        alt, _ = rl.grpo_loss(
            *(_completion_logps(policy, batch).detach(), batch["old_per_token_logps"], batch["advantages"], mask),
            loss_type=loss_type,
            beta=beta,
            ref_logps=batch["ref_per_token_logps"],
            epsilon_high=eps_high,
            max_completion_length=mask.size(1),
        )
        assert abs(alt.item() - want.item()) > 1e-3


def test_defaults_are_trls():
    trl_defaults = {f.name: f.default for f in dataclasses.fields(trl.GRPOConfig)}
    ours = {name: p.default for name, p in inspect.signature(rl.grpo_loss).parameters.items()}
    ours["use_bias_correction_kl"] = ours.pop("kl_ratio_correction")
    for name in ["loss_type", "epsilon", "epsilon_high", "beta", "use_bias_correction_kl"]:
        assert ours[name] == trl_defaults[name], name
    assert inspect.signature(rl.grpo_advantages).parameters["scale_rewards"].default == trl_defaults["scale_rewards"]


# Rewards for 4 prompts x 3 generations; None is unscorable (TRL: NaN, left out of the baseline, advantage 0); the
# third group has zero std, the fourth a single scorable completion.
REWARDS = [1.0, 0.0, 0.2, None, 2.0, -1.0, 0.5, 0.5, 0.5, 1.0, None, None]
GROUP = 3


def _generated(trainer):
    rows = [{"prompt": p} for p in PROMPTS for _ in range(GROUP)]
    torch.manual_seed(0)
    return trainer._generate_and_score_completions(rows)


def _rewards():
    return torch.tensor([math.nan if r is None else r for r in REWARDS])


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_grpo_advantages_match_trl(tmp_path, tok_policy, scale_rewards):
    tok, policy = tok_policy
    trainer = _trainer(
        "grpo",
        tmp_path,
        tok,
        policy,
        lambda completions, **_: REWARDS[: len(completions)],
        per_device_train_batch_size=len(REWARDS),
        num_generations=GROUP,
        max_completion_length=4,
        scale_rewards=scale_rewards,
    )
    want = _generated(trainer)["advantages"]
    got = rl.grpo_advantages(_rewards(), GROUP, scale_rewards)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    assert got[3] == 0 and (got[6:] == 0).all() and got[:3].abs().min() > 0.1


@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_advantages_and_kl_reward_match_trl(tmp_path, tok_policy, normalize):
    tok, policy = tok_policy
    beta = 0.5
    trainer = _trainer(
        "rloo",
        tmp_path,
        tok,
        policy,
        lambda completions, **_: REWARDS[: len(completions)],
        per_device_train_batch_size=len(REWARDS),
        num_generations=GROUP,
        max_completion_length=4,
        beta=beta,
        normalize_advantages=normalize,
    )
    saved = {k: v.clone() for k, v in policy.state_dict().items()}
    torch.manual_seed(2)
    with torch.no_grad():  # the policy moves away from the reference TRL copied, so the KL penalty is not zero
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    try:
        out = _generated(trainer)
        with torch.no_grad():
            old, ref = _completion_logps(policy, out), _completion_logps(trainer.ref_model, out)
    finally:
        policy.load_state_dict(saved)
    rewards = rl.rloo_kl_rewards(_rewards(), old, ref, out["completion_mask"], beta)
    assert (rewards - _rewards()).nan_to_num().abs().max() > 1e-3
    got = rl.rloo_advantages(rewards, GROUP, normalize=normalize)
    torch.testing.assert_close(got, out["advantages"], atol=1e-5, rtol=1e-5)


def test_rloo_loss_matches_trl(tmp_path, tok_policy):
    tok, policy = tok_policy
    trainer = _trainer(
        "rloo",
        tmp_path,
        tok,
        policy,
        lambda completions, **_: [0.0] * len(completions),
        per_device_train_batch_size=4,
        num_generations=2,
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.0,
    )
    batch = _batch(tok, policy)
    mask = batch["completion_mask"]
    # Sequence ratios exp(-shift * length): 1.57 (A > 0, clipped high), 0.74 (A < 0, clipped low), 0.85, 1.49.
    old = _completion_logps(policy, batch).detach() + torch.tensor([[-0.05], [0.1], [0.02], [-0.4]])
    batch["old_logps"] = (old * mask).sum(1)
    policy.zero_grad()
    want = trainer.compute_loss(policy, batch)
    logged = {k: v[-1] for k, v in trainer._metrics["eval"].items()}
    got, metrics = rl.rloo_loss(_completion_logps(policy, batch), old, batch["advantages"], mask, 0.2, 0.28)
    assert got.item() == pytest.approx(want.item(), abs=1e-5)
    assert metrics["clip_ratio/low_mean"] == metrics["clip_ratio/high_mean"] == 0.25
    for name, value in metrics.items():
        assert value.item() == pytest.approx(logged[name], abs=1e-6), name


# PPO. TRL 1.16 ships no PPOTrainer (removed from trl.experimental too), so these are hand-computed.


def test_kl_estimators():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    torch.testing.assert_close(rl.kl_k1(logp, ref), torch.tensor([0.5, -1.0]))
    want_k3 = torch.tensor([math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1])
    torch.testing.assert_close(rl.kl_k3(logp, ref), want_k3)


def test_ppo_rewards_put_score_at_last_token():
    logp = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]])
    ref = torch.tensor([[-1.5, -0.5, -1.0], [-1.0, -3.0, -9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rewards, kl = rl.ppo_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.5, -0.5, 0.0], [-1.0, 1.0, 0.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.05, 2.0], [0.1, -0.1 - 1.0, 0.0]]))


def test_gae_three_tokens():
    r, v = torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.2, 0.4]])
    gamma, lam = 0.9, 0.8
    d2 = 1.0 - 0.4  # no next value past the last token
    d1 = 0.0 + gamma * 0.4 - 0.2
    d0 = 0.0 + gamma * 0.2 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    adv, ret = rl.gae(r, v, torch.ones(1, 3), gamma, lam, whiten=False)
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.5, a1 + 0.2, a2 + 0.4]]))
    # Padding after the last token changes nothing, whatever rewards/values it holds.
    adv_p, ret_p = rl.gae(
        torch.tensor([[0.0, 0.0, 1.0, 7.0]]),
        torch.tensor([[0.5, 0.2, 0.4, 3.0]]),
        torch.tensor([[1, 1, 1, 0]]),
        0.9,
        0.8,
    )
    torch.testing.assert_close(adv_p[:, :3], rl.masked_whiten(adv, torch.ones(1, 3)))
    torch.testing.assert_close(ret_p[:, :3], ret)
    assert adv_p[0, 3] == 0


def test_masked_whiten_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [5.0, -50.0, 7.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1]])
    real = torch.tensor([1.0, 2.0, 3.0, 5.0, 7.0, 9.0])
    mean, std = real.mean(), real.std()  # unbiased, as TRL
    want = ((x - mean) / torch.sqrt(std**2 + 1e-8)) * mask
    torch.testing.assert_close(rl.masked_whiten(x, mask), want)
    torch.testing.assert_close(rl.masked_whiten(x, mask, shift_mean=False), (want + mean) * mask)


def test_ppo_clipped_losses_by_hand():
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.1, 9.0]]))
    old = torch.zeros(1, 4)  # ratios 1.5, 0.5, 1.1 (and padding)
    adv = torch.tensor([[1.0, 1.0, -2.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, m = rl.ppo_policy_loss(logp, old, adv, mask, cliprange=0.2)
    # token 0: max(-1.5, -1.2) = -1.2 (clipped); token 1: max(-0.5, -0.8) = -0.5; token 2: max(2.2, 2.2) = 2.2
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 2.2) / 3)
    assert m["clipfrac"].item() == pytest.approx(1 / 3)

    values, old_v, returns = torch.tensor([[1.0, 0.0, 0.5]]), torch.tensor([[0.5, 0.0, 0.0]]), torch.ones(1, 3)
    vloss, vclip = rl.ppo_value_loss(values, old_v, returns, torch.tensor([[1, 1, 0]]), cliprange_value=0.2)
    # token 0: V clipped to 0.7 -> max(0, 0.09) = 0.09; token 1: max(1, 1) = 1
    assert vloss.item() == pytest.approx(0.5 * (0.09 + 1.0) / 2)
    assert vclip.item() == pytest.approx(0.5)


def test_adaptive_kl_controller():
    ctl = rl.AdaptiveKLController(value=0.1, target=6.0, horizon=10000)
    assert ctl.update(12.0, n_steps=256) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000))  # error clipped at +0.2
    ctl = rl.AdaptiveKLController(value=0.1, target=6.0, horizon=10000)
    assert ctl.update(5.4, n_steps=100) == pytest.approx(0.1 * (1 - 0.1 * 100 / 10000))


def test_process_advantages_sum_the_normalised_rewards_of_later_steps():
    # one group of two responses: steps ending at tokens 1, 3 (rewards 1, 0) and at token 2 (reward 1)
    adv = rl.process_advantages([[1.0, 0.0], [1.0]], [[1, 3], [2]], group_size=2, width=5)
    flat = torch.tensor([1.0, 0.0, 1.0])
    z = (flat - flat.mean()) / (flat.std() + 1e-4)
    expected = torch.tensor(
        [[z[0] + z[1], z[0] + z[1], z[1], z[1], 0.0], [z[2], z[2], z[2], 0.0, 0.0]], dtype=torch.float32
    )
    assert torch.allclose(adv, expected)
    # groups are normalised separately; a stepless response gets no advantage
    two = rl.process_advantages([[1.0], [0.0], [], [5.0]], [[0], [0], [], [1]], group_size=2, width=2)
    assert torch.allclose(two[:2, 0], torch.tensor([0.7070, -0.7070]), atol=1e-3)
    assert torch.equal(two[2:], torch.zeros(2, 2))  # one step in the group: std 0, reward minus mean 0
