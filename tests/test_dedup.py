from selfalign.filters import dedup_paths, path_key


def steps(c: str) -> list[str]:
    return [s.strip() for s in c.split("\n") if s.strip()]


PATHS = [
    "a=1+2\nb=a*3\n#### 9",
    "a = 1+2\nb=a*3\n####   9",  # same steps once whitespace is ignored
    "a=2+1\nb=a*3\n#### 9",
    "a=1+2\nb=a*3\n#### 9",  # exact duplicate
]


def test_path_key_ignores_spaces():
    assert path_key(steps(PATHS[0])) == path_key(steps(PATHS[1]))
    assert path_key(steps(PATHS[0])) != path_key(steps(PATHS[2]))


def test_modes():
    assert dedup_paths(PATHS, steps, "none") == [0, 1, 2, 3]
    assert dedup_paths(PATHS, steps, "steps") == [0, 2]
    kept = dedup_paths(PATHS, steps, "farthest")
    assert len(kept) == 2 and 2 in kept


def test_farthest_picks_most_distant_member():
    # Group "x" has a near-copy of the kept "y" path and a distant variant; RFT keeps the distant one.
    paths = ["y\nlong-path-here", "x\nlong-path-here", "x   \nQQQQQQQQQQQQQQQQQQ"]
    kept = dedup_paths(paths, lambda c: [c.split("\n")[0].strip()], "farthest")
    assert kept == [0, 2]
