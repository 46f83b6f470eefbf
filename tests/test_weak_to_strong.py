"""Weak-to-strong: the confidence loss against the official code's computation, PGR, tampering, the classifier head,
the weak-label file's errors, and the recipe end to end (with resume)."""

import json
import random

import pytest
import torch
import torch.nn.functional as F

from selfalign.cli import main
from selfalign.errors import InputError
from selfalign.evaluation.metrics import performance_gap_recovered
from selfalign.models import load
from selfalign.records import load_weak_labels, read_jsonl
from selfalign.tasks import weak_to_strong as w2s
from selfalign.tasks.arithmetic import TAMPER_KINDS, ArithmeticTask, make_problem, random_operands, tamper
from selfalign.training.classifier import (
    class_logits,
    class_probabilities,
    collate_classified,
    encode_classified,
    zero_head,
)
from selfalign.training.objectives import confidence_coef, weak_to_strong_loss


def official_logconf(logits, labels, step_frac, aux_coef=0.5, warmup_frac=0.1):
    """openai/weak-to-strong `weak_to_strong/loss.py: logconf_loss_fn.__call__`, line for line."""
    logits = logits.float()
    labels = labels.float()
    coef = 1.0 if step_frac > warmup_frac else step_frac
    coef = coef * aux_coef
    preds = torch.softmax(logits, dim=-1)
    mean_weak = torch.mean(labels, dim=0)
    threshold = torch.quantile(preds[:, 0], mean_weak[1])
    strong_preds = torch.cat([(preds[:, 0] >= threshold)[:, None], (preds[:, 0] < threshold)[:, None]], dim=1)
    target = labels * (1 - coef) + strong_preds.detach() * coef
    return torch.nn.functional.cross_entropy(logits, target, reduction="none").mean()


@pytest.mark.parametrize("step_frac", [0.0, 0.05, 0.1, 0.5, 1.0])
def test_confidence_loss_equals_the_official_code(step_frac):
    torch.manual_seed(0)
    logits = torch.randn(32, 2, requires_grad=True)
    p1 = torch.rand(32)
    weak = torch.stack([1 - p1, p1], dim=1)
    coef = confidence_coef(step_frac, 0.5, 0.1)
    ours = weak_to_strong_loss(logits, weak, coef).mean()
    want = official_logconf(logits, weak, step_frac)
    assert torch.allclose(ours, want, atol=1e-6)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_want,) = torch.autograd.grad(want, logits)
    assert torch.allclose(g_ours, g_want, atol=1e-7)


def test_confidence_weight_schedule_is_the_official_quirk():
    assert confidence_coef(0.05, 0.5, 0.1) == pytest.approx(0.025)  # ramps to warmup_frac * aux_coef ...
    assert confidence_coef(0.1, 0.5, 0.1) == pytest.approx(0.05)
    assert confidence_coef(0.11, 0.5, 0.1) == 0.5  # ... then jumps to aux_coef


def test_naive_loss_is_cross_entropy_on_soft_labels():
    logits, weak = torch.tensor([[0.0, 2.0], [1.0, -1.0]]), torch.tensor([[0.3, 0.7], [0.9, 0.1]])
    want = -(weak * F.log_softmax(logits, -1)).sum(-1)
    assert torch.allclose(weak_to_strong_loss(logits, weak), want)


def test_pgr():
    assert performance_gap_recovered(0.6, 0.7, 0.8) == pytest.approx(0.5)
    assert performance_gap_recovered(0.6, 0.55, 0.8) == pytest.approx(-0.25)
    assert performance_gap_recovered(0.8, 0.9, 0.8) is None  # no gap to recover: dropped, as the official notebook


@pytest.mark.parametrize("kind", TAMPER_KINDS)
def test_a_tampered_solution_has_its_one_error_where_tamper_says(kind):
    task, rng = ArithmeticTask(), random.Random(0)
    for _ in range(200):
        p = make_problem(*random_operands(rng.randint(2, 6), rng), rng)
        steps, at, got_kind = tamper(p, rng, kind)
        check = task.check(p, " ".join(steps))
        assert check.first_error == at and not check.correct
        assert got_kind == kind or (kind == "copy" and len(set(p.meta["a"])) == 1)


def test_testbeds_are_balanced_and_splits_fixed():
    for name in w2s.DATASETS:
        a, b, test = w2s.splits(name, 300, 200, seed=0)
        assert 0.4 < sum(r["label"] for r in a + b) / 600 < 0.6
        assert {r["id"] for r in a}.isdisjoint({r["id"] for r in b})
        assert w2s.splits(name, 300, 200, seed=1)[2] == test  # the test set never depends on the seed
    known = w2s.facts()
    a, b, test = w2s.splits("facts", 300, 200, seed=0)
    word = lambda r: r["completions"][0].split("=")[0]  # noqa: E731
    assert {word(r) for r in a + b}.isdisjoint(word(r) for r in test)
    assert all((known[word(r)] == r["completions"][0][-1]) == bool(r["label"]) for r in a + b + test)


def test_zero_head_starts_at_even_odds_and_pairs_read_first_minus_second(tiny_model_dir):
    rm = load("reward", str(tiny_model_dir))
    records = [{"prompt": "ab:", "completions": ["abba", "xyz"], "label": 1}]
    batch = collate_classified([encode_classified(rm, r) for r in records], rm.tokenizer.pad_token_id)
    r = rm.rewards(["ab:", "ab:"], ["abba", "xyz"])
    assert torch.allclose(class_logits(rm.model, batch), torch.tensor([[r[1], r[0]]]), atol=1e-5)
    zero_head(rm)
    assert class_probabilities(rm, records + [{"prompt": "", "completions": ["a"], "label": 0}]) == [0.5, 0.5]


