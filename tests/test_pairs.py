"""Preference JSONL validation: each bad pair names file, line and field; identical pairs are skipped and counted."""

from __future__ import annotations

import json

import pytest

from selfalign.errors import InputError
from selfalign.records import MARGINS, llama2_margin, load_pairs

GOOD = {"prompt": "p", "chosen": "a", "rejected": "b"}


def write(tmp_path, rows):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"prompt": "p", "chosen": "a"}, "line 2: field 'rejected': missing required field"),
        ({**GOOD, "chosen": "  "}, "line 2: field 'chosen': empty completion"),
        ({**GOOD, "rejected": ""}, "line 2: field 'rejected': empty completion"),
        ({**GOOD, "margin": "1.0"}, "line 2: field 'margin': must be a number"),
        ({**GOOD, "margin": True}, "line 2: field 'margin': must be a number"),
        ({**GOOD, "epsilon": 1.5}, "line 2: field 'epsilon': must lie in [0.0, 1.0)"),
        ({**GOOD, "strength": "huge"}, "line 2: field 'strength': must be one of"),
        ({**GOOD, "chosen": 3}, "line 2: field 'chosen': must be a string"),
        ("{not json", "line 2: not valid JSON"),
    ],
)
def test_bad_pair_is_located(tmp_path, bad, message):
    path = write(tmp_path, [GOOD, bad])
    with pytest.raises(InputError) as e:
        load_pairs(path)
    assert str(e.value).startswith(str(path)) and message in str(e.value)


def test_identical_pairs_are_skipped_and_counted(tmp_path):
    pairs, skipped = load_pairs(write(tmp_path, [GOOD, {**GOOD, "rejected": "a"}, {**GOOD, "margin": 2}]))
    assert len(pairs) == 2 and skipped == {"identical chosen and rejected": 1}
    with pytest.raises(InputError, match="no usable preference pairs"):
        load_pairs(write(tmp_path, [{**GOOD, "rejected": "a"}]))


def test_llama2_margins():
    assert MARGINS["small"] == {"significantly": 1.0, "better": 2 / 3, "slightly": 1 / 3, "negligibly": 0.0}
    assert list(MARGINS["large"].values()) == [3.0, 2.0, 1.0, 0.0]
    assert llama2_margin({"strength": "better"}, "large") == 2.0
    assert llama2_margin({"strength": "better"}, None) == 0.0
    assert llama2_margin({"strength": "better", "margin": 0.25}, "large") == 0.25  # an explicit margin wins
