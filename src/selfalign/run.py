"""A run directory: frozen config, a manifest of completed stages, provenance, and resume.

Each stage writes its outputs atomically and only then is recorded in the manifest, so a run
killed mid-stage redoes that stage from scratch on --resume and never keeps a partial result.
Stages are seeded from (seed, stage name), so a redone stage reproduces the original records.
"""

from __future__ import annotations

import json
import platform
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from accelerate import PartialState

from selfalign import __version__
from selfalign.config import RunConfig
from selfalign.errors import SelfAlignError
from selfalign.records import atomic_write_text, write_json, write_jsonl

MANIFEST = "manifest.json"
CONFIG = "config.yaml"


class Run:
    def __init__(self, root: str | Path, cfg: RunConfig, resume: bool = False):
        self.root = Path(root)
        self.cfg = cfg
        self.state = PartialState()
        frozen = cfg.model_dump(mode="json")
        manifest_path = self.root / MANIFEST
        if manifest_path.exists():
            if not resume:
                raise SelfAlignError(
                    f"{self.root} already holds a run; pass --resume to continue it or pick another --out"
                )
            old = yaml.safe_load((self.root / CONFIG).read_text())
            if old != frozen:
                diff = sorted(k for k in set(old) | set(frozen) if old.get(k) != frozen.get(k))
                raise SelfAlignError(f"{self.root}: config differs from the frozen run config in {diff}; cannot resume")
            self.manifest = json.loads(manifest_path.read_text())
        else:
            self.manifest = {
                "selfalign_version": __version__,
                "python": platform.python_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "stages": {},
            }
            if self.state.is_main_process:
                self.root.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.root / CONFIG, yaml.safe_dump(frozen, sort_keys=False))
                self._save_manifest()
        self.state.wait_for_everyone()

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

    def write_metrics(self, rows: list[dict]) -> None:
        """metrics.jsonl, one object per round, rewritten whole so it is never half-written."""
        if self.state.is_main_process:
            write_jsonl(self.root / "metrics.jsonl", rows)

    def provenance(self, round: int, model: str, **extra: Any) -> dict[str, Any]:
        return {"run": self.root.name, "round": round, "model": model, "seed": self.cfg.seed, **extra}
