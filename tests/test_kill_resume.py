"""SIGKILL `selfalign run` at random points in every kind of stage; --resume must end identical to a clean run.

Acceptance test for resume. Small real configs together cover every stage kind: sampling and rationalization,
SFT / DPO / reward-model training with their checkpoint saves, pair loading and self-judging, eval, pair eval and
the report. Each config is first run uninterrupted (the reference) while its manifest is polled, which gives a
timeline: when each stage finished, in seconds from the process start.

20 kill points are drawn on those timelines with a seeded generator: stratified, so that every stage kind is aimed
at, plus one or two per config late in the run (from the start of the last training stage, which ends with the
final checkpoint save, to the end of the report) and one during start-up. A point is replayed as "once the stage
before it has finished (or the manifest has appeared), `offset` seconds more", so it lands in the intended stage
even when the machine is slower or busier than during the reference run. The stage actually in progress is read
from the killed run's manifest afterwards (the first reference stage missing from it), printed and recorded as a
user property; a kill that comes after the run has ended counts as `finished`.

Targeted kills come on top: while save_pretrained writes the final `checkpoint.tmp` (before its rename), and, when
training.save_every exists, inside a training stage after a step checkpoint (the resumed stage must start from that
step, as its progress bar shows) and during a step checkpoint's save.

A resumed run must match its reference: the same files and directories (no `*.tmp` or `*.steps` left behind),
byte-identical JSONL (samples, train data, pairs, eval, metrics.jsonl, train_log.jsonl), config.yaml and every
other checkpoint file, equal safetensors tensors, and the same manifest stages with the same summaries (wall-clock
keys aside). Only the report (report.html, *.png) is not compared: every run rewrites it.

Runs are real `python -m selfalign.cli run` subprocesses, each in its own process group, pinned to the CPU with one
thread, two at a time. Each run works in a directory of its own with `--out run`, so the run directories have the
same (relative) path, as a resumed run has the same path as the run it continues.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfalign.config import TrainingConfig

pytestmark = pytest.mark.slow

STAR = """recipe: star
seed: 3
model: {path: "builtin:arith-tiny"}
task: {name: arithmetic, train_digits: [2, 3], eval_digits: [2, 3], n_train: 32, n_eval: 16}
sampling: {n: 2, max_new_tokens: 40}
training: {steps: 12, batch_size: 8}
params: {rounds: 2, patience: 5}
"""

# SPA: seed pairs -> DPO, then sample, self-judge (implicit reward) and DPO with self-refinement, twice.
SPA = """recipe: spa
seed: 3
model: {path: "builtin:letters-sft"}
task: {name: letters, n_prompts: 512, seed_fraction: 0.125, n_eval: 64}
sampling: {temperature: 1.0, max_new_tokens: 12}
training: {steps: 30, batch_size: 16}
eval: {k: 4, temperature: 1.0}
params: {iterations: 2, prompts_per_iteration: 192, k: 2}
"""

# A reward model (a fresh scalar head, Bradley-Terry with margins), scored on held-out pairs before and after.
REWARD = """recipe: reward
seed: 3
model: {path: "builtin:letters-sft"}
task: {name: letters, n_prompts: 256, seed_fraction: 0.25, n_eval: 64}
training: {steps: 30, batch_size: 16}
params: {data: all, margins: large}
"""

SAVE_EVERY = "save_every" in TrainingConfig.model_fields
# One STaR round with step checkpoints: 40 training steps, the full training state saved every 10.
STEPS = STAR.replace("training: {steps: 12, batch_size: 8}", "training: {steps: 40, batch_size: 8, save_every: 10}")
STEPS = STEPS.replace("params: {rounds: 2, patience: 5}", "params: {rounds: 1}")

CONFIGS = {"star": STAR, "spa": SPA, "reward": REWARD, **({"steps": STEPS} if SAVE_EVERY else {})}
KILL_POINTS = {"star": 8, "spa": 8, "reward": 4}  # the 20 random points
LATE_POINTS = {"star": 2, "spa": 2, "reward": 1}  # from the start of the last training stage to the end
SEED = 20240611
WORKERS = 2
TIMEOUT = 300  # seconds, for any one run
POLL = 0.005

KINDS = {
    "samples": "sampling",
    "rationalize": "sampling",
    "train": "training",
    "judge": "training",
    "eval": "eval",
    "pair_eval": "eval",
    "step_eval": "eval",
    "pairs": "pairs",
    "verifier_scores": "scoring",
}
START, MANIFEST = "<start>", "<manifest>"  # anchors: the process start, the manifest's first appearance
VOLATILE = {"seconds", "finished", "created"}  # manifest keys holding wall-clock times
REPORT_FILES = ("report.html", ".png")  # rewritten by every run, never compared
PARTIAL = (".tmp", ".steps")  # what an interrupted atomic write or training stage leaves


def kind(stage: str) -> str:
    """`round-001/train` -> training; `startup`, `report` and `finished` are kinds of their own."""
    return KINDS.get(stage.rsplit("/", 1)[-1], stage.rsplit("/", 1)[-1])


def env() -> dict[str, str]:
    return {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "CUDA_VISIBLE_DEVICES": "",
        "MPLBACKEND": "Agg",
    }


@dataclass
class Workdir:
    """A directory holding one run, `run/`, plus the logs of the processes that worked on it."""

    path: Path
    cfg: Path

    @property
    def run(self) -> Path:
        return self.path / "run"

    def command(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "selfalign.cli", "run", str(self.cfg), "--out", "run", *extra]

    def shell(self, *extra: str) -> str:
        return f"cd {shlex.quote(str(self.path))} && {shlex.join(self.command(*extra))}"

    def start(self, log: str, *extra: str) -> subprocess.Popen:
        self.path.mkdir(parents=True, exist_ok=True)
        with (self.path / log).open("wb") as f:  # a file, not a pipe: progress bars must never block the run
            return subprocess.Popen(
                self.command(*extra),
                cwd=self.path,
                stdout=f,
                stderr=subprocess.STDOUT,
                env=env(),
                start_new_session=True,
            )

    def tail(self, log: str, n: int = 3000) -> str:
        path = self.path / log
        return path.read_text(errors="replace")[-n:] if path.is_file() else ""

    def resume(self) -> str:
        """Run `--resume` to the end; an error message, empty on success."""
        proc = self.start("resumed.log", "--resume")
        try:
            rc = proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        return "" if rc == 0 else f"`{self.shell('--resume')}` exited with {rc}:\n{self.tail('resumed.log')}"


def stages_of(run: Path) -> dict | None:
    """The manifest's stages; None while there is no manifest (it is written atomically)."""
    try:
        return json.loads((run / "manifest.json").read_text())["stages"]
    except FileNotFoundError:
        return None


