"""The ifeval task: every checker on hand-written responses, strict vs loose, prompt generation, the metrics, the
reward and bad prompt files. No model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from selfalign.config import IfevalTaskConfig
from selfalign.errors import InputError
from selfalign.tasks import ifeval, make_task
from selfalign.tasks.base import Problem
from selfalign.tasks.constraints import (
    CONSTRAINTS,
    ENDINGS,
    FIRST_WORDS,
    FORBIDDEN,
    KEYWORDS,
    RARE_LETTERS,
    STARTERS,
    compatible,
    describe,
    follows,
)
from selfalign.tasks.ifeval import BASE_TASKS, EVAL_REQUESTS, TRAIN_REQUESTS, IfevalTask, ifeval_accuracies

PARAS = "First paragraph here.\n\nSecond one here.\n\nThird and last."
# id -> (kwargs, responses that pass, responses that fail), strict checking
CASES: dict[str, tuple[dict, list[str], list[str]]] = {
    "change_case:english_lowercase": ({}, ["all quiet here.", "no capitals, 2 numbers: 42."], ["Hello there.", "ok A"]),
    "change_case:english_capital": ({}, ["ALL LOUD HERE.", "STOP, 42 TIMES!"], ["ALMOST all", "Not loud."]),
    "change_case:capital_word_frequency": (
        {"capital_frequency": 2, "capital_relation": "at least"},
        ["The NASA and ESA teams.", "WOW, SUCH FUN"],
        ["Only NASA here.", "no capitals"],
    ),
    "keywords:existence": (
        {"keywords": ["river", "bread"]},
        ["Bread by the river.", "RIVERS of BREADcrumbs"],
        ["Just bread.", "A river of milk."],
    ),
    "keywords:forbidden_words": (
        {"forbidden_words": ["very", "nice"]},
        ["Everything is fine.", "Nicely done, everyone."],
        ["A very good day.", "That was NICE."],
    ),
    "keywords:frequency": (
        {"keyword": "rain", "frequency": 2, "relation": "less than"},
        ["No weather here.", "Rain once."],
        ["Rain, rain, go away.", "rain and more rain"],
    ),
    "keywords:letter_frequency": (
        {"letter": "z", "let_frequency": 2, "let_relation": "less than"},
        ["A lazy cat.", "No such letter."],
        ["Pizza!", "Zebras zoom."],
    ),
    "startend:start_checker": (
        {"start_phrase": "I think"},
        ["I think so.", '  "i THINK it works."'],
        ["Well, I think so.", "I thought so."],
    ),
    "startend:end_checker": (
        {"end_phrase": "Any other questions?"},
        ["Done. Any other questions?", '"Done. any other questions?"  '],
        ["Any other questions? Bye.", "Done. Any other question."],
    ),
    "startend:quotation": ({}, ['"Hello."', '  "Two\nlines"  '], ["Hello.", '"Open only'] + ['"']),
    "length_constraints:number_words": (
        {"num_words": 5, "relation": "at least"},
        ["one two three four five", "It's a long-ish line, indeed."],
        ["one two three four", "Short."],
    ),
    "length_constraints:number_sentences": (
        {"num_sentences": 3, "relation": "less than"},
        ["One. Two.", "1. Item one\n2. Item two"],
        ["One. Two! Three?", "A b. C d. E f. G."],
    ),
    "length_constraints:number_paragraphs": (
        {"num_paragraphs": 2},
        ["First.\n***\nSecond.", "***\nFirst. *** Second.\n***"],
        ["First.\n\nSecond.", "First.\n***\n***\nSecond."],
    ),
    "length_constraints:nth_paragraph_first_word": (
        {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "second"},
        [PARAS, PARAS.replace("Second", '"Second,')],
        [PARAS.replace("Second", "The second"), "First.\n\nSecond."],
    ),
    "detectable_content:number_placeholders": (
        {"num_placeholders": 2},
        ["Dear [name], at [address].", "[a][b][c]"],
        ["Dear [name].", "No brackets."],
    ),
    "detectable_content:postscript": (
        {"postscript_marker": "P.S."},
        ["Bye.\nP.S. See you.", "bye. p. s. later"],
        ["Bye. PS see you.", "Bye.\nP. S later"],
    ),
    "detectable_format:number_bullet_lists": (
        {"num_bullets": 2},
        ["* one\n* two", "Intro\n- one\n  * two\n**bold** line"],
        ["* one", "* one\n* two\n- three"],
    ),
    "detectable_format:number_numbered_lists": (
        {"num_items": 3},
        ["1. a\n2. b\n3. c", "Steps:\n 1) a\n 2) b\n 10) c"],
        ["1. a\n2. b", "1.a\n2.b\n3.c"],
    ),
    "detectable_format:constrained_response": (
        {},
        ["My answer is yes.", "Well. My answer is maybe."],
        ["Yes.", "my answer is yes."],
    ),
    "detectable_format:number_highlighted_sections": (
        {"num_highlights": 2},
        ["*one* and *two*", "**bold one** and *two*"],
        ["*one* only", "** ** and *\n*"],
    ),
    "detectable_format:multiple_sections": (
        {"section_spliter": "SECTION", "num_sections": 2},
        ["SECTION 1\na\nSECTION 2\nb", "SECTION 1 a SECTION 2 b SECTION 3 c"],
        ["SECTION 1\na", "Section 1\na\nSection 2\nb"],
    ),
    "detectable_format:json_format": (
        {},
        ['{"a": 1}', '```json\n{"a": [1, 2]}\n```'],
        ["{'a': 1}", 'Here it is: {"a": 1}'],
    ),
    "detectable_format:title": ({}, ["<<My Title>>\nText.", "Text <<a>> more"], ["<< >> text", "<<broken\n>>"]),
    "combination:two_responses": (
        {},
        ["First.\n******\nSecond.", "******\nA\n******\nB\n******"],
        ["Same\n******\nSame", "A\n******\n******\nB"],
    ),
    "combination:repeat_prompt": (
        {"prompt_to_repeat": "Write a poem."},
        ["Write a poem. Roses are red.", "  write a POEM. ok"],
        ["Sure! Write a poem. Roses.", "Write a song."],
    ),
    "punctuation:no_comma": ({}, ["No commas here.", "Semi; colons: fine."], ["One, two.", "a，b,"]),
}


@pytest.mark.parametrize("cid", sorted(CONSTRAINTS))
def test_checker(cid: str) -> None:
    kwargs, good, bad = CASES[cid]
    spec = {"id": cid, "kwargs": CONSTRAINTS[cid].schema.model_validate(kwargs).model_dump()}
    assert len(good) >= 2 and len(bad) >= 2
    for r in good:
        assert follows(spec, r), r
    for r in bad:
        assert not follows(spec, r), r
    assert describe(spec).strip()


def test_registry() -> None:
    assert set(CASES) == set(CONSTRAINTS) and len(CONSTRAINTS) >= 20
    assert "punctuation:no_comma" in CONSTRAINTS and "length_constraints:number_words" in CONSTRAINTS
    # the drawn word pools cannot contradict each other or the requests (see the comment on the pools)
    assert not any(set(RARE_LETTERS) & set(w) for w in KEYWORDS + FIRST_WORDS + STARTERS)
    texts = " ".join(BASE_TASKS + KEYWORDS + FIRST_WORDS + STARTERS + ENDINGS).lower()
    assert not any(re.search(rf"\b{w}\b", texts) for w in FORBIDDEN)


@pytest.mark.parametrize(
    ("spec", "response"),
    [
        ({"id": "detectable_format:json_format", "kwargs": {}}, 'Sure, here is the JSON:\n{"a": 1}'),
        ({"id": "change_case:english_lowercase", "kwargs": {}}, "Sure! Here you go:\nall lowercase text"),
        (
            {"id": "startend:end_checker", "kwargs": {"end_phrase": "That is all."}},
            "Text. That is all.\nHope it helps!",
        ),
        ({"id": "keywords:forbidden_words", "kwargs": {"forbidden_words": ["very"]}}, "Title: very good\nFine text."),
        ({"id": "startend:quotation", "kwargs": {}}, '**"Quoted."**'),
        ({"id": "combination:repeat_prompt", "kwargs": {"prompt_to_repeat": "Say hi."}}, "*Say hi.* Hi!"),
    ],
)
def test_loose_only(spec: dict, response: str) -> None:
    """Responses that fail strictly but pass on one of IFEval's loose variants (first/last line dropped, `*` gone)."""
    assert not follows(spec, response)
    assert follows(spec, response, loose=True)


