"""Records: the one schema every stage reads and writes, JSONL with line-numbered errors, atomic writes.

Field names follow the ecosystem (TRL) where it has them. Every generated record carries `provenance`:
{run, round, model, seed, stage, sampler{...}, scorer, filter, ...}.

- Problem   (in memory) id, prompt, answer (gold), difficulty, meta; a task's prompt.
- sample    id = "<problem id>#<sample index>", problem_id, prompt (never a hinted one), completion, difficulty,
            gold, answer (extracted), correct, reward (gold reward; = correct for ungraded tasks), first_error
            (first invalid step or None), n_tokens, finished (ended with EOS), hinted, provenance.
- SFT       prompt, completion, source (the sample id), provenance.
- pair      prompt, chosen, rejected; optional id, margin (number), strength (Llama-2 label strength),
            epsilon (per-pair soft label in [0, 1)), confidence (judge's P(chosen better)), gold_agrees,
            rejected_partial (true: the rejected response is cut mid-solution and gets no EOS), provenance.
- stepwise  prompt, completions (the steps), labels (one per step: binary, ternary -1/0/1 or soft [0, 1]),
            source.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from selfalign.errors import InputError


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask alone must set it to read it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Call `write` on a temp file in the same directory, then rename it over `path`, so readers never see a
    partial file. The file gets the mode a plain open() would give it (mkstemp's is 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text (UTF-8) atomically; see `atomic_write`."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def iter_jsonl(path: str | Path, required: Iterable[str] = ()) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, record); blank lines are skipped, anything else malformed raises InputError."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory, not a JSONL file")
    if not path.is_file():
        raise InputError(path, "file not found")
    required = tuple(required)
    try:
        f = path.open("rb")
    except OSError as e:
        raise InputError(path, f"cannot read: {e.strerror}") from None
    with f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                msg = f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); save it as UTF-8"
                raise InputError(path, msg, line=lineno) from None
            if lineno == 1:
                line = line.removeprefix("\ufeff")
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, f"not valid JSON ({e.msg} at column {e.colno})", line=lineno) from None
            except (ValueError, RecursionError) as e:  # e.g. an integer too long to convert, nesting too deep
                raise InputError(path, f"not valid JSON ({e})", line=lineno) from None
            if not isinstance(rec, dict):
                raise InputError(path, f"expected a JSON object, got {type(rec).__name__}", line=lineno)
            for key in required:
                if key not in rec:
                    raise InputError(path, "missing required field", line=lineno, field=key)
            yield lineno, rec


def read_jsonl(path: str | Path, required: Iterable[str] = ()) -> list[dict[str, Any]]:
    return [rec for _, rec in iter_jsonl(path, required)]


def write_parquet(path: str | Path, records: list[dict[str, Any]], source: str | Path) -> None:
    """`records` (read from `source`) as a parquet file that `datasets.load_dataset("parquet", ...)` reads back."""
    import datasets
    import pyarrow

    try:
        columns = dict.fromkeys(key for r in records for key in r)  # every record's fields (from_list: the first's)
        table = datasets.Dataset.from_dict({key: [r.get(key) for r in records] for key in columns})
    except (pyarrow.ArrowException, TypeError, ValueError) as e:  # a field holding different types across records
        raise InputError(source, f"cannot convert to parquet: {e}") from None
    atomic_write(path, table.to_parquet)


TABLE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".json": "json"}


def iter_records(
    source: str | Path, required: Iterable[str] = (), streaming: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows of a user's input (prompts, pairs, stepwise or weak labels) with their line numbers: a JSONL file
    read by `iter_jsonl`, or through `datasets` a local .parquet, .csv or .json (an array) file (numbered by row,
    or by line for a CSV, header on line 1) or a hub dataset `hf:<id>` / `hf:<id>:<split>` (default split train;
    numbered by row). A missing column, or an empty cell in a required one, is an error naming the source, row
    and field. `streaming`: `datasets` reads rows as they are asked for (a caller that stops early never downloads
    or converts the rest); a JSONL file is always read line by line."""
    text = str(source)
    kind = TABLE_FORMATS.get(Path(text).suffix.lower())
    if kind is None and not text.startswith("hf:"):
        yield from iter_jsonl(source, required)
        return
    import datasets

    try:
        if kind is not None:
            if not Path(text).is_file():
                raise InputError(text, "file not found")
            rows = datasets.load_dataset(kind, data_files=text, split="train", streaming=streaming)
        else:
            name, _, split = text.removeprefix("hf:").partition(":")
            rows = datasets.load_dataset(name, split=split or "train", streaming=streaming)
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as e:
        raise InputError(text, f"cannot load through datasets: {e}") from None
    required = tuple(required)
    for key in required:  # a stream may not know its columns before its first row
        if rows.column_names is not None and key not in rows.column_names:
            raise InputError(text, f"missing column (columns: {', '.join(rows.column_names)})", field=key)
    offset = 2 if kind == "csv" else 1
    for i, rec in enumerate(rows):
        for key in required:
            if rec.get(key) is None:
                raise InputError(text, "missing required field", line=i + offset, field=key)
        yield i + offset, {k: v for k, v in rec.items() if v is not None}


