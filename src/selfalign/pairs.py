"""Preference pairs: TRL's `prompt`/`chosen`/`rejected` format, validated line by line.

Optional fields: `margin` (a number, the Bradley-Terry margin), `strength` (a Llama-2 label strength,
turned into a margin by `llama2_margin`) and `epsilon` (a per-pair soft label in [0, 1)).
A pair whose chosen and rejected responses are identical carries no preference: it is skipped and
counted, never silently trained on.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from selfalign.errors import InputError
from selfalign.records import iter_jsonl

FIELDS = ("prompt", "chosen", "rejected")
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
    """Read and validate a preference JSONL; returns (pairs, counts of skipped pairs by reason)."""
    path = Path(path)
    pairs, skipped = [], Counter()
    for lineno, rec in iter_jsonl(path, required=FIELDS):
        for key in FIELDS:
            if not isinstance(rec[key], str):
                raise InputError(path, f"must be a string, got {type(rec[key]).__name__}", line=lineno, field=key)
        for key in ("chosen", "rejected"):
            if not rec[key].strip():
                raise InputError(path, "empty completion", line=lineno, field=key)
        if "margin" in rec:
            _number(path, lineno, rec, "margin", float("-inf"), float("inf"))
        if "epsilon" in rec:
            _number(path, lineno, rec, "epsilon", 0.0, 1.0)
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
