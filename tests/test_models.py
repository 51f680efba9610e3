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


def test_a_causal_lm_is_refused_as_a_reward_model_but_can_start_one(tiny_model_dir):
    """A judge or reward without a trained score head would score noise: refused, naming the folder."""
    from demo2reward.models.modeling import UntrainedRewardHeadError

    with pytest.raises(UntrainedRewardHeadError, match="not a trained reward model"):
        load_reward_model(tiny_model_dir)
    assert load_reward_model(tiny_model_dir, new_head=True).config.num_labels == 1  # RM training starts so


def test_reloaded_tokenizers_pad_on_the_left_and_batched_generation_equals_unbatched(tmp_path):
    """transformers does not save padding_side: a base saved padding right must still generate left-padded."""
    from transformers import AutoTokenizer

    from demo2reward.models.generation import sample
    from demo2reward.models.modeling import build_causal_lm, load_policy, train_tokenizer

    tok = train_tokenizer(["cat dog sun tree car book moon"] * 3)
    build_causal_lm(ModelParams(), tok, seed=0).save_pretrained(tmp_path)
    tok.padding_side = "right"
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).padding_side == "right"  # what a saved base gives back
    loaded = load_tokenizer(tmp_path)
    assert loaded.padding_side == "left"
    loaded.padding_side = "right"  # even a tokenizer set to pad right generates left-padded
    model = load_policy(tmp_path)
    prompts = [_conv("user", "cat"), _conv("user", "cat dog sun tree car book"), _conv("user", "moon sun")]
    batched = sample(model, loaded, prompts, max_new_tokens=6, temperature=None)
    alone = [sample(model, loaded, [p], max_new_tokens=6, temperature=None).texts[0] for p in prompts]
    assert batched.texts == alone
    assert all(len(c[0]) <= 6 for c in batched.completion_ids)
    assert [f[0] for f in batched.finished] == [tok.eos_token_id in c[0] for c in batched.completion_ids]


def test_too_long_examples_fail_with_the_param_named(tiny_model_dir, tmp_path):
    from demo2reward.core.params import SFTParams
    from demo2reward.core.stage import StageError
    from demo2reward.loop.sft import train_language_model

    rows = [{"prompt": _conv("user", "cat " * 30), "completion": _conv("assistant", "dog")}] * 4
    with pytest.raises(StageError, match=r"4 of 4 \(100%\) are longer than sft.max_length = 16 tokens"):
        train_language_model(tiny_model_dir, rows, SFTParams(), tmp_path / "sft", 0, max_length=16)
    assert not (tmp_path / "sft").exists()
    pairs = [{"prompt": _conv("user", "cat"), "chosen": _conv("assistant", "dog " * 30), "rejected": _conv("assistant", "sun")}]
    with pytest.raises(StageError, match=r"reward\.max_length = 16"):
        fit_reward_model(tiny_model_dir, tiny_model_dir, pairs * 8, RewardParams(), tmp_path / "rm", seed=0, max_length=16)


def test_rl_completions_are_scored_as_the_reward_model_was_trained(tmp_path):
    """TRL decodes an RL completion unstripped; the plain (TL;DR) template adds its own space before it."""
    from transformers import AutoTokenizer

    from demo2reward.core.conversation import as_generated
    from demo2reward.models.modeling import prepare_tokenizer
    from tests.test_real_pipeline import EOS, make_base

    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(make_base(tmp_path, ["POST: x TL;DR: a summary"] * 4)))
    prompt = _conv("user", "POST: x\n\nTL;DR:")[0]
    trained = tok.apply_chat_template([prompt, {"role": "assistant", "content": "a summary"}], tokenize=False)
    rl = [{"role": "assistant", "content": " a summary"}]  # as TRL hands it to a reward function
    assert tok.apply_chat_template([prompt, *rl], tokenize=False).endswith("TL;DR:  a summary" + EOS)  # the bug
    assert tok.apply_chat_template([prompt, *as_generated([rl])[0]], tokenize=False) == trained
    assert trained == "POST: x\n\nTL;DR: a summary" + EOS


def test_judges_see_the_whole_dialogue():
    from demo2reward.core.conversation import dialogue_text

    assert dialogue_text(_conv("user", "hi")) == "hi"
    dialogue = [*_conv("user", "q1"), *_conv("assistant", "a1"), *_conv("user", "q2")]
    assert dialogue_text(dialogue) == "User: q1\n\nAssistant: a1\n\nUser: q2"


def test_a_model_folder_cannot_grant_itself_remote_code(tmp_path):
    """A third-party judge folder asking for remote code (in its config and in our old settings files) is refused,
    and none of its code runs, unless the user's params allow it."""
    from demo2reward.evaluation.metrics import RewardModelJudge
    from demo2reward.models.modeling import ModelSourceError

    folder = tmp_path / "judge"
    folder.mkdir()
    marker = tmp_path / "code-ran"
    (folder / "config.json").write_text(
        '{"model_type": "evil", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", '
        '"AutoModelForSequenceClassification": "modeling_evil.EvilModel"}}'
    )
    (folder / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (folder / "demo2reward_load.json").write_text('{"trust_remote_code": true}')  # what used to grant it
    with pytest.raises(ModelSourceError, match="only params can allow"):
        RewardModelJudge(folder)
    (folder / "base_model.json").write_text('{"trust_remote_code": true}')
    with pytest.raises(ModelSourceError, match="not a base pointer"):
        RewardModelJudge(folder)
    assert not marker.exists()
