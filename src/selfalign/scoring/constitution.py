"""A constitution (Bai et al. 2022b): the principles an AI labeller works from, one JSON object per line.

    {"critique": "Identify ways the response breaks a formatting instruction.",
     "revision": "Rewrite the response so that it follows every formatting instruction."}
    {"comparison": "Which response follows the user's formatting instructions more closely?"}

A critique/revision pair drives SL-CAI's critique -> revision rounds; a comparison principle goes into a pairwise
judge's `{principle}` slot (RL-CAI, RLAIF). Principles are plain text: the judge template places them, so a
`{placeholder}` inside one is refused rather than left for `str.format` to trip on mid-run.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from selfalign.errors import InputError
from selfalign.records import iter_jsonl

FIELDS = {"critique", "revision", "comparison"}


@dataclass(frozen=True)
class Constitution:
    path: str
    revisions: list[tuple[str, str]]  # (critique request, revision request)
    comparisons: list[str]


def load_constitution(path: str | Path) -> Constitution:
    revisions, comparisons = [], []
    for lineno, rec in iter_jsonl(path):
        if not rec:
            raise InputError(path, "an empty principle", line=lineno, field="comparison")
        if unknown := sorted(set(rec) - FIELDS):
            raise InputError(path, f"unknown field; a principle has {sorted(FIELDS)}", line=lineno, field=unknown[0])
        for key, value in rec.items():
            if not isinstance(value, str) or not value.strip():
                raise InputError(path, "must be a non-empty string", line=lineno, field=key)
            if names := placeholders(value):
                raise InputError(
                    path,
                    f"unknown placeholder {{{names[0]}}}: principles are plain text (the judge template places them)",
                    line=lineno,
                    field=key,
                )
        if "critique" in rec or "revision" in rec:
            missing = "revision" if "critique" in rec else "critique"
            if missing not in rec:
                raise InputError(path, "a critique request needs its revision request", line=lineno, field=missing)
            revisions.append((rec["critique"], rec["revision"]))
        if "comparison" in rec:
            comparisons.append(rec["comparison"])
    if not revisions and not comparisons:
        raise InputError(path, "the constitution has no principles")
    return Constitution(str(path), revisions, comparisons)


def placeholders(template: str) -> list[str]:
    """The `{name}` fields of a str.format template, in order."""
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:  # a lone brace
        return [f"malformed: {e}"]


def check_template(template: str, allowed: set[str], required: set[str], field: str) -> None:
    """A judge template's placeholders, checked before the run starts."""
    names = placeholders(template)
    if unknown := [n for n in names if n not in allowed]:
        raise InputError(
            "<config>", f"unknown placeholder {{{unknown[0]}}}; the template may use {sorted(allowed)}", field=field
        )
    if missing := sorted(required - set(names)):
        raise InputError("<config>", f"the template needs {{{missing[0]}}}", field=field)
