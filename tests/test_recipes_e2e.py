"""End-to-end recipe runs on the shipped tiny checkpoint (seconds each)."""

import json
import os

import pytest

from selfalign.cli import main
from selfalign.records import read_jsonl

SMALL = [
    "task.train_digits=[2]",
    "task.eval_digits=[2,3]",
    "task.n_train=12",
    "task.n_eval=8",
    "sampling.n=2",
    "sampling.max_new_tokens=40",
    "training.steps=4",
    "training.batch_size=8",
]


def run(tmp_path, recipe, *overrides):
    cfg = tmp_path / f"{recipe}.yaml"
    cfg.write_text(f"recipe: {recipe}\nseed: 1\nmodel:\n  path: builtin:arith-tiny\n")
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), *SMALL, *overrides]) == 0
    return out


def check_provenance(rec, round):
    prov = rec["provenance"]
    assert prov["round"] == round and prov["seed"] == 1
    assert {"model", "sampler", "scorer", "filter", "stage"} <= set(prov)
    assert prov["sampler"]["seed"] >= 0 and prov["scorer"] == "checker:arithmetic"


def test_star_writes_rounds_metrics_and_report(tmp_path):
    out = run(tmp_path, "star", "params.rounds=2", "params.patience=5")
    manifest = json.loads((out / "manifest.json").read_text())
    for stage in [
        "round-000/eval",
        "round-001/samples",
        "round-001/rationalize",
        "round-001/train",
        "round-001/eval",
        "round-002/samples",
        "round-002/eval",
    ]:
        assert stage in manifest["stages"], stage
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["round"] for m in metrics] == [0, 1, 2]
    assert all(set(m["accuracy"]) == {"2", "3"} for m in metrics)
    samples = read_jsonl(out / "round-001" / "samples.jsonl")
    assert len(samples) == 12 * 2
    check_provenance(samples[0], 1)
    assert samples[0]["provenance"]["model"] == "builtin:arith-tiny"
    train = read_jsonl(out / "round-001" / "train.jsonl")
    assert train and all("?" not in r["prompt"] for r in train)  # rationales are saved without the hint
    assert (out / "round-001" / "checkpoint" / "config.json").is_file()
    # Round 2 trains from the base model again (paper default) and samples from round 1's checkpoint.
    assert manifest["stages"]["round-002/train"]["summary"]["init"] == "builtin:arith-tiny"
    assert read_jsonl(out / "round-002" / "samples.jsonl")[0]["provenance"]["model"] == "round-001/checkpoint"
    # STaR's step budget grows 20% per round.
    assert manifest["stages"]["round-002/train"]["summary"]["steps"] == 5
    assert (out / "accuracy.png").stat().st_size > 1000 and (out / "report.html").is_file()


def test_rft_dedups_and_trains_base(tmp_path):
    out = run(tmp_path, "rft", "params.k=4", "sampling.temperature=1.0")
    samples = read_jsonl(out / "round-001" / "samples.jsonl")
    train = read_jsonl(out / "round-001" / "train.jsonl")
    correct = [s for s in samples if s["correct"]]
    assert 0 < len(train) <= len(correct)
    keys = [(t["prompt"], t["completion"]) for t in train]
    assert len(keys) == len(set(keys))  # arithmetic paths are deterministic: one per solved problem
    assert len(train) == len({s["problem_id"] for s in correct})
    assert [m["round"] for m in read_jsonl(out / "metrics.jsonl")] == [0, 1]


def test_rft_can_drop_paths_cut_off_at_the_token_limit(tmp_path):
    # 2- and 3-digit sums; a limit one token short of the longest right path's EOS: the same seeded samples, so
    # the long right paths are still right but cut off, and finished_only must drop them and keep the short ones.
    over = ["task.train_digits=[2,3]", "params.k=4", "sampling.temperature=1.0"]
    (tmp_path / "full").mkdir()
    full = read_jsonl(run(tmp_path / "full", "rft", *over) / "round-001/samples.jsonl")
    limit = max(s["n_tokens"] for s in full if s["correct"]) - 1
    (tmp_path / "cut").mkdir()
    out = run(tmp_path / "cut", "rft", *over, f"sampling.max_new_tokens={limit}", "params.finished_only=true")
    samples = read_jsonl(out / "round-001" / "samples.jsonl")
    assert any(s["correct"] and not s["finished"] for s in samples)
    finished = {s["id"] for s in samples if s["correct"] and s["finished"]}
    train = read_jsonl(out / "round-001" / "train.jsonl")
    assert train and {r["source"] for r in train} <= finished
    assert len(train) == len({s["problem_id"] for s in samples if s["id"] in finished})


