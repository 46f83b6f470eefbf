"""Quiet-STaR (Zelikman et al. 2024): a model learns, from plain text, to think before each token.

Follows the official code (ezelikman/quiet-star, `modeling_mistral.py` with the settings of its training script):
- Thoughts: after every position i of a text, `<|startthought|>`, t sampled tokens, `<|endthought|>`. All
  positions think at once, one forward pass per thought token over the whole text with the KV cache: thought
  token j of position i attends to x_{<=i} and to position i's earlier thought tokens (`thought_mask`). Thought
  tokens are sampled at temperature 1 with the start/end tokens masked out.
- Talk: after the end token the next `n_talk` true tokens are teacher-forced; the state h_talk(i, s) predicts
  x_{i+1+s}.
- Mixing head (`use_weighted_talk_head`, `use_complex_talk_head`): w = MLP([h_base(i+s); h_talk(i, s)]), its
  last layer zero-initialised so that w = 0 and the output is the base model's at step 0;
  p_mixed = softmax(lm_head((1 - w) h_base + w h_talk)).
- Loss (`first_and_last_mode`, `original_loss_weight` = 0.5, `policy_loss_beta` = 1e6):
      0.5 NLL_base + 0.5 mean_s NLL_mixed(s) + policy_weight * REINFORCE
  REINFORCE: r(i) = log p_mixed(x_{i+1..i+n_talk} | thought), minus its mean over the n thoughts of position i
  (`trice_mode`), clamped at 0 (`remove_negative_rewards`), times the mean log-prob of the thought's sampled
  tokens at temperature 3 (`reinforce_temperature`).
Not followed: the official start/end embeddings are separate parameters with a 100x gradient scale, initialised
to the embedding of "---"; here they are two new vocabulary rows initialised to a chosen token's embedding (a
character vocabulary has no "---") or the mean one. The official reward also telescopes the next-token losses
along the thought; this one is the paper's (Eq. 3).

Batch layout (right-padded text, every token predicted):

    input_ids, attention_mask, labels   [B, L]   labels IGNORE on padding
and inside `QuietStar.think`, with each row repeated n_thoughts times (rows r*n .. r*n+n-1 are one text):
    base_logits                          [B n, L, V]      no thought; position i predicts x_{i+1}
    mixed_logits                         n_talk x [B n, L, V]   after position i's thought, predicting x_{i+1+s}
    thought_logps                        [B n, L, t]      log-prob of each sampled thought token (temperature 3)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn
from transformers import DynamicCache

from selfalign.batching import IGNORE, Batch, encode_sft, pad_right
from selfalign.config import TrainingConfig
from selfalign.models import Policy
from selfalign.records import atomic_write, atomic_write_text
from selfalign.training.objectives import token_logprobs
from selfalign.training.trainer import Records, train_and_save

START, END = "<|startthought|>", "<|endthought|>"
HEAD_FILE, CONFIG_FILE = "mixing_head.pt", "quiet_star.json"
REINFORCE_TEMPERATURE = 3.0


def add_thought_tokens(policy: Policy, start_init: str | None = None, end_init: str | None = None) -> tuple[int, int]:
    """Add the start/end-of-thought tokens to the tokenizer and the embeddings. Each new row is the embedding of
    `start_init` / `end_init` when that text is one token (the official code uses "---"), else the mean embedding."""
    tok, model = policy.tokenizer, policy.model
    if START not in tok.get_vocab():
        tok.add_special_tokens({"additional_special_tokens": [START, END]})
        old = model.get_input_embeddings().weight.shape[0]
        model.resize_token_embeddings(len(tok), mean_resizing=False)
        with torch.no_grad():
            emb = model.get_input_embeddings().weight
            for row, text in ((old, start_init), (old + 1, end_init)):
                ids = tok(text, add_special_tokens=False)["input_ids"] if text else []
                emb[row] = emb[ids[0]] if len(ids) == 1 else emb[:old].mean(0)
    return tok.convert_tokens_to_ids(START), tok.convert_tokens_to_ids(END)


def thought_mask(attention_mask: torch.Tensor, layers: int) -> torch.Tensor:
    """Boolean attention mask [B, 1, L, L (layers + 1)] for the `layers`-th thought token of every position: the
    causal mask over the text's real tokens, then one diagonal block per thought layer so far (layer 0 = the text)."""
    B, L = attention_mask.shape
    causal = (
        torch.tril(torch.ones(L, L, dtype=torch.bool, device=attention_mask.device)) & attention_mask[:, None, :].bool()
    )
    eye = torch.eye(L, dtype=torch.bool, device=attention_mask.device).expand(B, L, L)
    return torch.cat([causal] + [eye] * layers, dim=-1)[:, None]


