import pytest
import yaml

from demo2reward.core.params import ParamsError, load_params, parse_params
from tests.conftest import ROOT, merged_params


def test_repository_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.K == len(p.iterations) >= 1
    assert p.policy.beta > 0


@pytest.mark.parametrize(
    ("overrides", "key", "says"),
    [
        ({"policy": {"beta": -0.1}}, "policy.beta", "greater than 0"),
        ({"policy": {"optimizer": "ppo"}}, "policy.optimizer", "rloo"),
        ({"policy": {"betta": 0.1}}, "policy.betta", "unknown key"),
        ({"surprise": 1}, "surprise", "unknown key"),
        ({"iterations": []}, "iterations", "at least 1"),
        ({"iterations": [{"k": 1, "prev": "../sft"}, {"k": 3, "prev": "iter_2"}]}, "iterations", "item 2"),
        ({"iterations": [{"k": 1}]}, "iterations.0.prev", "required"),
        ({"seeds": []}, "seeds", "at least 1"),
        ({"seeds": [0, 0]}, "seeds", "duplicates"),
        ({"irl_tracks": ["irl", "ppo"]}, "irl_tracks.1", "irl_guarded"),
        ({"irl_tracks": ["irl", "hybrid"]}, "irl_tracks", "set reward.human_pairs > 0"),
        (
            {"irl_tracks": ["prefs_only"], "reward": {"human_pairs": 2000}},
            "reward.human_pairs",
            "pool of human pairs (task.n_human_pairs: 1000)",
        ),
        ({"reward": {"human_weight": 0}}, "reward.human_weight", "greater than or equal to 1"),
        ({"policy": {"guards": {"reward_aggregation": "max"}}}, "policy.guards.reward_aggregation", "min"),
        ({"rollout": {"per_prompt": "many"}}, "rollout.per_prompt", "integer"),
        ({"policy": {"batch_size": 60, "num_generations": 8}}, "policy", "multiple of num_generations"),
    ],
)
def test_bad_params_get_one_clear_message_naming_the_key(overrides, key, says):
    with pytest.raises(ParamsError) as err:
        parse_params(merged_params(overrides))
    msg = str(err.value)
    assert key in msg and says in msg
    assert "Traceback" not in msg and "pydantic" not in msg.lower()


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("policy: [unclosed\n")
    with pytest.raises(ParamsError, match=r"params\.yaml: not valid YAML"):
        load_params(path)


def test_digest_changes_with_params():
    a = parse_params(merged_params())
    b = parse_params(merged_params({"policy": {"beta": 0.2}}))
    assert a.digest() != b.digest() and a.digest() == parse_params(merged_params()).digest()


def test_the_readme_four_gpu_recipe_keeps_every_batch(monkeypatch, tmp_path):
    """README: tldr-pythia1b.yaml, then tldr-pythia1b-4gpu-zero2.yaml: 4 ranks, the same effective and per-device batches."""
    from demo2reward.presets import apply_preset

    monkeypatch.chdir(ROOT)  # config files are relative to the repository root, as DVC runs the stages
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(apply_preset(ROOT / "presets/tldr-pythia1b.yaml", ROOT / "params.yaml")))
    one = parse_params(yaml.safe_load(params.read_text()))
    four = parse_params(apply_preset(ROOT / "presets/tldr-pythia1b-4gpu-zero2.yaml", params))
    assert (four.distributed.num_processes, one.distributed.num_processes) == (4, 1)
    for name in ("sft", "reward", "policy", "spin"):
        a, b = getattr(one, name), getattr(four, name)
        assert a.batch_size == b.batch_size, name
        assert a.batch_size // a.gradient_accumulation_steps == b.batch_size // (b.gradient_accumulation_steps * 4), name


def test_batches_that_do_not_split_over_the_processes_fail_naming_the_key(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ParamsError, match=r"pretrain.batch_size = 32 must be a multiple of distributed.num_processes"):
        parse_params(merged_params({"distributed": {"num_processes": 3}}))
    with pytest.raises(ParamsError, match=r"distributed.config_file: nowhere.yaml does not exist"):
        parse_params(merged_params({"distributed": {"num_processes": 2, "config_file": "nowhere.yaml"}}))
    for config in sorted((ROOT / "presets" / "accelerate").glob("*.yaml")):  # every shipped config is accelerate's
        from accelerate.commands.config.config_args import load_config_from_file

        assert load_config_from_file(str(config)).distributed_type is not None, config.name
