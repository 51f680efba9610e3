"""Model-level behaviour at micro sizes: the reward model learns, log-probs ignore padding."""

import numpy as np
import pytest
import torch

from demo2reward.core.params import ModelParams, RewardParams
from demo2reward.loop.reward import fit_reward_model, preference_accuracy
from demo2reward.models.generation import sequence_logprobs
from demo2reward.models.modeling import build_causal_lm, load_reward_model, load_tokenizer, train_tokenizer
from demo2reward.tasks.synthetic import FILLERS, WORDS

TINY = ModelParams(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    tokenizer = train_tokenizer([" ".join(WORDS[:12] + FILLERS)])
    build_causal_lm(TINY, tokenizer, seed=0).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _conv(role, text):
    return [{"role": role, "content": text}]


def _separable_pairs(rng, n):
    """Chosen: two post words. Rejected: the same with a filler inserted; a feature a tiny RM can see."""
    pairs = []
    for _ in range(n):
        words = list(rng.choice(WORDS[:12], size=4, replace=False))
        good = " ".join(words[:2])
        bad = f"{words[0]} {rng.choice(FILLERS)} {words[1]}"
        pairs.append(
            {"prompt": _conv("user", " ".join(words)), "chosen": _conv("assistant", good), "rejected": _conv("assistant", bad)}
        )
    return pairs


def test_chat_template_prompt_is_prefix_and_eos_closes_the_turn(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    prompt = tok.apply_chat_template(_conv("user", "cat dog"), add_generation_prompt=True, tokenize=False)
    full = tok.apply_chat_template(_conv("user", "cat dog") + _conv("assistant", "dog"), tokenize=False)
    assert full.startswith(prompt) and full.rstrip().endswith(tok.eos_token)
    assert tok.padding_side == "left"


def test_reward_model_fitted_on_separable_pairs_beats_chance(tiny_model_dir, tmp_path):
    rng = np.random.default_rng(0)
    train, test = _separable_pairs(rng, 256), _separable_pairs(rng, 64)
    p = RewardParams(learning_rate=3e-3, epochs=3, batch_size=16, validation_fraction=0.1)
    metrics = fit_reward_model(tiny_model_dir, tiny_model_dir, train, p, tmp_path / "rm", seed=0, max_length=32)
    rm = load_reward_model(tmp_path / "rm")
    accuracy = preference_accuracy(rm, load_tokenizer(tmp_path / "rm"), test)
    assert accuracy > 0.8, metrics
    assert metrics["train_loss"] < np.log(2)


def test_sequence_logprobs_do_not_depend_on_padding(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    model = torch.nn.Module()
    from demo2reward.models.modeling import load_policy

    model = load_policy(tiny_model_dir)
    prompts = [_conv("user", "cat"), _conv("user", "cat dog sun tree car book")]
    completions = [_conv("assistant", "cat dog"), _conv("assistant", "sun")]
    batched = sequence_logprobs(model, tok, prompts, completions)
    alone = np.concatenate([sequence_logprobs(model, tok, [p], [c]) for p, c in zip(prompts, completions, strict=True)])
    np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-4)
    assert (batched < 0).all()