class MixingHead(nn.Module):
    """w = MLP([h_base; h_talk]), the official `use_complex_talk_head`; the last layer starts at zero."""

    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1, bias=False),
        )
        nn.init.zeros_(self.net[-1].weight)

    def forward(self, h_base: torch.Tensor, h_talk: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([h_base, h_talk], dim=-1))


class QuietStar(nn.Module):
    """The policy's causal LM with thoughts and a mixing head; `think` runs the thought-parallel forward."""

    def __init__(self, model: nn.Module, start_id: int, end_id: int):
        super().__init__()
        self.model, self.start_id, self.end_id = model, start_id, end_id
        self.head = MixingHead(model.config.hidden_size).to(next(model.parameters()).device)

    def think(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        thought_tokens: int,
        n_talk: int,
        greedy: bool = False,
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Base logits, mixed logits for s = 0..n_talk-1 and the thought tokens' log-probs (layout above).
        thought_tokens = 0 still runs the start and end tokens: a thought with nothing in it."""
        decoder, lm_head, embed = (
            self.model.get_decoder(),
            self.model.get_output_embeddings(),
            self.model.get_input_embeddings(),
        )
        L = input_ids.shape[1]
        positions = torch.arange(L, device=input_ids.device)[None].expand_as(input_ids)
        cache, layer = DynamicCache(), 0

        def forward(tokens: torch.Tensor) -> torch.Tensor:
            out = decoder(
                inputs_embeds=embed(tokens),
                attention_mask=thought_mask(attention_mask, layer),
                position_ids=positions + layer,
                past_key_values=cache,
                use_cache=True,
            )
            return out.last_hidden_state

        h_base = forward(input_ids)
        base_logits = lm_head(h_base)
        layer += 1
        h = forward(torch.full_like(input_ids, self.start_id))
        logps = []
        for _ in range(thought_tokens):
            logits = lm_head(h).float()
            logits[..., [self.start_id, self.end_id]] = float("-inf")  # a thought does not open or close thoughts
            with torch.no_grad():
                token = logits.argmax(-1) if greedy else torch.distributions.Categorical(logits=logits).sample()
            logps.append(torch.log_softmax(logits / REINFORCE_TEMPERATURE, -1).gather(-1, token[..., None])[..., 0])
            layer += 1
            h = forward(token)
        layer += 1
        h = forward(torch.full_like(input_ids, self.end_id))
        mixed = []
        for s in range(n_talk):
            h_b = torch.roll(h_base, -s, dims=1)  # the base state that predicts x_{i+1+s}; wrapped rows are unscored
            w = self.head(h_b, h)
            mixed.append(lm_head((1 - w) * h_b + w * h))
            if s < n_talk - 1:
                layer += 1
                h = forward(torch.roll(input_ids, -(s + 1), dims=1))  # teacher forcing x_{i+1+s}
        empty = base_logits.new_zeros(*input_ids.shape, 0)
        return {
            "base_logits": base_logits,
            "mixed_logits": mixed,
            "thought_logps": torch.stack(logps, -1) if logps else empty,
            "mixing_weight": w.detach(),
        }


def shifted_nll(logits: torch.Tensor, labels: torch.Tensor, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NLL [B, L-1] of labels[i + shift] under logits[i] (`token_logprobs`' alignment, which is shift 1), and its
    mask (False past the end or on IGNORE)."""
    target = torch.roll(labels, 1 - shift, dims=1)
    target[:, labels.shape[1] - shift + 1 :] = IGNORE
    logp, mask = token_logprobs(logits, target)
    return -logp, mask


def quiet_star_loss(
    base_logits: torch.Tensor,
    mixed_logits: list[torch.Tensor],
    thought_logps: torch.Tensor,
    labels: torch.Tensor,
    n_thoughts: int,
    original_weight: float = 0.5,
    policy_weight: float = 1e6,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The official loss on one thought-parallel forward (layout in the module docstring); labels [B n, L]."""
    base, m0 = shifted_nll(base_logits, labels, 1)
    talk = [shifted_nll(logits, labels, 1 + s) for s, logits in enumerate(mixed_logits)]
    mean = lambda x, m: x.sum() / m.sum().clamp(min=1)  # noqa: E731
    lm = original_weight * mean(base, m0) + (1 - original_weight) * sum(mean(x, m) for x, m in talk) / len(talk)
    logp_talk = -sum(x for x, _ in talk)  # [B n, L-1]: log p of the teacher-forced tokens after the thought
    grouped = logp_talk.detach().view(-1, n_thoughts, logp_talk.shape[1])
    reward = (grouped - grouped.mean(1, keepdim=True)).clamp(min=0).view_as(logp_talk) * m0
    if thought_logps.shape[-1]:
        scored = thought_logps[:, :-1]  # the last position has no next token, so no reward
        policy = -(reward[..., None] * scored).sum() / (m0.sum() * scored.shape[-1]).clamp(min=1)
    else:
        policy = logp_talk.new_zeros(())
    return lm + policy_weight * policy, {
        "nll_base": mean(base, m0).detach(),
        "nll_thought": mean(*talk[0]).detach(),
        "reward": mean(reward, m0),
        "policy_loss": policy.detach(),
    }


def train_quiet_star(
    policy: Policy,
    records: list[dict],
    cfg: TrainingConfig,
    out_dir: str | Path | None,
    *,
    thought_tokens: int = 8,
    n_talk: int = 4,
    n_thoughts: int = 2,
    policy_weight: float = 1e6,
    start_init: str | None = None,
    end_init: str | None = None,
    seed: int = 0,
    steps: int | None = None,
    desc: str = "quiet-star",
) -> list[dict]:
    """Train on prompt/completion records as plain text (every token of prompt + completion is predicted), then
    save the policy with the thought tokens, the mixing head and the thought settings to `out_dir`."""
    start_id, end_id = add_thought_tokens(policy, start_init, end_init)
    module = QuietStar(policy.model, start_id, end_id)
    data = [encode_sft(policy, "", r["prompt"] + r["completion"]) for r in records]
    data = [{**x, "labels": x["input_ids"]} for x in data]
    pad_id = policy.tokenizer.pad_token_id

    def compute_loss(qs: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict]:
        ids, mask, labels = (
            batch[k].repeat_interleave(n_thoughts, 0) for k in ("input_ids", "attention_mask", "labels")
        )
        out = qs.think(ids, mask, thought_tokens, n_talk)
        loss, metrics = quiet_star_loss(
            out["base_logits"],
            out["mixed_logits"],
            out["thought_logps"],
            labels,
            n_thoughts,
            policy_weight=policy_weight,
        )
        return loss, {**metrics, "mixing_weight": out["mixing_weight"].mean()}

    source = Records(data, lambda b: pad_right(b, pad_id), [len(x["input_ids"]) for x in data])
    log = train_and_save(policy, source, compute_loss, cfg, out_dir, seed=seed, steps=steps, desc=desc, module=module)
    if out_dir is not None:
        atomic_write(Path(out_dir) / HEAD_FILE, lambda f: torch.save(module.head.state_dict(), f))
        atomic_write_text(Path(out_dir) / CONFIG_FILE, json.dumps({"thought_tokens": thought_tokens, "n_talk": n_talk}))
    return log


def load_quiet_star(policy: Policy, path: str | Path) -> tuple[QuietStar, int]:
    """A trained Quiet-STaR model (policy loaded from `path`) and its thought length."""
    tok = policy.tokenizer
    qs = QuietStar(policy.model, tok.convert_tokens_to_ids(START), tok.convert_tokens_to_ids(END))
    qs.head.load_state_dict(torch.load(Path(path) / HEAD_FILE, weights_only=True))
    return qs, json.loads((Path(path) / CONFIG_FILE).read_text())["thought_tokens"]


@torch.no_grad()
def direct_answer_eval(policy: Policy, path: str | Path, prompts: list[str], answers: list[str]) -> list[dict]:
    """Per prompt: the NLL of each answer token (teacher-forced) and the greedy answer, with a (greedy) thought
    before every token when the model at `path` was trained with thoughts, plain next-token prediction otherwise;
    and the seconds the greedy answers took per generated token."""
    qs, t = load_quiet_star(policy, path) if (Path(path) / HEAD_FILE).is_file() else (None, 0)
    policy.model.eval()
    device = next(policy.model.parameters()).device
    tok = policy.tokenizer

    def next_logits(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if qs is None:
            return policy.model(input_ids=ids, attention_mask=mask).logits
        return qs.think(ids, mask, t, 1, greedy=True)["mixed_logits"][0]

    rows = [encode_sft(policy, p, a) for p, a in zip(prompts, answers)]
    batch = {k: v.to(device) for k, v in pad_right(rows, tok.pad_token_id).items()}
    nll, mask = shifted_nll(next_logits(batch["input_ids"], batch["attention_mask"]), batch["labels"], 1)
    out = []
    for r, (row_nll, row_mask) in enumerate(zip(nll.tolist(), mask.tolist())):
        scored = [x for x, m in zip(row_nll, row_mask) if m][:-1]  # the answer tokens, not the EOS after them
        out.append({"prompt": prompts[r], "answer": answers[r], "answer_nll": scored})
    # Greedy answers, prompts of one length together so that the batch grows in lockstep without padding.
    banned = [i for i in (tok.convert_tokens_to_ids(START), tok.convert_tokens_to_ids(END)) if i is not None]
    encoded = [policy.encode_prompt(p) for p in prompts]
    by_length: dict[int, list[int]] = {}
    for i, e in enumerate(encoded):
        by_length.setdefault(len(e), []).append(i)
    max_new = max(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers) + 1
    tokens, start = 0, time.perf_counter()
    for idx in by_length.values():
        ids = torch.tensor([encoded[i] for i in idx], device=device)
        done = torch.zeros(len(idx), dtype=torch.bool, device=device)
        for _ in range(max_new):
            logits = next_logits(ids, torch.ones_like(ids))[:, -1].float()
            logits[:, banned] = float("-inf")
            nxt = torch.where(done, tok.pad_token_id, logits.argmax(-1))
            tokens += int((~done).sum())
            ids, done = torch.cat([ids, nxt[:, None]], 1), done | (nxt == tok.eos_token_id)
            if done.all():
                break
        for row, i in enumerate(idx):
            gen = ids[row, len(encoded[i]) :].tolist()
            gen = gen[: gen.index(tok.eos_token_id)] if tok.eos_token_id in gen else gen
            out[i]["generated"] = tok.decode(gen, skip_special_tokens=True)
    seconds_per_token = (time.perf_counter() - start) / max(tokens, 1)
    return [{**r, "correct": r["generated"] == r["answer"], "seconds_per_token": seconds_per_token} for r in out]
