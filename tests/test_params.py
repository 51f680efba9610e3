import pytest

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