def test_empty_response_never_follows() -> None:
    spec = {"id": "keywords:frequency", "kwargs": {"keyword": "x", "frequency": 1, "relation": "less than"}}
    assert follows(spec, "ok") and not follows(spec, "  \n") and not follows(spec, "\n", loose=True)


def task(**kw) -> IfevalTask:
    return make_task(IfevalTaskConfig(name="ifeval", **{"n_train": 60, "n_eval": 40, **kw}))


def test_prompts_deterministic_and_disjoint() -> None:
    a, b = task(), task()
    prompts = lambda ps: [(p.id, p.prompt, p.meta) for p in ps]  # noqa: E731
    assert prompts(a.train_problems(1, 0)) == prompts(b.train_problems(1, 0))
    assert prompts(a.train_problems(1, 0)) != prompts(a.train_problems(2, 0))
    assert prompts(a.train_problems(1, 0)) != prompts(a.train_problems(1, 1))
    evals = [p for ps in a.eval_sets().values() for p in ps]
    assert prompts(evals) == prompts(p for ps in b.eval_sets().values() for p in ps) and len(evals) == 40
    assert not set(TRAIN_REQUESTS) & set(EVAL_REQUESTS) and len(BASE_TASKS) >= 150
    for problems, requests in ((a.train_problems(3, 0), TRAIN_REQUESTS), (evals, EVAL_REQUESTS)):
        assert len({p.id for p in problems}) == len(problems)
        assert all(any(p.prompt.startswith(r) for r in requests) for p in problems)
    assert set(a.eval_sets()) == {"1", "2", "3"}