# -- record types -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    id: str
    prompt: str
    answer: str
    difficulty: int | str = 0
    meta: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Check:
    """A task checker's verdict on one completion."""

    correct: bool
    answer: str | None  # the final answer extracted from the completion
    first_error: int | None = None  # index of the first invalid step; None when all steps are valid
    n_steps: int = 0
    reward: float | None = None  # graded tasks: the hidden gold reward; None means float(correct)

    @property
    def score(self) -> float:
        return float(self.correct) if self.reward is None else self.reward


def sample_record(
    problem: Problem,
    sample_index: int,
    completion: str,
    check: Check,
    n_tokens: int,
    finished: bool,
    hinted: bool,
    provenance: dict,
) -> dict:
    return {
        "id": f"{problem.id}#{sample_index}",
        "problem_id": problem.id,
        "prompt": problem.prompt,
        "completion": completion,
        "difficulty": problem.difficulty,
        "gold": problem.answer,
        "answer": check.answer,
        "correct": check.correct,
        "reward": check.score,
        "first_error": check.first_error,
        "n_tokens": n_tokens,
        "finished": finished,
        "hinted": hinted,
        "provenance": provenance,
    }


def sft_record(sample: dict) -> dict:
    """An SFT record from a graded sample; the prompt is always the un-hinted one."""
    return {
        "prompt": sample["prompt"],
        "completion": sample["completion"],
        "source": sample["id"],
        "provenance": {**sample["provenance"], "hinted": sample["hinted"]},
    }


def pair_record(prompt: str, chosen: str, rejected: str, **optional: Any) -> dict:
    """A preference pair; `optional` holds any of the optional pair fields above."""
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, **optional}


def outcome_record(sample: dict) -> dict:
    """An ORM's training record from a graded sample: final-answer correctness."""
    return {
        "prompt": sample["prompt"],
        "completion": sample["completion"],
        "correct": sample["correct"],
        "source": sample["id"],
    }


def stepwise_record(prompt: str, steps: list[str], labels: list, source: str | None = None) -> dict:
    return {"prompt": prompt, "completions": steps, "labels": labels, "source": source}


# -- preference pair files -----------------------------------------------------------------------

PAIR_FIELDS = ("prompt", "chosen", "rejected")
# Llama 2 (Touvron et al. 2023, Table 27): margin by label strength
MARGINS = {
    "small": {"significantly": 1.0, "better": 2 / 3, "slightly": 1 / 3, "negligibly": 0.0},
    "large": {"significantly": 3.0, "better": 2.0, "slightly": 1.0, "negligibly": 0.0},
}


