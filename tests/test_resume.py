"""Kill a running `selfalign run` mid-stage; --resume must finish with exactly the uninterrupted records."""

import json
import os
import signal
import subprocess
import sys
import time

from selfalign.records import read_jsonl

CONFIG = """recipe: star
seed: 3
model: {path: "builtin:arith-tiny"}
task: {name: arithmetic, train_digits: [3], eval_digits: [3], n_train: 24, n_eval: 8}
sampling: {n: 2, max_new_tokens: 48}
training: {steps: 40, batch_size: 8}
params: {rounds: 2, patience: 5}
"""


def start(cfg, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "selfalign.cli", "run", str(cfg), "--out", str(out), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )


def records(run_dir):
    out = {}
    for f in sorted(run_dir.rglob("*.jsonl")):
        if "checkpoint" in f.parts:
            continue
        rows = read_jsonl(f)
        for r in rows:
            r.get("provenance", {}).pop("run", None)
        out[str(f.relative_to(run_dir))] = rows
    return out


def test_kill_mid_stage_then_resume_matches_uninterrupted(tmp_path):
    cfg = tmp_path / "star.yaml"
    cfg.write_text(CONFIG)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ref, victim = tmp_path / "a" / "run", tmp_path / "b" / "run"
    assert start(cfg, ref).wait(timeout=300) == 0

    proc = start(cfg, victim)
    manifest = victim / "manifest.json"
    deadline = time.time() + 240
    # Wait until round 1 has sampled, then kill while its training stage is running.
    while time.time() < deadline:
        if manifest.exists() and "round-001/rationalize" in json.loads(manifest.read_text())["stages"]:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("run never reached round-001/rationalize")
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stages = json.loads(manifest.read_text())["stages"]
    assert "round-002/eval" not in stages, "the run finished before it could be interrupted"

    assert start(cfg, victim, "--resume").wait(timeout=300) == 0
    got, want = records(victim), records(ref)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == want[name], name
    assert not list(victim.rglob("*.tmp")) and not list(victim.rglob(".*.tmp"))


def test_resume_refuses_a_truncated_stage_file(tmp_path, capsys):
    """A completed stage's JSONL is checked against the count and sha256 the manifest kept: a file cut short
    after the stage completed is refused, not silently trained on."""
    from selfalign.cli import main

    cfg = tmp_path / "star.yaml"
    cfg.write_text(CONFIG.replace("rounds: 2", "rounds: 1").replace("steps: 40", "steps: 2"))
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    samples = out / "round-001" / "samples.jsonl"
    lines = samples.read_text().splitlines(keepends=True)
    samples.write_text("".join(lines[:-1]))
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"{samples}: stage output is missing or differs from what stage round-001/samples wrote" in err
    assert f"({len(lines)} records" in err