@pytest.mark.parametrize(
    "recipe,params", [("rest", ["params.iterations=1"]), ("rejection", ["params.rounds=1", "params.k=2"])]
)
def test_rest_and_rejection_run(tmp_path, recipe, params):
    out = run(tmp_path, recipe, *params)
    train = read_jsonl(out / "round-001" / "train.jsonl")
    assert train and all(r["provenance"]["round"] == 1 for r in train)
    if recipe == "rejection":
        assert all(r["provenance"]["score"] == 1.0 for r in train)
        assert len({r["prompt"] for r in train}) == len(train)  # the best sample per prompt


def test_rejection_can_drop_cut_off_samples_and_prefer_the_shortest(tmp_path):
    # Every sample is scored (min_score far below 0), so each prompt keeps its finished sample with the best
    # (score, fewest tokens); at T=2.5 with 24 new tokens some samples are cut off and wrong ones differ in length.
    over = ["params.rounds=1", "params.k=8", "params.temperature=2.5", "params.min_score=-1e9"]
    out = run(
        tmp_path,
        "rejection",
        *over,
        "sampling.max_new_tokens=24",
        "params.finished_only=true",
        "params.prefer_shorter=true",
    )
    samples = read_jsonl(out / "round-001" / "samples.jsonl")
    assert any(not s["finished"] for s in samples)
    shortest, first = {}, {}
    for s in samples:
        if s["finished"]:
            shortest[s["problem_id"]] = min(
                shortest.get(s["problem_id"], s), s, key=lambda x: (-x["correct"], x["n_tokens"])
            )
            first[s["problem_id"]] = min(first.get(s["problem_id"], s), s, key=lambda x: -x["correct"])
    train = read_jsonl(out / "round-001" / "train.jsonl")
    assert sorted(r["source"] for r in train) == sorted(s["id"] for s in shortest.values())
    assert shortest != first  # the preference for the shorter changed some prompt's pick


def test_existing_run_dir_requires_resume(tmp_path, capsys):
    out = run(tmp_path, "rft", "params.k=1")
    cfg = tmp_path / "rft.yaml"
    assert main(["run", str(cfg), "--out", str(out), *SMALL, "params.k=1"]) == 2
    assert "--resume" in capsys.readouterr().err
    # Resuming a finished run redoes nothing and changes nothing.
    before = (out / "manifest.json").read_text()
    assert main(["run", str(cfg), "--out", str(out), "--resume", *SMALL, "params.k=1"]) == 0
    assert (out / "manifest.json").read_text() == before
    # A changed config cannot resume the old run.
    assert main(["run", str(cfg), "--out", str(out), "--resume", *SMALL, "params.k=2"]) == 2


def test_tensorboard_receives_the_metrics_rows_and_training_logs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = run(tmp_path, "star", "params.rounds=1", "tracking.report_to=[tensorboard]")
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    rows = read_jsonl(out / "metrics.jsonl")
    for row in rows:
        for tag, value in [("accuracy/2", row["accuracy"]["2"]), ("mean_tokens", row["mean_tokens"])]:
            logged = {e.step: e.value for e in events.Scalars(f"metrics/{tag}")}
            assert logged[row["round"]] == pytest.approx(value)
    assert len(rows) == 2
    train_log = read_jsonl(out / "round-001" / "checkpoint" / "train_log.jsonl")
    losses = events.Scalars("round-001/train/loss")
    assert [(e.step, e.value) for e in losses] == [(e["step"], pytest.approx(e["loss"])) for e in train_log]
    # trackers are not part of the frozen config: a resumed run may drop or add them
    cfg = tmp_path / "star.yaml"
    assert main(["run", str(cfg), "--out", str(out), "--resume", *SMALL, "params.rounds=1"]) == 0


