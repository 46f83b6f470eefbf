"""One process per run directory, and clean exits: two runs racing for one --out, a lock left by a killed
process, user errors / Ctrl-C / SIGTERM before and after the first completed stage."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml
from filelock import FileLock

from selfalign.cli import Terminated, main
from selfalign.config import load_config
from selfalign.errors import SelfAlignError
from selfalign.records import read_jsonl
from selfalign.run import LOCK, LOCK_INFO, Run

# A real star run of a few seconds; `steps` sets how long its training stage lasts.
CONFIG = """recipe: star
model: {{path: "builtin:arith-tiny"}}
task: {{name: arithmetic, train_digits: [2], eval_digits: [2], n_train: 8, n_eval: 8}}
sampling: {{n: 1}}
training: {{steps: {steps}, batch_size: 8}}
params: {{rounds: 1}}
"""


def config(tmp_path, steps=2):
    path = tmp_path / "star.yaml"
    path.write_text(CONFIG.format(steps=steps))
    return path


def start(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "selfalign.cli", "run", *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (rc {proc.returncode}) first: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("timed out")


def stages(out):
    try:
        return json.loads((out / "manifest.json").read_text())["stages"]
    except (OSError, ValueError):
        return {}


# `selfalign run` in a process that imports everything first, says so, and starts when told: two of them then
# reach the lock within milliseconds of each other, however unevenly the machine schedules their imports.
RACER = """import pathlib, sys, time
import selfalign.loop, selfalign.models.check, selfalign.report.html
from selfalign.cli import main
ready, go = map(pathlib.Path, sys.argv[1:3])
ready.touch()
while not go.exists():
    time.sleep(0.005)
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
def test_two_runs_on_one_out_dir(tmp_path):
    cfg, out, go = config(tmp_path, steps=10), tmp_path / "run", tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}
    procs = {
        seed: subprocess.Popen(
            [sys.executable, "-c", RACER, tmp_path / f"ready{seed}", go, "run", cfg, "--out", out, f"seed={seed}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for seed in (1, 2)
    }
    wait_for(lambda: all((tmp_path / f"ready{seed}").exists() for seed in procs), procs[1])
    go.touch()
    results = {seed: (p.wait(timeout=300), p.stderr.read()) for seed, p in procs.items()}
    winners = [seed for seed, (rc, _) in results.items() if rc == 0]
    assert len(winners) == 1, results
    (winner,) = winners
    (loser,) = {1, 2} - {winner}
    rc, err = results[loser]
    assert rc == 2 and "Traceback" not in err
    holder = f"is locked by another selfalign process (pid {procs[winner].pid} on {socket.gethostname()}"
    assert holder in err and f"seed={winner}" in err, err
    # One coherent run: the winner's config, every stage, records drawn with its seed.
    assert yaml.safe_load((out / "config.yaml").read_text())["seed"] == winner
    assert "round-001/eval" in stages(out)
    assert [r["round"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1]
    assert {r["provenance"]["seed"] for r in read_jsonl(out / "round-001" / "samples.jsonl")} == {winner}
    assert not (out / LOCK_INFO).exists()
    # The lock went with the winner: resuming the finished run works, and redoes nothing.
    before = (out / "manifest.json").read_text()
    assert main(["run", str(cfg), "--out", str(out), "--resume", f"seed={winner}"]) == 0
    assert (out / "manifest.json").read_text() == before


@pytest.mark.slow
def test_a_killed_runs_lock_does_not_block_resume(tmp_path):
    cfg, out = config(tmp_path), tmp_path / "run"
    proc = start(cfg, "--out", out)
    wait_for(lambda: (out / "manifest.json").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    info = json.loads((out / LOCK_INFO).read_text())  # stale: names the dead process
    assert info["pid"] == proc.pid
    assert main(["run", str(cfg), "--out", str(out), "--resume"]) == 0
    assert "round-001/eval" in stages(out) and not (out / LOCK_INFO).exists()


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_then_resume(tmp_path, sig, code):
    cfg, out = config(tmp_path, steps=40), tmp_path / "run"
    proc = start(cfg, "--out", out)
    wait_for(lambda: "round-000/eval" in stages(out), proc)
    time.sleep(0.3)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == code
    err = proc.stderr.read()
    assert f"selfalign: interrupted; resume with: selfalign run {cfg} --resume --out {out}\n" in err, err
    assert "Traceback" not in err
    assert "round-001/eval" not in stages(out), "the run finished before the signal"
    assert not (out / LOCK_INFO).exists() and not list(out.rglob("*.tmp"))
    assert main(["run", str(cfg), "--resume", "--out", str(out)]) == 0
    assert "round-001/eval" in stages(out)


def test_lock_holder_is_named(tmp_path, capsys):
    cfg, out = config(tmp_path), tmp_path / "run"
    out.mkdir()
    (out / LOCK_INFO).write_text(json.dumps({"pid": 4242, "host": "elsewhere", "since": "noon", "command": "x y"}))
    with FileLock(str(out / LOCK), timeout=0):  # another process holding the directory
        assert main(["run", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is locked by another selfalign process (pid 4242 on elsewhere, since noon: x y)" in err
    assert sorted(p.name for p in out.iterdir()) == [LOCK, LOCK_INFO]  # the holder's directory, untouched


def test_run_lock_is_exclusive_until_closed(tmp_path):
    cfg, out = load_config(config(tmp_path)), tmp_path / "run"
    first = Run(out, cfg)
    assert json.loads((out / LOCK_INFO).read_text())["pid"] == os.getpid()
    with pytest.raises(SelfAlignError, match=f"pid {os.getpid()}"):
        Run(out, cfg, resume=True)
    first.close()
    assert not (out / LOCK_INFO).exists()
    with Run(out, cfg, resume=True) as again:
        assert again.completed_stages() == 0 and not again.created


def test_what_a_killed_process_left_is_not_user_data(tmp_path):
    """Killed between writing config.yaml and the manifest, or during an atomic write: a re-run may use the
    directory, and the temp files go."""
    cfg, out = load_config(config(tmp_path)), tmp_path / "run"
    Run(out, cfg).close()
    (out / "manifest.json").unlink()
    (out / ".manifest.json.x1y2.tmp").write_text("{")
    with Run(out, cfg) as run:
        assert run.created and not (out / ".manifest.json.x1y2.tmp").exists()
    (out / "round-001").mkdir()
    (out / "round-001" / ".samples.jsonl.abc.tmp").write_text("half a record")
    with Run(out, cfg, resume=True):
        assert not list(out.rglob("*.tmp"))


def failing_recipe(monkeypatch, exc, stage_first=False):
    import selfalign.recipes.star as star

    def run(loop):
        if stage_first:
            loop.run.stage("round-000/first", lambda: {"ok": True})
        raise exc

    monkeypatch.setattr(star, "run", run)


@pytest.mark.parametrize(
    "exc,code,message",
    [
        (SelfAlignError("bad data on line 3"), 2, "selfalign: error: bad data on line 3"),
        (KeyboardInterrupt(), 130, "selfalign: interrupted; resume with: selfalign run {cfg} --resume --out {out}"),
        (Terminated(), 143, "selfalign: interrupted; resume with: selfalign run {cfg} --resume --out {out}"),
    ],
)
def test_failure_before_any_stage_removes_the_new_run(tmp_path, capsys, monkeypatch, exc, code, message):
    cfg, out = config(tmp_path), tmp_path / "deep" / "run"
    failing_recipe(monkeypatch, exc)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(["run", str(cfg), "--out", str(out)]) == code
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
    err = capsys.readouterr().err
    assert message.format(cfg=cfg, out=out) in err and "Traceback" not in err
    assert not (tmp_path / "deep").exists()  # the parent it created went too


def test_failure_after_a_stage_keeps_the_run_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    cfg, out = config(tmp_path), tmp_path / "run"
    failing_recipe(monkeypatch, SelfAlignError("bad data on line 3"), stage_first=True)
    assert main(["run", str(cfg), "--out", str(out), "training.lr=0.01"]) == 2
    err = capsys.readouterr().err
    resume = f"selfalign run {cfg} training.lr=0.01 --resume --out {out}"
    assert f"the completed stages are kept in {out}; once fixed, resume with: {resume}" in err
    assert "round-000/first" in stages(out) and not (out / LOCK_INFO).exists()


def test_failure_in_an_existing_empty_dir_leaves_it_empty(tmp_path, capsys, monkeypatch):
    cfg, out = config(tmp_path), tmp_path / "run"
    out.mkdir()
    failing_recipe(monkeypatch, KeyboardInterrupt())
    assert main(["run", str(cfg), "--out", str(out)]) == 130
    assert out.is_dir() and not list(out.iterdir())


def test_demo_interrupt_message(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    failing_recipe(monkeypatch, KeyboardInterrupt())
    assert main(["demo", "--out", str(out), "task.n_eval=4"]) == 130
    assert f"selfalign: interrupted; resume with: selfalign demo task.n_eval=4 --resume --out {out}" in (
        capsys.readouterr().err
    )
