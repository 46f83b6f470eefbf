"""JSONL records: line-numbered reading and atomic writing.

Record schemas (ecosystem names where one exists):
- SFT:         {"prompt", "completion"}
- sample:      {"id", "prompt", "completion", "difficulty", "correct", "first_error", "n_tokens", "provenance"}
- preference:  {"prompt", "chosen", "rejected", ["margin"], ["confidence"]}
- stepwise:    {"prompt", "completions", "labels"}   (TRL's PRM format)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from selfalign.errors import InputError


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write via a temp file in the same directory and rename, so readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def iter_jsonl(path: str | Path, required: Iterable[str] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record); blank lines are skipped, anything else malformed raises InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    required = tuple(required)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"not valid JSON ({e.msg} at column {e.colno})", line=lineno) from None
            if not isinstance(rec, dict):
                raise InputError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
            for key in required:
                if key not in rec:
                    raise InputError(path, "missing required field", line=lineno, field=key)
            yield lineno, rec


def read_jsonl(path: str | Path, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    return [rec for _, rec in iter_jsonl(path, required)]