def test_trackio_receives_the_metrics_rows_and_training_logs(tmp_path):
    """Offline: trackio writes a SQLite database under TRACKIO_DIR (read when trackio is imported: a subprocess)."""
    pytest.importorskip("trackio")
    import sqlite3
    import subprocess
    import sys

    cfg = tmp_path / "star.yaml"
    cfg.write_text("recipe: star\nseed: 1\nmodel:\n  path: builtin:arith-tiny\n")
    out = tmp_path / "run"
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio")}
    overrides = [*SMALL, "params.rounds=1", "tracking.report_to=[trackio]", "tracking.project=selfalign-test"]
    command = [sys.executable, "-m", "selfalign.cli", "run", str(cfg), "--out", str(out), *overrides]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(tmp_path / "trackio" / "selfalign-test.db") as db:
        logged = [
            (step, json.loads(m)) for step, m in db.execute("select step, metrics from metrics where run_name='run'")
        ]
    rows = read_jsonl(out / "metrics.jsonl")
    accuracy = {step: m["metrics/accuracy/2"] for step, m in logged if "metrics/accuracy/2" in m}
    assert accuracy == {r["round"]: pytest.approx(r["accuracy"]["2"]) for r in rows} and len(rows) == 2
    train_log = read_jsonl(out / "round-001" / "checkpoint" / "train_log.jsonl")
    losses = [(step, m["round-001/train/loss"]) for step, m in logged if "round-001/train/loss" in m]
    assert losses == [(e["step"], pytest.approx(e["loss"])) for e in train_log]


def test_export_writes_every_jsonl_as_parquet_that_datasets_reads(tmp_path):
    import datasets

    out = run(tmp_path, "star", "params.rounds=1")
    assert main(["export", str(out)]) == 0
    files = sorted(out.rglob("*.jsonl"))
    assert len(files) >= 6
    for path in files:
        if not (rows := read_jsonl(path)):
            continue
        table = datasets.load_dataset(
            "parquet", data_files=str(out / "parquet" / path.relative_to(out).with_suffix(".parquet")), split="train"
        )
        assert len(table) == len(rows) and set(table.column_names) == set().union(*rows)
        assert all(without_nulls(table[i]) == without_nulls(rows[i]) for i in range(len(rows)))
    assert main(["export", str(tmp_path)]) == 2  # not a run directory: an error, not a traceback


def without_nulls(value):
    """A record with null fields dropped (parquet gives a record every column of its file, null where absent)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return [without_nulls(v) for v in value] if isinstance(value, list) else value


def wandb_history(path):
    """The history rows of an offline wandb run file: protobuf records in LevelDB's log format (32 KiB blocks of
    7-byte-headed chunks) after a 7-byte file header. wandb 0.2x+ ships no reader of its own in Python."""
    from wandb.proto import wandb_internal_pb2

    data, rows, at, pending = path.read_bytes(), [], 7, b""
    while at + 7 <= len(data):
        if 32768 - at % 32768 < 7:  # a block's tail too short for a header is padding
            at += 32768 - at % 32768
            continue
        length, kind = int.from_bytes(data[at + 4 : at + 6], "little"), data[at + 6]
        pending += data[at + 7 : at + 7 + length]
        at += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def test_wandb_offline_receives_the_metrics_rows_and_training_logs(tmp_path):
    pytest.importorskip("wandb")
    import subprocess
    import sys

    cfg = tmp_path / "star.yaml"
    cfg.write_text("recipe: star\nseed: 1\nmodel:\n  path: builtin:arith-tiny\n")
    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
    overrides = [*SMALL, "params.rounds=1", "tracking.report_to=[wandb]"]
    command = [sys.executable, "-m", "selfalign.cli", "run", str(cfg), "--out", str(out), *overrides]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    logged = wandb_history(run_file)
    rows = read_jsonl(out / "metrics.jsonl")
    accuracy = [(m["metrics/step"], m["metrics/accuracy/2"]) for m in logged if "metrics/accuracy/2" in m]
    assert accuracy == [(r["round"], pytest.approx(r["accuracy"]["2"])) for r in rows] and len(rows) == 2
    train_log = read_jsonl(out / "round-001" / "checkpoint" / "train_log.jsonl")
    losses = [(m["round-001/train/step"], m["round-001/train/loss"]) for m in logged if "round-001/train/loss" in m]
    assert losses == [(e["step"], pytest.approx(e["loss"])) for e in train_log]
