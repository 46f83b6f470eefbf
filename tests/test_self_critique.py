"""The self-critique recipe end to end on the letters task (a tiny model, single-letter verdict labels)."""

from __future__ import annotations

import json

from selfalign.cli import main
from selfalign.records import read_jsonl

CONFIG = """recipe: self_critique
model: {path: "builtin:letters-sft"}
task: {name: letters, n_eval: 8}
params:
  critiqueability_template: "{prompt}{response}?"
  critique_template: "{prompt}{response}!"
  refine_template: "{prompt}{response}{critique}:"
  plain_refine_template: "{prompt}{response}:"
  labels: [a, b]
  critique_tokens: 6
"""


def test_self_critique_end_to_end_and_resume(tmp_path):
    cfg = tmp_path / "self_critique.yaml"
    cfg.write_text(CONFIG)
    out = tmp_path / "run"
    args = ["run", str(cfg), "--out", str(out), "sampling.max_new_tokens=12"]
    assert main(args) == 0
    (row,) = read_jsonl(out / "metrics.jsonl")
    answers = read_jsonl(out / "round-000" / "answers.jsonl")
    flawed = [not a["correct"] for a in answers]
    assert row["answers"]["correct"] == 1 - sum(flawed) / len(flawed)
    for name in ("with critique", "without critique"):
        refined = row[f"refined {name}"]
        assert {"correct", "gold reward", "fixed", "broken", "win rate over answers"} <= set(refined)
    verdicts = read_jsonl(out / "round-000" / "critiqueability.jsonl")
    said = [v["probs"][0] > 0.5 for v in verdicts]
    assert row["critiqueability"]["accuracy"] == sum(s == f for s, f in zip(said, flawed)) / len(flawed)
    critiques = read_jsonl(out / "round-000" / "critiques.jsonl")
    assert [c["prompt"] for c in critiques] == [a["prompt"] + a["completion"] + "!" for a in answers]
    assert "refined with critique" in (out / "report.html").read_text()
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "manifest.json").read_text())["stages"] == stages


def test_a_template_with_an_unknown_placeholder_is_refused_before_the_run(tmp_path, capsys):
    cfg = tmp_path / "self_critique.yaml"
    cfg.write_text(CONFIG)
    bad = "params.refine_template='{prompt}{response}{answer}'"
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), bad]) == 2
    err = capsys.readouterr().err
    assert "params.refine_template" in err and "unknown placeholder {answer}" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