def partial_outputs(run: Path) -> list[str]:
    """Interrupted atomic writes (`*.tmp`) and step checkpoints (`*.steps/step-N`) under `run`."""
    if not run.exists():
        return []
    return sorted(
        str(p.relative_to(run)) for p in run.rglob("*") if p.name.endswith(PARTIAL) or p.parent.name.endswith(".steps")
    )


# -- the uninterrupted reference runs ----------------------------------------------------------------------------


@dataclass
class Reference:
    name: str
    work: Workdir
    wall: float  # seconds, process start to exit
    created: float  # when manifest.json appeared
    finished: dict[str, float]  # stage -> when it first showed in the manifest
    seconds: dict[str, float]  # stage -> its duration, as the manifest records it

    @property
    def run(self) -> Path:
        return self.work.run

    def segments(self) -> list[tuple[str, str, float, float]]:
        """(what is in progress, the anchor it follows, start, end): start-up, each stage, then the report."""
        out = [("startup", START, 0.0, self.created)]
        anchor, t = MANIFEST, self.created
        for stage, done in self.finished.items():
            out.append((stage, anchor, t, done))
            anchor, t = stage, done
        return out + [("report", anchor, t, self.wall)]


def run_reference(name: str, root: Path) -> Reference:
    cfg = root / f"{name}.yaml"
    cfg.write_text(CONFIGS[name])
    work = Workdir(root / "reference", cfg)
    t0 = time.monotonic()
    proc = work.start("run.log")
    created, finished = None, {}
    while proc.poll() is None and time.monotonic() - t0 < TIMEOUT:
        stages, now = stages_of(work.run), time.monotonic() - t0
        if stages is not None:
            created = now if created is None else created
            for stage in stages:
                finished.setdefault(stage, now)
        time.sleep(POLL)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    wall = time.monotonic() - t0
    assert proc.wait() == 0, f"reference run `{work.shell()}` failed:\n{work.tail('run.log')}"
    assert not partial_outputs(work.run), f"an uninterrupted run left {partial_outputs(work.run)}"
    stages = stages_of(work.run)
    for stage in stages:  # any stage that finished after the last poll
        finished.setdefault(stage, wall)
    return Reference(name, work, wall, created, finished, {s: v["seconds"] for s, v in stages.items()})