def test_drawn_constraints_are_valid_and_compatible() -> None:
    seen = set()
    for p in task(n_train=400).train_problems(1, 0):
        specs = p.meta["constraints"]
        assert 1 <= len(specs) <= 3 and p.difficulty == len(specs)
        for i, s in enumerate(specs):
            assert CONSTRAINTS[s["id"]].schema.model_validate(s["kwargs"]).model_dump() == s["kwargs"]
            assert compatible([t["id"] for t in specs[:i]], s["id"])
            assert describe(s) in p.prompt
            seen.add(s["id"])
        repeat = [s for s in specs if s["id"] == "combination:repeat_prompt"]
        if repeat:  # last, and repeating everything before its own sentence
            assert specs[-1] is repeat[0] and p.prompt.startswith(repeat[0]["kwargs"]["prompt_to_repeat"])
    assert seen == {cid for cid, c in CONSTRAINTS.items() if c.draw is not None}
    assert all(len(p.meta["constraints"]) == 1 for p in task(max_constraints=1).train_problems(1, 0))


def problem(pid: str, *specs: dict) -> Problem:
    return Problem(id=pid, prompt="p", answer="", difficulty=len(specs), meta={"constraints": list(specs)})


NO_COMMA = {"id": "punctuation:no_comma", "kwargs": {}}
LOWER = {"id": "change_case:english_lowercase", "kwargs": {}}
TITLE = {"id": "detectable_format:title", "kwargs": {}}


def test_check_reward() -> None:
    t, p = task(), problem("a", NO_COMMA, LOWER, TITLE)
    c = t.check(p, "<<hi>> there, friend")
    assert (c.correct, c.answer, c.reward, c.score) == (False, None, 2 / 3, 2 / 3)
    assert t.check(p, "<<hi>> there friend").correct and t.check(p, "<<hi>> there friend").reward == 1.0
    assert t.check(p, "").reward == 0.0
    assert t.graded and t.hint(p) == p.prompt and t.gold_pairs("seed") is None
    assert t.steps("One. Two!\n* Three\n\nFour") == ["One.", "Two!", "Three", "Four"]


