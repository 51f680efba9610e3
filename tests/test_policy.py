"""The policy update at micro sizes: every optimiser runs, and the KL reference is the one asked for."""

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

from demo2reward.core.params import ModelParams, PolicyParams
from demo2reward.loop.oracle import gold_reward_func
from demo2reward.loop.rl import _trainer, update_policy
from demo2reward.models.modeling import build_causal_lm, load_policy, load_tokenizer, train_tokenizer
from demo2reward.models.training import trainer_kwargs
from demo2reward.tasks.gold import GoldReward
from demo2reward.tasks.synthetic import FILLERS, WORDS, World

TINY = ModelParams(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
WORLD = World(WORDS[:8], tuple(np.linspace(0.2, 1.0, 8)), summary_size=2)
R_STAR = GoldReward("synthetic", lambda xs, ys: [WORLD.true_reward(x, y) for x, y in zip(xs, ys, strict=True)])


def _save(path, seed):
    tok = train_tokenizer([" ".join(WORDS[:8] + FILLERS)])
    build_causal_lm(TINY, tok, seed=seed).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("policies")
    return _save(root / "sft", 0), _save(root / "previous", 1)


PROMPTS = [[{"role": "user", "content": " ".join(WORDS[i : i + 4])}] for i in range(4)]
MICRO = {"steps": 1, "batch_size": 8, "num_generations": 4, "max_new_tokens": 4}


@pytest.mark.parametrize("optimizer", ["rloo", "grpo", "online_dpo"])
def test_every_optimizer_updates_the_policy(models, tmp_path, optimizer):
    sft, previous = models
    p = PolicyParams(optimizer=optimizer, **MICRO)
    metrics = update_policy(previous, sft, PROMPTS, p, tmp_path / "out", seed=0, reward_func=gold_reward_func(R_STAR, 1.0))
    assert metrics["train_runtime_s"] > 0
    before, after = load_policy(previous), load_policy(tmp_path / "out")
    changed = any(not torch.equal(a, b) for a, b in zip(before.parameters(), after.parameters(), strict=True))
    assert changed and (tmp_path / "out" / "tokenizer_config.json").exists()


@pytest.mark.parametrize(
    ("optimizer", "reference"), [("rloo", "sft"), ("rloo", "previous"), ("grpo", "sft"), ("online_dpo", "sft")]
)
def test_kl_reference_is_the_requested_model(models, tmp_path, optimizer, reference):
    sft, previous = models
    ref_path = sft if reference == "sft" else previous
    trainer = _trainer(
        PolicyParams(optimizer=optimizer, **MICRO),
        load_policy(previous),
        ref_path,
        [gold_reward_func(R_STAR, 1.0)],
        load_tokenizer(previous),
        Dataset.from_list([{"prompt": x} for x in PROMPTS]),
        trainer_kwargs(str(tmp_path), 0),
    )
    expected = load_policy(ref_path).state_dict()
    got = trainer.ref_model.state_dict()
    key = "model.embed_tokens.weight"
    assert torch.equal(got[key].cpu(), expected[key])


def test_iterates_chain_per_track_from_sft():
    from demo2reward.core import iterates

    seed = Path("models/seed_0")
    sft = seed / "sft" / "policy"
    first = seed / "irl" / "../sft"  # `prev` of k = 1, as dvc.yaml writes it
    assert iterates.start_and_reference("previous", sft, first) == (sft, sft)  # k = 1 starts at SFT
    it1 = seed / "irl" / "iter_1"
    assert iterates.start_and_reference("previous", sft, it1) == (it1 / "policy",) * 2
    assert iterates.start_and_reference("sft", sft, it1) == (it1 / "policy", sft)
    assert iterates.earlier_reward_models(seed / "irl_guarded" / "iter_3", 3) == [
        seed / "irl_guarded" / f"iter_{j}" / "reward" for j in (1, 2)
    ]


def test_reward_model_init_is_sft_or_warm():
    from demo2reward.loop.reward import reward_init

    sft, it1 = Path("models/seed_0/sft/policy"), Path("models/seed_0/irl/iter_1")
    assert reward_init("sft", 2, it1, sft) == sft
    assert reward_init("warm", 2, it1, sft) == it1 / "reward"
    assert reward_init("warm", 1, Path("models/seed_0/irl/../sft"), sft) == sft  # nothing to warm-start from at k = 1


def test_learned_reward_model_enters_through_reward_funcs(models, tmp_path):
    from tests.test_guards import _save_rm

    sft, previous = models
    rm = _save_rm(tmp_path / "rm", 2)
    metrics = update_policy(previous, sft, PROMPTS, PolicyParams(**MICRO), tmp_path / "out", seed=0, reward_model=rm)
    assert "reward_last" in metrics and (tmp_path / "out" / "model.safetensors").exists()


def test_the_stopping_rule_fires_below_the_threshold_and_then_holds(tmp_path):
    from demo2reward.core import iterates
    from demo2reward.core.params import LoopParams, ParamsError, parse_params
    from demo2reward.loop.policy import stop_iteration

    rule = LoopParams(stop="indistinguishable", stop_accuracy=0.6)
    previous = tmp_path / "irl" / "iter_2"
    iterates.policy(previous).mkdir(parents=True)
    assert stop_iteration(3, previous, LoopParams(), 0.51) is None  # off: never stops
    assert stop_iteration(3, previous, rule, 0.61) is None
    assert stop_iteration(3, previous, rule, 0.59) == 2  # policy 2 is final
    with pytest.raises(ValueError, match="held-out accuracy"):
        stop_iteration(3, previous, rule, None)
    # Once stopped, every later iterate carries policy K_stop forward, whatever its RM says.
    _save(tmp_path / "source", 0)
    iterates.carry_forward(tmp_path / "source", iterates.policy(tmp_path / "irl" / "iter_3"), k_stop=2)
    assert stop_iteration(4, tmp_path / "irl" / "iter_3", rule, 0.99) == 2
    carried = iterates.policy(tmp_path / "irl" / "iter_3")
    assert (carried / "model.safetensors").read_bytes() == (tmp_path / "source" / "model.safetensors").read_bytes()
    load_policy(carried)  # its manifest covers the marker
    assert parse_params({"loop": {"stop": False}}).loop.stop == "off"  # PyYAML reads a bare `off` as false
    with pytest.raises(ParamsError, match=r"loop\.stop_accuracy"):
        parse_params({"loop": {"stop_accuracy": 0.5}})
    with pytest.raises(ParamsError, match=r"reward\.validation_fraction > 0"):
        parse_params({"loop": {"stop": "indistinguishable"}, "reward": {"validation_fraction": 0}})