# -- kill points -------------------------------------------------------------------------------------------------


@dataclass
class KillPoint:
    config: str
    label: str
    anchor: str  # START, MANIFEST, a stage name, or `path:<glob>` (the first path under run/ matching it)
    offset: float  # seconds after the anchor
    target: str  # the stage it was drawn in, or what it aims at
    expect_partial: str = ""  # a targeted kill counts only if it left a partial output containing this
    attempts: int = 1

    @property
    def id(self) -> str:
        return f"{self.config}-{self.label}"


def draw_kill_points(ref: Reference, n: int, late: int, rng: random.Random) -> list[KillPoint]:
    """`n` points on the reference timeline: `late` from the start of the last training stage (which ends with the
    final checkpoint save) to the end of the report, for STaR one in start-up (so the resumed run meets a directory
    that the kill left half-created, or none at all), and the rest at a random moment in a random stage of each
    stage kind in turn."""
    segments = ref.segments()
    stages = [s for s in segments[1:-1] if s[3] - s[2] > 0.02]  # stages that finished between two polls: too short
    by_kind: dict[str, list] = {}
    for seg in stages:
        by_kind.setdefault(kind(seg[0]), []).append(seg)
    kinds = sorted(by_kind)
    rng.shuffle(kinds)
    startup = int(ref.name == "star")
    times = [rng.uniform(0.1, 0.9) * ref.created for _ in range(startup)]
    for i in range(n - late - startup):
        _, _, a, b = rng.choice(by_kind[kinds[i % len(kinds)]])
        times.append(rng.uniform(a, b))
    last_training = max(s[2] for s in stages if kind(s[0]) == "training")
    times += [rng.uniform(last_training, ref.wall) for _ in range(late)]
    points = []
    for t in times:
        stage, anchor, a, _ = next(s for s in segments if s[2] <= t < s[3])
        points.append(KillPoint(ref.name, f"{len(points):02d}", anchor, t - a, stage))
    return points


def targeted_points() -> list[KillPoint]:
    """Kills that random times would rarely hit: while save_pretrained writes the final checkpoint, and with
    training.save_every, inside a training stage after a step checkpoint and while a step checkpoint is saved."""
    final = "round-002/checkpoint.tmp"
    points = [KillPoint("star", "final-save", f"path:{final}", 0.0, "round-002/train", final, attempts=4)]
    if SAVE_EVERY:
        step, saving = "round-001/checkpoint.steps/step-000020", "round-001/checkpoint.steps/step-000010.tmp"
        points += [
            KillPoint("steps", "after-step20", f"path:{step}", 0.1, "round-001/train"),
            KillPoint("steps", "saving-step10", f"path:{saving}", 0.0, "round-001/train", saving, attempts=4),
        ]
    return points


# -- a killed and resumed run ------------------------------------------------------------------------------------


@dataclass
class Trial:
    point: KillPoint
    ref: Reference
    work: Workdir
    killed_at: float | None = None  # seconds after the process start; None when it had already exited
    in_progress: str = ""  # what was running when the kill landed (`finished` if the run had ended)
    partial: list[str] = field(default_factory=list)  # *.tmp / *.steps paths the kill left behind
    error: str = ""

    @property
    def kind(self) -> str:
        return kind(self.in_progress)

    def describe(self) -> str:
        p = self.point
        when = "after the run had ended" if self.killed_at is None else f"{self.killed_at:.2f}s after the start"
        left = f" (left {', '.join(self.partial)})" if self.partial else ""
        return (
            f"[{p.id}] SIGKILL {when} ({p.offset:.2f}s after {p.anchor}; aimed at {p.target}); "
            f"in progress: {self.in_progress}{left}; `{self.work.shell()}`, then `--resume`"
        )


def in_progress(ref: Reference, run: Path, exited: bool) -> str:
    stages = stages_of(run)
    if stages is None:
        return "startup"
    missing = [s for s in ref.finished if s not in stages]
    return missing[0] if missing else "finished" if exited else "report"


def anchored(anchor: str, run: Path) -> bool:
    if anchor.startswith("path:"):
        return any(run.glob(anchor[len("path:") :]))
    stages = stages_of(run)
    return stages is not None and (anchor == MANIFEST or anchor in stages)


