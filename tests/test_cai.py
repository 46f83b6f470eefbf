"""Constitutional AI end to end on the letters testbed (a tiny model; the mechanics, not the effect): SL-CAI's
critique -> revision chain with principles drawn per prompt and round, SFT on the final revisions, RL-CAI's pairs
labelled with the comparison principles; bad constitutions refused before the run."""

from __future__ import annotations

import json

from selfalign.cli import main
from selfalign.records import read_jsonl

CONFIG = """recipe: cai
model: {{path: "builtin:letters-sft"}}
task: {{name: letters, n_prompts: 60, n_eval: 8}}
sampling: {{max_new_tokens: 8, batch_size: 256}}
training: {{steps: 3, batch_size: 8}}
eval: {{k: 1, batch_size: 256}}
params:
  constitution: {constitution}
  revisions: 2
  prompts: 10
  rl_prompts: 12
  critique_tokens: 4
  critique_template: "{{prompt}}{{response}}{{request}}"
  revision_template: "{{prompt}}{{response}}{{critique}}{{request}}"
  judge_template: "{{prompt}}{{principle}}{{first}}:{{second}}:"
  judge_labels: [a, b]
"""


def write(tmp_path, lines: list[dict]):
    constitution = tmp_path / "constitution.jsonl"
    constitution.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = tmp_path / "cai.yaml"
    cfg.write_text(CONFIG.format(constitution=constitution))
    return cfg


PRINCIPLES = [
    {"critique": "x", "revision": "y"},
    {"critique": "xx", "revision": "yy"},
    {"comparison": "z"},
    {"comparison": "zz"},
]


def test_cai_end_to_end_and_resume(tmp_path):
    cfg = write(tmp_path, PRINCIPLES)
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert set(rows[1]["sl_chain"]) == {"revision 0", "revision 1", "revision 2"}
    responses = read_jsonl(out / "round-001" / "responses.jsonl")
    critiques = read_jsonl(out / "round-001" / "critiques-1.jsonl")
    # the critique prompt holds the response and the drawn principle's critique request
    assert all(c["prompt"][len(y["prompt"] + y["completion"]) :] in {"x", "xx"} for c, y in zip(critiques, responses))
    final = read_jsonl(out / "round-001" / "revisions-2.jsonl")
    sft = read_jsonl(out / "round-001" / "train.jsonl")
    assert [(r["prompt"], r["completion"]) for r in sft] == [(y["prompt"], y["completion"]) for y in final]
    pairs = read_jsonl(out / "round-002" / "pairs.jsonl")
    assert pairs and "flip_rate" in rows[2]["labeller"]
    assert "graded responses by stage" in (out / "report.html").read_text()
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    assert main(["run", str(cfg), "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "manifest.json").read_text())["stages"] == stages


def test_a_constitution_without_revision_principles_is_refused(tmp_path, capsys):
    cfg = write(tmp_path, PRINCIPLES[2:])
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "SL-CAI needs critique/revision principles" in err and "Traceback" not in err
    cfg = write(tmp_path, [*PRINCIPLES, {"critique": "c {response}", "revision": "r"}])
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "line 5: field 'critique': unknown placeholder {response}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
