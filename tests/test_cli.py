"""CLI behaviour on bad input: non-zero exit, a message naming file/line/field, nothing left behind."""

import subprocess
import sys

import pytest

from selfalign.cli import build_parser, main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "selfalign.cli", *map(str, args)], capture_output=True, text=True)


def test_help_documents_every_option():
    parser = build_parser()
    for sub in parser._subparsers._group_actions[0].choices.values():
        for action in sub._actions:
            assert action.help, f"{sub.prog} {action.dest} lacks help"


def test_recipes_lists_each_with_a_line(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in ("star", "rft", "rest", "rejection"):
        assert any(line.startswith(name) and len(line) > 20 for line in out.splitlines())


@pytest.fixture
def cfg(tmp_path):
    def make(text):
        p = tmp_path / "cfg.yaml"
        p.write_text(text)
        return p

    return make


def test_unknown_config_key(cfg, tmp_path):
    out = tmp_path / "run"
    r = run_cli("run", cfg("recipe: star\nsampling:\n  n: 2\n  temprature: 0.5\n"), "--out", out)
    assert r.returncode == 2
    assert "cfg.yaml, line 4: field 'sampling.temprature': unknown key" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_unknown_recipe(cfg, tmp_path):
    r = run_cli("run", cfg("recipe: strar\n"), "--out", tmp_path / "run")
    assert r.returncode == 2 and "unknown recipe 'strar'" in r.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "content,expected",
    [
        (
            '{"question": "1+1?", "answer": "#### 2"}\n{"question": 1+1}\n',
            "train.jsonl, line 2: not valid JSON",
        ),
        (
            '{"question": "1+1?", "answer": "#### 2"}\n{"question": "2+2?"}\n',
            "train.jsonl, line 2: field 'answer'",
        ),
        ('{"question": "1+1?", "answer": "two"}\n', "train.jsonl, line 1: field 'answer': no final answer"),
        ("\n", "train.jsonl: file has no records"),
    ],
)
def test_bad_task_file(cfg, tmp_path, content, expected):
    data = tmp_path / "train.jsonl"
    data.write_text(content)
    out = tmp_path / "run"
    r = run_cli("run", cfg(f"recipe: star\ntask:\n  name: jsonl\n  train_path: {data}\n"), "--out", out)
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr
    assert not out.exists()


def test_missing_model_path(cfg, tmp_path):
    out = tmp_path / "run"
    r = run_cli("run", cfg(f"recipe: star\nmodel:\n  path: {tmp_path / 'no-such-model'}\n"), "--out", out)
    assert r.returncode == 2
    assert "no-such-model: field 'model.path': model path does not exist" in r.stderr
    assert not out.exists()


def test_missing_config_file(tmp_path):
    r = run_cli("run", tmp_path / "absent.yaml")
    assert r.returncode == 2 and "absent.yaml: config file not found" in r.stderr


def test_eval_writes_metrics_and_report(tmp_path):
    out = tmp_path / "ev"
    r = run_cli("eval", "--model", "builtin:arith-tiny", "--out", out, "task.eval_digits=[2]", "task.n_eval=5")
    assert r.returncode == 0, r.stderr
    assert (out / "metrics.jsonl").is_file() and (out / "report.html").is_file()


def test_a_hub_dataset_without_a_route_to_the_hub_fails_at_once(tmp_path):
    """Without a route to the hub (a .invalid host never resolves), datasets is told it is offline up front:
    an `hf:` input fails in about a second, not after its 24 s of retries."""
    import os
    import time

    cfg = tmp_path / "c.yaml"
    task = "task: {name: jsonl, train_path: 'hf:someone/prompts'}"
    cfg.write_text(f"recipe: star\nmodel: {{path: builtin:arith-tiny}}\n{task}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env["HF_ENDPOINT"] = "https://hub.invalid"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "selfalign.cli", "run", str(cfg), "--out", str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and time.monotonic() - start < 20
    assert "hf:someone/prompts: cannot load through datasets" in proc.stderr and "Offline" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