def test_accuracies_hand_computed() -> None:
    problems = [problem("a", NO_COMMA, LOWER), problem("b", TITLE)]
    rows = [
        {"problem_id": "a", "completion": "hello there"},  # strict 2/2
        # strict 0/2; loose 1/2: lowercase without line 1, but every variant keeps a comma
        {"problem_id": "a", "completion": "Sure:\nhello, there\nbye, now"},
        {"problem_id": "b", "completion": "no title"},  # 0/1 both
        {"problem_id": "b", "completion": "<<t>>"},  # 1/1 both
    ]
    assert ifeval_accuracies(rows, problems) == {
        "prompt_level_strict_acc": 2 / 4,
        "inst_level_strict_acc": 3 / 6,
        "prompt_level_loose_acc": 2 / 4,
        "inst_level_loose_acc": 4 / 6,
    }
    assert ifeval_accuracies([], problems)["prompt_level_strict_acc"] == 0.0


# -- prompt files ----------------------------------------------------------------------------------------------


def write(tmp_path: Path, *lines: dict | str) -> str:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return str(path)


GOOD = {"id": "q1", "prompt": "Write a poem.", "constraints": [{"id": "punctuation:no_comma"}]}
IFEVAL = {
    "key": 1000,
    "prompt": "Write a 300+ word summary. Do not use any commas.",
    "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
    "kwargs": [{"num_words": None}, {"num_words": 300, "relation": "at least", "keyword": None}],
}


# two lines of IFEval's input_data.jsonl (shortened): a repeated request, and a "letter" that is not a letter
IFEVAL_1012 = {
    "key": 1012,
    "prompt": "Write an email.\nFirst repeat the request word for word without change, then give your answer.",
    "instruction_id_list": ["combination:repeat_prompt", "detectable_format:title"],
    "kwargs": [{"prompt_to_repeat": "Write an email."}, {}],
}
IFEVAL_1122 = {
    "key": 1122,
    "prompt": "make a tweet without using capital letters. Include at least 4 hashtags, starting with '#'",
    "instruction_id_list": ["change_case:english_lowercase", "keywords:letter_frequency"],
    "kwargs": [{}, {"let_relation": "at least", "letter": "#", "let_frequency": 4}],
}


def test_prompt_files_both_formats(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, "", IFEVAL, IFEVAL_1012, IFEVAL_1122)
    t = task(eval_path=path, prompts_path=path)
    assert t.train_problems(1, 0) == t.train_problems(2, 5)
    sets = t.eval_sets()
    assert [p.id for p in sets["1"]] == ["q1"] and [p.id for p in sets["2"]] == ["1000", "1012", "1122"]
    assert sets["2"][0].meta["constraints"][1] == {
        "id": "length_constraints:number_words",
        "kwargs": {"num_words": 300, "relation": "at least"},
    }
    assert t.check(sets["1"][0], "A poem without commas.").correct
    repeat, hashtags = sets["2"][1:]
    assert t.check(repeat, "Write an email.\n<<Hello>>\nDear boss").correct
    assert not t.check(repeat, "<<Hello>>\nWrite an email.").correct
    assert t.check(hashtags, "#a #b #c #d go").correct and not t.check(hashtags, "#a #b #c go").correct
    first_two = task(eval_path=path, n_eval=2).eval_sets()  # n_eval keeps the file's first prompts
    assert [p.id for ps in first_two.values() for p in ps] == ["q1", "1000"]


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ({**GOOD, "constraints": [{"id": "punctuation:no_coma"}]}, "line 2: field 'constraints[0].id': unknown"),
        ({**GOOD, "constraints": [{"id": "punctuation:no_coma"}]}, "did you mean 'punctuation:no_comma'?"),
        ({**IFEVAL, "instruction_id_list": ["language:response_language", "x"]}, "'instruction_id_list[0]': unknown"),
        (
            {**GOOD, "constraints": [{"id": "length_constraints:number_words", "kwargs": {"num_words": "many"}}]},
            "field 'constraints[0].kwargs.num_words': length_constraints:number_words: Input should be a valid integer",
        ),
        (
            {**GOOD, "constraints": [{"id": "length_constraints:number_words", "kwargs": {"num_words": 5}}]},
            "field 'constraints[0].kwargs.relation': length_constraints:number_words: Field required",
        ),
        (
            {
                **GOOD,
                "constraints": [
                    {
                        "id": "keywords:letter_frequency",
                        "kwargs": {"letter": "ab", "let_frequency": 1, "let_relation": "at least"},
                    }
                ],
            },
            "field 'constraints[0].kwargs.letter': keywords:letter_frequency: String should have at most 1 character",
        ),
        (
            {**GOOD, "constraints": [{"id": "punctuation:no_comma", "kwargs": {"comma": True}}]},
            "field 'constraints[0].kwargs.comma': punctuation:no_comma: Extra inputs are not permitted",
        ),
        ({**IFEVAL, "kwargs": [{}, {"num_words": -3, "relation": "at least"}]}, "'kwargs[1].num_words'"),
        ({**IFEVAL, "kwargs": [{}]}, "field 'kwargs': must be a list of 2 objects"),
        ({"id": "q2", "prompt": "Write."}, "line 2: field 'constraints': no constraints"),
        ({**GOOD, "constraints": []}, "field 'constraints': must be a non-empty list"),
        ({**GOOD, "constraints": ["punctuation:no_comma"]}, "field 'constraints[0]': must be an object"),
        ({**GOOD, "prompt": " "}, "field 'prompt': must be a non-empty string"),
        ({**GOOD, "id": "q1"}, "field 'id': duplicate id 'q1' (first on line 1)"),
        ("[1]", "line 2: expected a JSON object"),
    ],
)
def test_bad_prompt_file(tmp_path: Path, line: dict | str, expect: str) -> None:
    path = write(tmp_path, GOOD, line)
    with pytest.raises(InputError) as e:
        task(eval_path=path)
    assert str(e.value).startswith(path) and expect in str(e.value)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file has no records"):
        task(prompts_path=write(tmp_path, ""))
    with pytest.raises(InputError, match="file not found"):
        task(eval_path=str(tmp_path / "absent.jsonl"))


