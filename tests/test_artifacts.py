import pytest

from demo2reward.core.artifacts import DataFileError, atomic_dir, read_jsonl, write_jsonl


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "demos.jsonl"
    path.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a", "compl\n')
    with pytest.raises(DataFileError, match=r"demos.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_missing_column_names_file_line_and_column(tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, [{"prompt": "x", "chosen": "a", "rejected": "b"}, {"prompt": "x", "chosen": "a"}])
    with pytest.raises(DataFileError, match=r"pairs.jsonl:2: missing column\(s\) rejected"):
        read_jsonl(path, required=("prompt", "chosen", "rejected"))


def test_atomic_dir_leaves_nothing_when_killed_midway(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_previous_output(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old").write_text("x")
    with atomic_dir(out) as tmp:
        (tmp / "new").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["new"]