def kill(trial: Trial) -> None:
    """Start the run and SIGKILL its process group at the trial's point."""
    point, run = trial.point, trial.work.run
    trial.killed_at, trial.partial = None, []
    proc = trial.work.start("killed.log")
    t0 = time.monotonic()
    poll = 0.0005 if point.anchor.startswith("path:") else POLL  # a save lasts milliseconds
    if point.anchor != START:
        while proc.poll() is None and not anchored(point.anchor, run):
            if time.monotonic() - t0 > TIMEOUT:
                raise TimeoutError(f"never reached {point.anchor}")
            time.sleep(poll)
    deadline = (t0 if point.anchor == START else time.monotonic()) + point.offset
    time.sleep(max(0.0, deadline - time.monotonic()))
    if proc.poll() is None:
        trial.killed_at = time.monotonic() - t0
        os.killpg(proc.pid, signal.SIGKILL)
    rc = proc.wait()
    if trial.killed_at is None and rc != 0:
        raise RuntimeError(f"the run to be killed failed by itself (rc {rc}):\n{trial.work.tail('killed.log')}")
    trial.partial = partial_outputs(run)
    trial.in_progress = in_progress(trial.ref, run, trial.killed_at is None)


def kill_and_resume(trial: Trial) -> Trial:
    try:
        for attempt in range(trial.point.attempts):  # a save lasts milliseconds: a poll can miss it
            if attempt:
                shutil.rmtree(trial.work.run)
            kill(trial)
            if not trial.point.expect_partial or any(trial.point.expect_partial in p for p in trial.partial):
                break
        else:
            trial.error = f"{trial.point.attempts} attempts, none killed the run with {trial.point.expect_partial}"
            return trial
        trial.error = trial.work.resume()
    except Exception as e:  # reported by this point's test, not as an error of every test
        trial.error = f"{type(e).__name__}: {e}"
    return trial


@pytest.fixture(scope="module")
def trials(tmp_path_factory) -> dict[str, Trial]:
    root = tmp_path_factory.mktemp("kill-resume")
    for name in CONFIGS:
        (root / name).mkdir()
    with ThreadPoolExecutor(WORKERS) as pool:
        refs = dict(zip(CONFIGS, pool.map(run_reference, CONFIGS, [root / name for name in CONFIGS])))
        print()
        for ref in refs.values():
            timeline = ", ".join(f"{s} {ref.seconds[s]:.2f}s (done at {t:.2f})" for s, t in ref.finished.items())
            print(f"reference {ref.name}: {ref.wall:.1f}s wall, manifest at {ref.created:.2f}s; {timeline}")
        points = [
            p
            for name, n in KILL_POINTS.items()
            for p in draw_kill_points(refs[name], n, LATE_POINTS[name], random.Random(f"{SEED}-{name}"))
        ]
        points += targeted_points()
        todo = [Trial(p, refs[p.config], Workdir(root / p.config / p.label, refs[p.config].work.cfg)) for p in points]
        done = {t.point.id: t for t in pool.map(kill_and_resume, todo)}
    for trial in done.values():
        print(trial.describe())
    return done


# -- comparing two run directories -------------------------------------------------------------------------------


