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


def test_inputs_load_through_datasets_from_parquet_and_csv(tmp_path):
    """Pairs, stepwise data, weak labels and prompts read from parquet or CSV equal the same rows in JSONL."""
    import datasets

    from selfalign.records import load_pairs, load_stepwise, load_weak_labels
    from selfalign.tasks.ifeval import load_problems

    cases = {
        "pairs": ([{"prompt": f"p{i}", "chosen": "a", "rejected": "b", "margin": 1.0} for i in range(3)], load_pairs),
        "stepwise": ([{"prompt": "1+1=", "completions": ["x", "y"], "labels": [True, False]}], load_stepwise),
        "weak": (
            [{"id": f"r{i}", "label": i / 4} for i in range(3)],
            lambda p: load_weak_labels(p, ["r0", "r1", "r2"]),
        ),
        "prompts": (
            [
                {
                    "id": "q1",
                    "prompt": "Write a poem.",
                    "constraints": [{"id": "keywords:existence", "kwargs": {"keywords": ["moon"]}}],
                }
            ],
            load_problems,
        ),
    }
    for name, (rows, load) in cases.items():
        write_jsonl(tmp_path / f"{name}.jsonl", rows)
        datasets.Dataset.from_list(rows).to_parquet(tmp_path / f"{name}.parquet")
        assert load(tmp_path / f"{name}.parquet") == load(tmp_path / f"{name}.jsonl"), name
    flat = cases["pairs"][0]
    datasets.Dataset.from_list(flat).to_csv(tmp_path / "pairs.csv", index=False)
    assert load_pairs(tmp_path / "pairs.csv") == load_pairs(tmp_path / "pairs.jsonl")


def test_a_table_missing_a_column_or_a_cell_names_it(tmp_path):
    import datasets

    from selfalign.records import load_pairs

    datasets.Dataset.from_list([{"prompt": "p", "chosen": "a"}]).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(InputError, match=r"a.parquet: field 'rejected': missing column \(columns: prompt, chosen\)"):
        load_pairs(tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("prompt,chosen,rejected\np,a,b\nq,,c\n")
    with pytest.raises(InputError, match=r"b.csv, line 3: field 'chosen': missing required field"):
        load_pairs(tmp_path / "b.csv")
    with pytest.raises(InputError, match=r"c.parquet: file not found"):
        load_pairs(tmp_path / "c.parquet")


def test_a_large_prompt_pool_is_streamed_and_read_only_as_far_as_asked(tmp_path):
    """task.n_train reads the first records of a parquet pool through a stream: a bad row past them is never reached."""
    import datasets

    from selfalign.config import JsonlTaskConfig
    from selfalign.tasks.jsonl import JsonlTask

    rows = [{"question": f"{i}+1?", "answer": f"#### {i + 1}"} for i in range(3000)]
    datasets.Dataset.from_list(rows).to_parquet(tmp_path / "pool.parquet")
    write_jsonl(tmp_path / "pool.jsonl", rows[:10])
    datasets.Dataset.from_list([*rows, {"question": "bad", "answer": None}]).to_parquet(tmp_path / "bad.parquet")

    def task(path, **kw):
        return JsonlTask(JsonlTaskConfig(name="jsonl", train_path=str(path), **kw))

    first = task(tmp_path / "bad.parquet", n_train=10).train_problems(1, 0)
    assert [p.prompt for p in first] == [p.prompt for p in task(tmp_path / "pool.jsonl").train_problems(1, 0)]
    assert len(task(tmp_path / "pool.parquet").train_problems(1, 0)) == 3000
    with pytest.raises(InputError, match=r"bad.parquet, line 3001: field 'answer': missing required field"):
        task(tmp_path / "bad.parquet")
    datasets.Dataset.from_list([{"question": "q"}]).to_parquet(tmp_path / "nocol.parquet")
    with pytest.raises(InputError, match=r"nocol.parquet: field 'answer': missing column"):
        task(tmp_path / "nocol.parquet", n_train=10)