def _number(path: Path, lineno: int, rec: dict, key: str, lo: float, hi: float) -> None:
    v = rec[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InputError(path, f"must be a number, got {v!r}", line=lineno, field=key)
    if not lo <= v < hi:
        raise InputError(path, f"must lie in [{lo}, {hi}), got {v}", line=lineno, field=key)


def load_pairs(path: str | Path) -> tuple[list[dict], Counter]:
    """Read and validate a preference JSONL; returns (pairs, counts of skipped pairs by reason).

    A pair whose chosen and rejected responses are identical carries no preference: it is skipped and
    counted, never silently trained on."""
    path = Path(path)
    pairs, skipped = [], Counter()
    for lineno, rec in iter_records(path, required=PAIR_FIELDS):
        for key in PAIR_FIELDS:
            if not isinstance(rec[key], str):
                raise InputError(path, f"must be a string, got {type(rec[key]).__name__}", line=lineno, field=key)
        for key in ("chosen", "rejected"):
            if not rec[key].strip():
                raise InputError(path, "empty completion", line=lineno, field=key)
        if "margin" in rec:
            _number(path, lineno, rec, "margin", float("-inf"), float("inf"))
        if "epsilon" in rec:
            _number(path, lineno, rec, "epsilon", 0.0, 1.0)
        if "rejected_partial" in rec and not isinstance(rec["rejected_partial"], bool):
            raise InputError(
                path, f"must be true or false, got {rec['rejected_partial']!r}", line=lineno, field="rejected_partial"
            )
        if "strength" in rec and rec["strength"] not in MARGINS["small"]:
            raise InputError(path, f"must be one of {sorted(MARGINS['small'])}", line=lineno, field="strength")
        if rec["chosen"] == rec["rejected"]:
            skipped["identical chosen and rejected"] += 1
            continue
        pairs.append(rec)
    if not pairs:
        raise InputError(path, "no usable preference pairs" + (f" (skipped: {dict(skipped)})" if skipped else ""))
    return pairs, skipped


def llama2_margin(pair: dict, scheme: str | None) -> float:
    """The pair's margin: its own `margin` field, else its `strength` under the small/large scheme, else 0."""
    if "margin" in pair:
        return float(pair["margin"])
    if scheme is None or "strength" not in pair:
        return 0.0
    return MARGINS[scheme][pair["strength"]]


# -- stepwise files ------------------------------------------------------------------------------

LabelKind = Literal["binary", "ternary", "soft"]
LABEL_KINDS = ("binary", "ternary", "soft")
STEPWISE_FIELDS = ("prompt", "completions", "labels")


def check_label_kind(label_kind: str) -> None:
    if label_kind not in LABEL_KINDS:
        raise ValueError(f"label_kind must be one of {LABEL_KINDS}, got {label_kind!r}")


def label_problem(label: object, label_kind: str) -> str | None:
    """Why `label` is not a valid label of this kind, or None when it is."""
    if label_kind == "binary":
        # bool is a subclass of int; any bool is fine, other ints only 0 and 1
        if isinstance(label, bool) or (isinstance(label, int) and label in (0, 1)):
            return None
        return f"must be a bool or 0/1, got {label!r}"
    if label_kind == "ternary":
        # a bool here almost certainly means a binary file loaded as ternary: refuse it rather than read True as 1
        if not isinstance(label, bool) and isinstance(label, int) and label in (-1, 0, 1):
            return None
        return f"must be -1, 0 or 1, got {label!r}"
    if not isinstance(label, bool) and isinstance(label, int | float) and 0.0 <= label <= 1.0:  # NaN fails the range
        return None
    return f"must be a number in [0, 1], got {label!r}"


def load_stepwise(path: str | Path, label_kind: LabelKind = "binary") -> list[dict]:
    """Read and validate a stepwise JSONL; every error names the file, line and field."""
    check_label_kind(label_kind)
    path = Path(path)
    records = []
    for lineno, rec in iter_records(path, required=STEPWISE_FIELDS):
        prompt, steps, labels = rec["prompt"], rec["completions"], rec["labels"]
        if not isinstance(prompt, str):
            raise InputError(path, f"must be a string, got {type(prompt).__name__}", line=lineno, field="prompt")
        if not isinstance(steps, list) or not steps:
            raise InputError(path, "must be a non-empty list of steps", line=lineno, field="completions")
        for i, step in enumerate(steps):
            if not isinstance(step, str):
                msg = f"step at index {i} must be a string, got {type(step).__name__}"
                raise InputError(path, msg, line=lineno, field="completions")
            if not step.strip():
                raise InputError(path, f"empty step at index {i}", line=lineno, field="completions")
        if not isinstance(labels, list):
            raise InputError(path, f"must be a list, got {type(labels).__name__}", line=lineno, field="labels")
        if len(labels) != len(steps):
            msg = f"has {len(labels)} labels for {len(steps)} steps in 'completions' (need one label per step)"
            raise InputError(path, msg, line=lineno, field="labels")
        for i, label in enumerate(labels):
            if (problem := label_problem(label, label_kind)) is not None:
                raise InputError(path, f"{label_kind} label at index {i} {problem}", line=lineno, field="labels")
        records.append(rec)
    if not records:
        raise InputError(path, "no stepwise records")
    return records


def load_weak_labels(path: str | Path, ids: list[str]) -> dict[str, float]:
    """A weak supervisor's labels, {id, label} per line, label = P(class 1) in [0, 1] (0/1 or true/false for hard
    labels); exactly one line for each of `ids`, the records the student learns from."""
    path, wanted, labels = Path(path), set(ids), {}
    for lineno, rec in iter_records(path, required=("id", "label")):
        if rec["id"] not in wanted:
            raise InputError(
                path, f"no record has id {rec['id']!r} (ids look like {ids[0]!r})", line=lineno, field="id"
            )
        if rec["id"] in labels:
            raise InputError(path, f"id {rec['id']!r} labelled twice", line=lineno, field="id")
        v = rec["label"]
        if not isinstance(v, bool) and not (isinstance(v, int | float) and 0 <= v <= 1):
            msg = f"must be the probability of class 1, in [0, 1] (0 or 1 for a hard label), got {v!r}"
            raise InputError(path, msg, line=lineno, field="label")
        labels[rec["id"]] = float(v)
    if missing := [i for i in ids if i not in labels]:
        raise InputError(
            path, f"{len(missing)} of {len(ids)} records have no label (first: {missing[0]!r})", field="id"
        )
    return labels