def strip_volatile(obj):
    if isinstance(obj, dict):
        return {k: strip_volatile(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [strip_volatile(v) for v in obj]
    return obj


def differences(want: Path, got: Path) -> list[str]:
    """Every way the run `got` differs from the uninterrupted run `want`; empty when they match."""
    paths = {p.relative_to(want).as_posix() for p in want.rglob("*")}
    have = {p.relative_to(got).as_posix() for p in got.rglob("*")}
    out = [f"only in the uninterrupted run: {p}" for p in sorted(paths - have)]
    out += [f"only in the resumed run: {p}" for p in sorted(have - paths)]
    for rel in sorted(paths & have):
        a, b = want / rel, got / rel
        if a.is_dir() or rel.endswith(REPORT_FILES):
            continue
        if rel == "manifest.json":
            ma, mb = (strip_volatile(json.loads(p.read_text())) for p in (a, b))
            sa, sb = ma.pop("stages"), mb.pop("stages")
            if list(sa) != list(sb):
                out.append(f"{rel}: stages {list(sb)}, uninterrupted {list(sa)}")
            out += [f"{rel}: {s} is {sb.get(s)}, uninterrupted {sa[s]}" for s in sa if sa[s] != sb.get(s)]
            if ma != mb:
                out.append(f"{rel}: header {mb}, uninterrupted {ma}")
        elif rel.endswith(".safetensors"):
            ta, tb = load_file(a), load_file(b)
            if ta.keys() != tb.keys():
                out.append(f"{rel}: tensors {sorted(ta.keys() ^ tb.keys())} are not in both")
            unequal = sorted(k for k in ta.keys() & tb.keys() if not torch.equal(ta[k], tb[k]))
            if unequal:
                out.append(f"{rel}: {len(unequal)} of {len(ta)} tensors differ, e.g. {unequal[:3]}")
        elif a.read_bytes() != b.read_bytes():
            out.append(f"{rel}: content differs{first_differing_line(a, b)}")
    return out


def first_differing_line(a: Path, b: Path) -> str:
    la, lb = a.read_bytes().splitlines(), b.read_bytes().splitlines()
    for i, (x, y) in enumerate(zip(la, lb), start=1):
        if x != y:
            return f" from line {i}:\n    uninterrupted {x[:400]!r}\n    resumed       {y[:400]!r}"
    return f" ({len(la)} lines uninterrupted, {len(lb)} resumed)"


def check(trial: Trial, request) -> None:
    request.node.user_properties.append(("kill_point", trial.describe()))
    assert not trial.error, f"{trial.describe()}\n{trial.error}"
    left = partial_outputs(trial.work.run)
    problems = [f"partial outputs left after --resume: {left}"] if left else []
    problems += differences(trial.ref.run, trial.work.run)
    listing = "\n".join(problems[:12])
    assert not problems, f"{trial.describe()}\nthe resumed run differs from the uninterrupted one:\n{listing}"
    shutil.rmtree(trial.work.path)  # only failing runs are kept for inspection


# -- the tests ---------------------------------------------------------------------------------------------------

RANDOM_IDS = [f"{name}-{i:02d}" for name, n in KILL_POINTS.items() for i in range(n)]


@pytest.mark.parametrize("point", RANDOM_IDS)
def test_killed_run_resumes_identical(trials, point, request):
    check(trials[point], request)


def test_random_kill_points_hit_every_stage_kind(trials, request):
    hits = Counter(trials[p].kind for p in RANDOM_IDS)
    request.node.user_properties.append(("stage_kinds_hit", json.dumps(dict(hits))))
    request.node.user_properties.append(("stages_hit", json.dumps({p: trials[p].in_progress for p in RANDOM_IDS})))
    print(f"\nstage kinds hit by the {len(RANDOM_IDS)} random kill points: {dict(hits)}")
    assert len(RANDOM_IDS) == 20
    for needed in ("sampling", "training", "eval", "report"):
        assert hits[needed] > 0, f"no kill point landed in a {needed} stage: {dict(hits)}"


def test_kill_during_checkpoint_save(trials, request):
    """SIGKILL while save_pretrained writes the final `round-002/checkpoint.tmp`: the resumed run redoes the stage."""
    trial = trials["star-final-save"]
    assert trial.in_progress == trial.point.target, trial.describe()
    check(trial, request)


@pytest.mark.skipif(not SAVE_EVERY, reason="training.save_every is not implemented")
@pytest.mark.parametrize("point", ["steps-after-step20", "steps-saving-step10"])
def test_kill_inside_training_resumes_from_step_checkpoint(trials, point, request):
    """With training.save_every, a training stage killed after (or while saving) a step checkpoint resumes; the
    run still ends identical to an uninterrupted one, and no step checkpoint is left."""
    trial = trials[point]
    assert trial.in_progress == trial.point.target, trial.describe()
    assert any(".steps/step-" in p for p in trial.partial), trial.describe()
    log = trial.work.tail("resumed.log", 100_000)
    check(trial, request)
    # The resumed stage starts from the newest complete step checkpoint the kill left (0 if only a .tmp one),
    # as the first progress line of the stage shows, where there is one (`round-001/train:  50%|...| 20/40`).
    saved = [int(m[1]) for p in trial.partial if (m := re.fullmatch(r".*\.steps/step-(\d+)", p))]
    first = re.search(r"round-001/train:[^\r\n]*?(\d+)/40\b", log)
    request.node.user_properties.append(("resumed_training_from_step", first and first[1]))
    if first:
        assert int(first[1]) == max(saved, default=0), f"{trial.describe()}\nresumed at step {first[1]}, not {saved}"
