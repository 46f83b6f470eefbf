import pytest

from selfalign.errors import InputError
from selfalign.records import read_jsonl, write_jsonl


def test_round_trip(tmp_path):
    rows = [{"prompt": "p", "completion": "c"}, {"prompt": "ü", "completion": ""}]
    write_jsonl(tmp_path / "a.jsonl", rows)
    assert read_jsonl(tmp_path / "a.jsonl") == rows
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind


def test_malformed_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "q", "answer": "1"}\n\n{"question": oops}\n')
    with pytest.raises(InputError) as e:
        read_jsonl(f)
    assert "bad.jsonl, line 3" in str(e.value) and "not valid JSON" in str(e.value)


def test_missing_field_names_it(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"question": "q", "answer": "1"}\n{"question": "q2"}\n')
    with pytest.raises(InputError) as e:
        read_jsonl(f, required=("question", "answer"))
    assert "m.jsonl, line 2: field 'answer'" in str(e.value)


def test_non_object_line(tmp_path):
    f = tmp_path / "l.jsonl"
    f.write_text("[1, 2]\n")
    with pytest.raises(InputError, match="line 1: expected a JSON object"):
        read_jsonl(f)
