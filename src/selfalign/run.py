"""A run directory: frozen config, a manifest of completed stages, provenance, and resume.

Each stage writes its outputs atomically and only then is recorded in the manifest, so a run
killed mid-stage redoes that stage from scratch on --resume and never keeps a partial result.
Stages are seeded from (seed, stage name), so a redone stage reproduces the original records.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import shutil
import socket
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from selfalign import __version__
from selfalign.config import RunConfig, yaml_problem
from selfalign.distributed import process_state
from selfalign.errors import InputError, SelfAlignError
from selfalign.records import atomic_write_text, read_jsonl, write_json, write_jsonl

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
LOCK = ".selfalign.lock"
LOCK_INFO = ".selfalign.lock.info"  # who holds LOCK (its own content is no use: every opener truncates it)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, TypeError):
        pass  # it exists (another user's), or the pid is garbage; say what the file says
    return True


def _temp(p: Path) -> bool:
    """A temp file of records.atomic_write: `.<name>.<random>.tmp`."""
    return p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file() and not p.is_symlink()


def _reason(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e).splitlines()[0]


def round_dir(n: int) -> str:
    return f"round-{n:03d}"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _config_diff(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) for every setting that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _config_diff(old.get(k, "<unset>"), new.get(k, "<unset>"), f"{prefix}{k}.")
        return out
    return [] if old == new else [(prefix.rstrip("."), old, new)]


class Run:
    """The run directory `root`, opened for a new run or (`resume`) to continue the one it holds.

    The main process holds an exclusive lock on the directory (LOCK) until `close()` or its exit, so two
    processes never write one run; LOCK_INFO names the holder for the error a second process gets. The OS
    drops the lock of a killed process, and a stale LOCK_INFO is only read when the lock is actually held.
    """

    def __init__(self, root: str | Path, cfg: RunConfig, resume: bool = False, command: str | None = None):
        self.root = Path(root)
        self.cfg = cfg
        self.state = process_state()
        self.created = False  # this process made the run (wrote its manifest) and may discard it while nothing is done
        self._made: Path | None = None  # the topmost directory this process created for the run
        self._lock: FileLock | None = None
        frozen = cfg.model_dump(mode="json", exclude={"tracking"})
        self._trackers: list | None = None  # started at the first `track`
        self._wandb_axes: set[str] = set()  # groups whose x-axis wandb has been told
        if self.state.is_main_process:
            if not (self.root / LOCK).exists():
                self._open(frozen, resume)  # not (yet) a selfalign directory: refuse before touching anything
            self._acquire(command)  # else a running holder is the first thing to report
            try:
                # again under the lock: another process may have created the run in between
                self.manifest = self._open(frozen, resume) or self._create(frozen)
                self._remove_temp_files()
            except BaseException:
                self.discard()
                self.close()
                raise
        self.state.wait_for_everyone()
        if not self.state.is_main_process:
            self.manifest = self._read_manifest()

    def _open(self, frozen: dict, resume: bool) -> dict | None:
        """The manifest of the run to resume, None when the directory is free for a new run, or an error."""
        root = self.root
        if not root.exists():
            return None
        if not root.is_dir():
            raise InputError(root, "exists and is not a directory", field="--out")
        if not (root / MANIFEST).exists():
            # A config.yaml (or a temp file of an atomic write) beside our lock file is a run killed while being
            # created: its manifest is written last. Anywhere else it may be the user's own file.
            made_by_us = (root / LOCK).exists()
            ours = (LOCK, LOCK_INFO, CONFIG) if made_by_us else (LOCK, LOCK_INFO)
            try:
                found = sorted(p.name for p in root.iterdir() if p.name not in ours and not (made_by_us and _temp(p)))
            except OSError as e:
                raise InputError(root, f"cannot list the directory: {e.strerror}", field="--out") from None
            if found:
                listing = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
                raise InputError(
                    root,
                    f"is not empty and holds no selfalign run (found {listing}); pick another --out, or empty it",
                    field="--out",
                )
            return None
        if not resume:
            raise SelfAlignError(f"{root} already holds a run; pass --resume to continue it or pick another --out")
        old = self._read_frozen()
        if old != frozen:
            diff = _config_diff(old, frozen)
            changes = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diff[:5]) + ("; ..." if len(diff) > 5 else "")
            raise SelfAlignError(
                f"{root}: config differs from the frozen run config ({root / CONFIG}) in {changes}; "
                "cannot resume: give the same config and overrides, or start a new run in another --out"
            )
        return self._read_manifest()

    def _read_frozen(self) -> dict:
        path = self.root / CONFIG
        try:
            text = path.read_text(encoding="utf-8")
            old = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(path, f"cannot read the frozen run config ({_reason(e)}); cannot resume") from None
        except yaml.YAMLError as e:
            problem, line = yaml_problem(e, text)
            msg = f"frozen run config is not valid YAML ({problem}); cannot resume"
            raise InputError(path, msg, line=line) from None
        if not isinstance(old, dict):
            raise InputError(path, "is not a run config (not a mapping); cannot resume")
        return old

    def _read_manifest(self) -> dict:
        path = self.root / MANIFEST
        fix = "restore it, or start a new run in another --out"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(path, f"corrupt manifest ({e.msg}); cannot resume: {fix}", line=e.lineno) from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(path, f"cannot read the manifest ({_reason(e)}); cannot resume: {fix}") from None
        stages = manifest.get("stages") if isinstance(manifest, dict) else None
        if not isinstance(stages, dict) or not all(isinstance(v, dict) and "summary" in v for v in stages.values()):
            raise InputError(path, f"not a selfalign manifest (no valid 'stages'); cannot resume: {fix}")
        return manifest

    def _create(self, frozen: dict) -> dict:
        manifest = {
            "selfalign_version": __version__,
            "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "stages": {},
        }
        self.created = True
        try:
            atomic_write_text(self.root / CONFIG, yaml.safe_dump(frozen, sort_keys=False))
            write_json(self.root / MANIFEST, manifest)  # last: a manifest marks the directory as a run
        except OSError as e:
            raise InputError(self.root, f"cannot write the run directory: {_reason(e)}", field="--out") from None
        return manifest

    def _remove_temp_files(self) -> None:
        """Temp files of atomic writes (records.atomic_write) that a killed process left: with the lock held, no
        writer can still own one."""
        for p in self.root.rglob(".*.tmp"):
            if _temp(p):
                with contextlib.suppress(OSError):
                    p.unlink()

    def _acquire(self, command: str | None) -> None:
        top = self.root
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        try:
            if not self.root.exists():
                self.root.mkdir(parents=True)
                self._made = top
        except FileExistsError:
            pass  # another process made it just now; the lock decides who runs
        except OSError as e:
            raise InputError(self.root, f"cannot create the run directory: {e.strerror}", field="--out") from None
        lock = FileLock(str(self.root / LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise SelfAlignError(self._held_by()) from None
        except OSError as e:
            self.discard()
            raise InputError(self.root, f"cannot lock the run directory: {e.strerror}", field="--out") from None
        self._lock = lock
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "command": command or shlex.join(sys.argv),
        }
        with contextlib.suppress(OSError):  # the lock holds without it; a second process just cannot name us
            write_json(self.root / LOCK_INFO, info)

    def _held_by(self) -> str:
        holder = "holder unknown"
        # The holder writes LOCK_INFO just after it locks: give a process that started alongside this one a moment.
        # Info naming a dead process on this host is stale, left by a killed run.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                info = json.loads((self.root / LOCK_INFO).read_text(encoding="utf-8"))
                if info["host"] != socket.gethostname() or _alive(info["pid"]):
                    holder = f"pid {info['pid']} on {info['host']}, since {info['since']}: {info['command']}"
                    break
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(0.05)
        return (
            f"{self.root} is locked by another selfalign process ({holder}); "
            "wait for it to finish, or pick another --out"
        )

    def completed_stages(self) -> int:
        return len(getattr(self, "manifest", {}).get("stages", {}))

    def discard(self) -> bool:
        """Remove what this process created for the run, if no stage has completed, so that a re-run starts
        cleanly; a directory that existed (empty) before is emptied, not removed. Returns whether it did."""
        if not self.state.is_main_process or not (self.created or self._made) or self.completed_stages():
            return False
        if self._made is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            parent = self.root
            while parent != self._made:  # the parents it made, while empty: another run may have started beside
                parent = parent.parent
                try:
                    parent.rmdir()
                except OSError:
                    break
        elif self.root.is_dir():  # it held nothing but our lock files before this run
            for child in self.root.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        self.created = False
        return True

    def track(self, values: dict[str, Any], step: int) -> None:
        """The numbers in `values` (nested dicts flattened to `a/b`) to the configured trackers, at `step`."""
        if not self.cfg.tracking.report_to or not self.state.is_main_process:
            return
        if self._trackers is None:
            from accelerate.tracking import LOGGER_TYPE_TO_CLASS

            self._trackers = []
            for name in self.cfg.tracking.report_to:
                make = LOGGER_TYPE_TO_CLASS[name]  # wandb's and trackio's first argument is the project
                if name == "tensorboard":
                    tracker = make(".", logging_dir=self.root / "tensorboard")
                else:
                    tracker = make(self.cfg.tracking.project, name=self.root.name)
                tracker.start()
                self._trackers.append(tracker)
        scalars = dict(_scalars(values))
        for tracker in self._trackers:
            if tracker.name != "wandb":
                tracker.log(scalars, step=step)
                continue
            # wandb drops a row whose step is below one logged before (round 1's metrics after its training's
            # steps): each group gets its own x-axis, `<group>/step`, and wandb counts its own steps
            for group in values:
                if group not in self._wandb_axes:
                    tracker.run.define_metric(f"{group}/step")
                    tracker.run.define_metric(f"{group}/*", step_metric=f"{group}/step")
                    self._wandb_axes.add(group)
            tracker.log({**scalars, **{f"{group}/step": step for group in values}})

    def close(self) -> None:
        """Release the lock on the run directory (the OS releases it too if the process dies); end the trackers."""
        for tracker in self._trackers or ():
            tracker.finish()
        self._trackers = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.root / LOCK_INFO).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _save_manifest(self) -> None:
        write_json(self.root / MANIFEST, self.manifest)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def seed(self, stage: str) -> int:
        """A stable per-stage seed, so a re-run stage draws the same random numbers."""
        return (self.cfg.seed * 1_000_003 + zlib.crc32(stage.encode())) % 2**31

    def done(self, stage: str) -> bool:
        return stage in self.manifest["stages"]

    def stage(self, name: str, fn: Callable[[], dict[str, Any] | None], all_ranks: bool = False) -> dict[str, Any]:
        """Run `fn` unless `name` is already complete; return its summary (stored in the manifest).

        Stages run on the main process only unless `all_ranks` (training under accelerate launch);
        other ranks wait and then read the summary.
        """
        if not self.done(name):
            result: dict[str, Any] | None = None
            if all_ranks or self.state.is_main_process:
                started = time.time()
                result = fn() or {}
            if self.state.is_main_process:
                self.manifest["stages"][name] = {
                    "summary": result,
                    "seconds": round(time.time() - started, 2),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
                self._save_manifest()
            self.state.wait_for_everyone()
            if not self.state.is_main_process:
                self.manifest = json.loads((self.root / MANIFEST).read_text())
        return self.manifest["stages"][name]["summary"]

    def jsonl_stage(
        self, round: int, name: str, produce: Callable[[], tuple[list[dict], dict[str, Any]]]
    ) -> tuple[list[dict], dict[str, Any]]:
        """Stage `round-XXX/<name>`: `produce()` returns (records, summary); the records go to
        `round-XXX/<name>.jsonl`, written atomically, and the manifest keeps their count and the file's sha256,
        so a resumed run refuses a stage file that was truncated or edited instead of silently trusting it.
        Returns (records as read back from the file, summary)."""
        stage, path = f"{round_dir(round)}/{name}", self.path(round_dir(round), f"{name}.jsonl")

        def work() -> dict[str, Any]:
            records, summary = produce()
            write_jsonl(path, records)
            return {**summary, "file": {"records": len(records), "sha256": file_sha256(path)}}

        done_before = self.done(stage)  # a stage this process just ran needs no check of what it wrote
        summary = dict(self.stage(stage, work))
        expected = summary.pop("file")
        if done_before and (not path.is_file() or file_sha256(path) != expected["sha256"]):
            raise SelfAlignError(
                f"{path}: stage output is missing or differs from what stage {stage} wrote ({expected['records']} "
                f"records, sha256 {expected['sha256'][:12]}...); restore it, or start a new run"
            )
        return read_jsonl(path), summary

    def write_metrics(self, rows: list[dict]) -> None:
        """metrics.jsonl, one object per round, rewritten whole so it is never half-written."""
        if self.state.is_main_process:
            write_jsonl(self.root / "metrics.jsonl", rows)

    def provenance(self, round: int, model: str, **extra: Any) -> dict[str, Any]:
        return {"run": self.root.name, "round": round, "model": model, "seed": self.cfg.seed, **extra}


def _scalars(values: dict[str, Any], prefix: str = ""):
    for key, value in values.items():
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}{key}/")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield f"{prefix}{key}", value