def test_too_many_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    """One request and one argument-free constraint make one prompt: a second is an error, not an endless draw."""
    monkeypatch.setattr(ifeval, "EVAL_REQUESTS", ("Write.",))
    monkeypatch.setattr(ifeval, "DRAWS", {"punctuation:no_comma": ifeval.DRAWS["punctuation:no_comma"]})
    assert len(task(n_eval=1).eval_sets()["1"]) == 1
    with pytest.raises(InputError, match="field 'task.n_eval': cannot draw 2 distinct prompts"):
        task(n_eval=2)


def test_eval_metrics_reach_the_round_row() -> None:
    """Loop.evaluate adds task.eval_metrics(rows) to the metrics row: for ifeval, the four accuracies."""
    task = IfevalTask(IfevalTaskConfig(name="ifeval", n_eval=12))
    rows = [{"problem_id": p.id, "completion": "ok"} for ps in task.eval_sets().values() for p in ps]
    metrics = task.eval_metrics(rows)["ifeval"]
    assert set(metrics) == {
        "prompt_level_strict_acc",
        "inst_level_strict_acc",
        "prompt_level_loose_acc",
        "inst_level_loose_acc",
    }
    assert all(0 <= v <= 1 for v in metrics.values())


def test_hindsight_prompt_keeps_exactly_the_constraints_followed() -> None:
    task = IfevalTask(IfevalTaskConfig(name="ifeval", n_train=60, max_constraints=3))
    texts = [
        "",
        "HELLO WORLD, THIS IS LOUD.",
        "a plain reply without commas",
        '"quoted reply"',
        "* one\n* two\n* three",
    ]
    relabelled = 0
    for q in task.train_problems(1, 0):
        for text in texts:
            prompt = ifeval.hindsight_prompt(q, text)
            assert prompt.startswith(q.meta["request"])
            met = [s for s in q.meta["constraints"] if follows(s, text)]
            for spec in q.meta["constraints"]:
                assert (describe(spec) in prompt) == (spec in met)
            relabelled += len(met) < len(q.meta["constraints"])
            assert (prompt == q.prompt) == (len(met) == len(q.meta["constraints"]))
    assert relabelled > 0
    loaded = Problem("x", "Write a poem.", "", meta={"constraints": []})
    with pytest.raises(ValueError, match="no bare request"):
        ifeval.hindsight_prompt(loaded, "text")
