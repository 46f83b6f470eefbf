"""Quiet-STaR: the thought-parallel forward against a naive loop, the mixing head's zero start, the loss."""

import pytest
import torch

from selfalign.batching import IGNORE
from selfalign.models import load
from selfalign.training.quiet_star import QuietStar, add_thought_tokens, quiet_star_loss, thought_mask


@pytest.fixture()
def qs(tiny_model_dir):
    policy = load("policy", str(tiny_model_dir))
    start, end = add_thought_tokens(policy)
    return QuietStar(policy.model.eval(), start, end), policy


def batch(policy):
    texts = ["m7o3n1+O8M5N6=", "a1+A2=03"]
    rows = [policy.tokenizer(t)["input_ids"] for t in texts]
    L = max(map(len, rows))
    ids = torch.tensor([r + [policy.tokenizer.pad_token_id] * (L - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (L - len(r)) for r in rows])
    return ids, mask, [len(r) for r in rows]


def test_thought_mask_blocks():
    m = thought_mask(torch.tensor([[1, 1, 0]]), 2)[0, 0]
    assert m.shape == (3, 9)
    assert m[:, :3].tolist() == [[True, False, False], [True, True, False], [True, True, False]]
    assert m[:, 3:6].tolist() == m[:, 6:9].tolist() == torch.eye(3, dtype=torch.bool).tolist()


@torch.no_grad()
def test_parallel_thoughts_equal_a_naive_loop_per_position(qs):
    """Each position's greedy thought and mixed predictions, computed in one pass per thought token, equal those
    of running that position's own sequence (prefix, start, thought, end, teacher-forced tokens) alone."""
    model, policy = qs
    torch.manual_seed(0)
    torch.nn.init.normal_(model.head.net[-1].weight, std=0.5)  # a non-trivial mix
    ids, mask, lengths = batch(policy)
    t, n_talk = 3, 2
    out = model.think(ids, mask, t, n_talk, greedy=True)
    decoder, lm_head = model.model.get_decoder(), model.model.get_output_embeddings()
    for row, n in enumerate(lengths):
        h_base = decoder(input_ids=ids[row : row + 1, :n]).last_hidden_state[0]
        for i in range(n - n_talk):
            seq = ids[row, : i + 1].tolist() + [model.start_id]
            for _ in range(t):
                logits = lm_head(decoder(input_ids=torch.tensor([seq])).last_hidden_state[0, -1])
                logits[[model.start_id, model.end_id]] = float("-inf")
                seq.append(int(logits.argmax()))
            seq.append(model.end_id)
            for s in range(n_talk):
                h = decoder(input_ids=torch.tensor([seq])).last_hidden_state[0, -1]
                w = model.head(h_base[i + s], h)
                want = lm_head((1 - w) * h_base[i + s] + w * h)
                assert torch.allclose(out["mixed_logits"][s][row, i], want, atol=1e-4), (row, i, s)
                seq.append(int(ids[row, i + 1 + s]))
            assert torch.allclose(out["base_logits"][row, i], lm_head(h_base[i]), atol=1e-5)


@torch.no_grad()
def test_zero_initialised_mixing_head_leaves_the_base_output_unchanged(qs):
    model, policy = qs
    ids, mask, _ = batch(policy)
    out = model.think(ids, mask, 4, 3)
    L = ids.shape[1]
    assert (out["mixing_weight"] == 0).all()
    for s, mixed in enumerate(out["mixed_logits"]):
        assert torch.allclose(mixed[:, : L - s], out["base_logits"][:, s:], atol=1e-6)


def test_loss_by_hand():
    """Two thoughts of one 3-token text, vocabulary 2, n_talk 1; every number checked by hand."""
    labels = torch.tensor([[0, 1, IGNORE], [0, 1, IGNORE]])
    base = torch.zeros(2, 3, 2)  # NLL log 2 everywhere
    mixed = torch.tensor([[[0.0, 2.0], [0, 0], [0, 0]], [[2.0, 0.0], [0, 0], [0, 0]]])  # only position 0 is scored
    logps = torch.tensor([[[-1.0], [-1.0], [-1.0]], [[-2.0], [-2.0], [-2.0]]])
    loss, m = quiet_star_loss(base, [mixed], logps, labels, n_thoughts=2, policy_weight=10.0)
    ln2 = torch.log(torch.tensor(2.0))
    good, bad = torch.log1p(torch.exp(torch.tensor(-2.0))), torch.log1p(torch.exp(torch.tensor(2.0)))  # NLL of x_1
    lm = 0.5 * ln2 + 0.5 * (good + bad) / 2
    # position 0: log p_talk = -good (thought 1), -bad (thought 2); reward = (above - mean) clamped at 0
    r1 = ((bad - good) / 2).clamp(min=0)
    policy = -(r1 * -1.0) / 2  # mean over the 2 rows x 1 scored position x 1 token
    assert torch.allclose(loss, lm + 10.0 * policy, atol=1e-6)
    assert torch.allclose(m["reward"], r1 / 2, atol=1e-6)


def test_recipe_trains_thoughts_and_evaluates_direct_answers(tmp_path):
    """End to end on the shipped checkpoint: a few Quiet-STaR steps, the saved head and thought tokens reload, and
    the direct-answer evaluation scores every held-out answer digit."""
    from selfalign.cli import main
    from selfalign.records import read_jsonl
    from selfalign.training.quiet_star import CONFIG_FILE, END, HEAD_FILE, START

    cfg = tmp_path / "qs.yaml"
    cfg.write_text("recipe: quiet_star\nseed: 0\nmodel:\n  path: builtin:arith-tiny\n")
    out = tmp_path / "run"
    small = ["task.train_digits=[2]", "task.eval_digits=[2]", "task.n_train=16", "task.n_eval=4"]
    small += ["training.steps=2", "training.batch_size=4", "params.thought_tokens=3", "params.n_talk=2"]
    assert main(["run", str(cfg), "--out", str(out), *small]) == 0
    ckpt = out / "round-001" / "checkpoint"
    assert (ckpt / HEAD_FILE).is_file() and (ckpt / CONFIG_FILE).is_file()
    vocab = load("policy", str(ckpt)).tokenizer.get_vocab()
    assert START in vocab and END in vocab
    log = read_jsonl(ckpt / "train_log.jsonl")
    assert {"nll_base", "nll_thought", "reward", "policy_loss", "mixing_weight"} <= set(log[-1])
    rows = read_jsonl(out / "round-001" / "direct_eval.jsonl")
    assert len(rows) == 4 and all(len(r["answer_nll"]) == len(r["answer"]) for r in rows)
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["round"] for m in metrics] == [0, 1] and metrics[1]["thought_tokens"] == 3
    assert metrics[1]["seconds_per_token"] > 0 and metrics[1]["answer_nll"] > 0
