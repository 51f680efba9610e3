"""The collapse guards at micro sizes."""

import numpy as np
import pytest

from demo2reward.core.params import ModelParams
from demo2reward.loop.guards import MinOverRewardModels, acceptance_gate
from demo2reward.models.modeling import build_causal_lm, load_reward_model, train_tokenizer
from demo2reward.tasks.synthetic import FILLERS, WORDS

TINY = ModelParams(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


def _save_rm(path, seed):
    tok = train_tokenizer([" ".join(WORDS[:8] + FILLERS)])
    build_causal_lm(TINY, tok, seed=seed).save_pretrained(path)
    rm = load_reward_model(path, tok, new_head=True)  # a fresh (random) head, saved: a stand-in for a trained RM
    rm.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _conv(role, texts):
    return [[{"role": role, "content": t}] for t in texts]


@pytest.fixture(scope="module")
def rms(tmp_path_factory):
    root = tmp_path_factory.mktemp("rms")
    return _save_rm(root / "iter_1" / "reward", 0), _save_rm(root / "iter_2" / "reward", 1)


PROMPTS = _conv("user", ["cat dog sun", "tree car book", "rain cat", "dog dog sun"])
ANSWERS = _conv("assistant", ["cat", "um tree", "rain cat", "dog sun sun"])


def test_min_over_reward_models_is_the_min_of_standardised_scores(rms):
    guard = MinOverRewardModels(list(rms), PROMPTS, ANSWERS)
    per_rm = guard.scores(PROMPTS, ANSWERS)
    np.testing.assert_allclose(per_rm.mean(axis=1), 0, atol=1e-5)  # standardised on the reference set
    np.testing.assert_allclose(per_rm.std(axis=1), 1, atol=1e-4)
    np.testing.assert_allclose(guard(PROMPTS, ANSWERS), per_rm.min(axis=0), rtol=1e-6)


def test_gate_accepts_without_frozen_models_and_compares_otherwise(rms, tmp_path):
    from tests.test_policy import _save

    policy = _save(tmp_path / "policy", 0)
    assert acceptance_gate(policy, policy, [], PROMPTS, 4) == (True, {"gate_accepted": 1.0})
    accepted, details = acceptance_gate(policy, policy, [rms[0]], PROMPTS, 4)
    assert accepted and details["gate_delta_iter_1"] == pytest.approx(0.0)
    # Demanding a strict improvement rejects an update that changed nothing.
    accepted, details = acceptance_gate(policy, policy, [rms[0]], PROMPTS, 4, tolerance=-1e-6)
    assert not accepted and details["gate_accepted"] == 0.0
