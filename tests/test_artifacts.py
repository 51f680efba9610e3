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


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty: no rows"),
        (b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n', ":2: not UTF-8 text"),
        (b'{"prompt": "a", "completion": null}\n', ":1: column completion is null"),
        (b'{"prompt": [{"role": "user"}], "completion": "b"}\n', ":1: column prompt holds a message without"),
        (b'{"prompt": 3, "completion": "b"}\n', ":1: column prompt must be a string or a non-empty list"),
    ],
    ids=["empty", "not-utf8", "null", "message-without-content", "wrong-type"],
)
def test_bad_data_fails_with_file_and_line(tmp_path, content, says):
    path = tmp_path / "demos.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=says) as err:
        read_jsonl(path, required=("prompt", "completion"))
    assert str(err.value).startswith(str(path))


def test_json_metrics_are_finite(tmp_path):
    from demo2reward.core.artifacts import write_json

    with pytest.raises(DataFileError, match="reward_accuracy is not a finite number"):
        write_json(tmp_path / "m.json", {"reward_accuracy": float("nan"), "n": 3})
    assert not (tmp_path / "m.json").exists()


def test_manifest_catches_one_changed_byte(tmp_path):
    from demo2reward.core.artifacts import CorruptArtifactError, verify_manifest

    out = tmp_path / "model"
    with atomic_dir(out, manifest=True) as tmp:
        (tmp / "model.safetensors").write_bytes(bytes(range(256)))
    verify_manifest(out)
    data = bytearray((out / "model.safetensors").read_bytes())
    data[7] ^= 1
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=r"model.safetensors differs from manifest.json"):
        verify_manifest(out)


def test_scratch_lives_outside_tracked_folders_and_stale_scratch_is_removed(tmp_path):
    from demo2reward.core.artifacts import SCRATCH, clean_scratch

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    out = tmp_path / "models" / "seed_0" / "policy"
    seen = []
    with atomic_dir(out) as tmp:
        seen.append(tmp)
        (tmp / "w").write_text("x")
    assert seen[0].parent == tmp_path / SCRATCH and (out / "w").exists()
    (tmp_path / SCRATCH / "999999999-policy-abc").mkdir()  # left by a killed stage (no such pid)
    (tmp_path / SCRATCH / f"{__import__('os').getpid()}-policy-live").mkdir()  # a running one
    assert clean_scratch(tmp_path) == 1
    assert [p.name for p in (tmp_path / SCRATCH).iterdir()] == [f"{__import__('os').getpid()}-policy-live"]
