"""Tokenizer and models: a locally trained tokenizer, tiny Llama-style models built from a config,
and the loaders every stage uses, so that no stage knows whether it holds a tiny or a hub model."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

from demo2reward.params import ModelParams

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
USER, ASSISTANT = "<|user|>", "<|assistant|>"
# EOS closes every turn, so that the model learns to stop. The generation prompt ends the template, so the
# prompt's text is a prefix of the prompt+completion text, as TRL requires.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + " {{ m['content'] }} "
    "{% else %}" + ASSISTANT + " {{ m['content'] }} " + EOS + " {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + " {% endif %}"
)


def train_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on the task's own texts (no hub download)."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=[PAD, BOS, EOS, UNK, USER, ASSISTANT]))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )


def build_causal_lm(p: ModelParams, tokenizer: PreTrainedTokenizerFast, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=p.hidden_size,
        intermediate_size=p.intermediate_size,
        num_hidden_layers=p.num_hidden_layers,
        num_attention_heads=p.num_attention_heads,
        num_key_value_heads=p.num_attention_heads,
        max_position_embeddings=p.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(config)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    return AutoTokenizer.from_pretrained(str(path))


def load_policy(path: str | Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)


def load_reward_model(path: str | Path, tokenizer=None) -> torch.nn.Module:
    """A sequence-classification model with one scalar output; from a causal LM it gets a fresh head."""
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=torch.float32)
    if tokenizer is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model