def test_weak_label_file_errors_name_file_line_and_field(tmp_path):
    ids = ["x-0", "x-1"]
    f = tmp_path / "weak.jsonl"
    cases = {
        '{"id": "x-0", "label": 1}\n{"id": "y-9", "label": 0}\n': ("line 2", "'id'", "y-9"),
        '{"id": "x-0", "label": 1.5}\n': ("line 1", "'label'", "[0, 1]"),
        '{"id": "x-0", "label": "yes"}\n': ("line 1", "'label'", "'yes'"),
        '{"id": "x-0", "label": 1}\n{"id": "x-0", "label": 0}\n': ("line 2", "twice"),
        '{"id": "x-0", "label": 1}\n': ("1 of 2 records have no label", "x-1"),
        '{"id": "x-0"}\n': ("line 1", "'label'", "missing"),
    }
    for text, expected in cases.items():
        f.write_text(text)
        with pytest.raises(InputError) as e:
            load_weak_labels(f, ids)
        assert str(f) in str(e.value) and all(x in str(e.value) for x in expected), (text, str(e.value))
    f.write_text('{"id": "x-1", "label": true}\n{"id": "x-0", "label": 0.25}\n')
    assert load_weak_labels(f, ids) == {"x-0": 0.25, "x-1": 1.0}


SMALL = [
    "params.datasets=[letters_rm]",
    "params.ladder=[{hidden: 8, layers: 1}, {hidden: 16, layers: 1}, {hidden: 16, layers: 2}]",
    "params.corpus=90",
    "params.pretrain_steps=3",
    "params.n=32",
    "params.n_test=16",
    "params.epochs=1",
    "training.batch_size=16",
]


def test_recipe_end_to_end_with_a_weak_label_file_and_resume(tmp_path, capsys):
    cfg = tmp_path / "w2s.yaml"
    cfg.write_text("recipe: weak_to_strong\nseed: 1\n")
    half_b = w2s.splits("letters_rm", 32, 16, seed=1)[1]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"id": r["id"], "label": r["label"]}) + "\n" for r in half_b))
    out = tmp_path / "run"
    args = ["run", str(cfg), "--out", str(out), *SMALL, f"params.weak_labels={{letters_rm: {labels}}}"]
    assert main(args) == 0
    (row,) = read_jsonl(out / "metrics.jsonl")
    sizes = ["h8-l1", "h16-l1", "h16-l2"]
    assert row["dataset"] == "letters_rm" and row["sizes"] == sizes
    pairs = ["h8-l1>h16-l1", "h8-l1>h16-l2", "h16-l1>h16-l2"]
    for loss in ("xent", "logconf"):
        assert list(row["weak_to_strong"][loss]) == pairs
        for pair, acc in row["weak_to_strong"][loss].items():
            t, s = pair.split(">")
            want = performance_gap_recovered(row["accuracy"][f"ceiling {t}"], acc, row["accuracy"][f"ceiling {s}"])
            assert row["pgr"][loss][pair] == want
        assert list(row["bootstrap"][loss]) == ["h16-l2"]
    assert row["weak_label_accuracy"]["file"] == 1.0 and list(row["from_weak_label_file"]) == [
        f"file>{s}" for s in sizes
    ]
    # each student's test accuracy is what its stage file holds
    rows = read_jsonl(out / "round-001" / "h8-l1-to-h16-l2-logconf-test.jsonl")
    acc = sum((r["prediction"] > 0.5) == (r["label"] > 0.5) for r in rows) / len(rows)
    assert acc == row["weak_to_strong"]["logconf"]["h8-l1>h16-l2"]
    log = read_jsonl(out / "round-001" / "h8-l1-to-h16-l2-logconf" / "train_log.jsonl")
    assert log[-1]["alpha"] == 0.5 and log[0]["alpha"] == 0.0
    assert (out / "report.html").is_file() and (out / "weak_to_strong.png").is_file()

    stages = json.loads((out / "manifest.json").read_text())["stages"]
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0  # everything done: nothing reruns
    assert json.loads((out / "manifest.json").read_text())["stages"] == stages


def test_a_bad_weak_label_file_stops_before_the_run_starts(tmp_path, capsys):
    cfg = tmp_path / "w2s.yaml"
    cfg.write_text("recipe: weak_to_strong\n")
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"id": "nope", "label": 1}\n')
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), *SMALL, f"params.weak_labels={{letters_rm: {labels}}}"]) == 2
    err = capsys.readouterr().err
    assert f"{labels}, line 1: field 'id'" in err and "Traceback" not in err
    assert not out.exists()


def test_a_ladder_size_whose_heads_do_not_divide_hidden_is_refused(tmp_path, capsys):
    cfg = tmp_path / "w2s.yaml"
    cfg.write_text("recipe: weak_to_strong\n")
    bad = "params.ladder=[{hidden: 10, layers: 1, heads: 4}, {hidden: 16, layers: 1}]"
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), bad]) == 2
    err = capsys.readouterr().err
    assert "params" in err and "heads (4) must divide hidden (10)" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
