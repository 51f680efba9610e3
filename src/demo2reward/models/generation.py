"""Inference with any policy or reward model: batched generation, reward scores and sequence log-probabilities.

Every prompt is rendered with the model's chat template, so that training, rollouts, RL and evaluation all see
the same text.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from demo2reward.core.params import VLLMParams


@dataclass
class Samples:
    """What `sample` returns, per prompt and per returned sequence."""

    texts: list[list[str]]  # the decoded answers, stripped (inner newlines kept: code and lists need them)
    prompt_ids: list[list[int]]  # the rendered prompt's tokens
    completion_ids: list[list[list[int]]]  # the sampled tokens, through the first EOS (inclusive)
    finished: list[list[bool]]  # whether the answer ended with EOS within max_new_tokens (else it was clipped)

    @property
    def first(self) -> list[str]:
        return [t[0] for t in self.texts]


def trl_vllm_kwargs(config_class, vllm: VLLMParams | None) -> dict:
    """TRL's `use_vllm` and `vllm_*` options from the `vllm` params, those that `config_class` has; {} when off."""
    if vllm is None:
        return {}
    import dataclasses

    known = {f.name for f in dataclasses.fields(config_class)}
    kwargs = {"use_vllm": True, **{f"vllm_{k}": v for k, v in vllm.model_dump().items() if k != "enabled"}}
    return {k: v for k, v in kwargs.items() if k in known}


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: list[list[dict]],
    *,
    max_new_tokens: int,
    temperature: float | None,
    num_return_sequences: int = 1,
    batch_size: int = 256,
    seed: int = 0,
    desc: str = "generate",
    vllm: VLLMParams | None = None,
    trust_remote_code: bool = False,
) -> Samples:
    """Answers of `model` to conversational `prompts` (greedy when temperature is None), in batches.

    Prompts are always padded on the left, whatever the tokenizer says: generation appends to the right end of
    every row, so right padding would put pad tokens between a prompt and its answer. With `vllm` (the stage's
    `Runtime.vllm`), vLLM generates instead, from the folder the model was loaded from.
    """
    if vllm is not None:
        return _sample_vllm(
            model, tokenizer, prompts, max_new_tokens, temperature, num_return_sequences, seed, vllm, trust_remote_code
        )
    torch.manual_seed(seed)
    model.eval()
    device = next(model.parameters()).device
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    eos = _eos_ids(model, tokenizer)
    out = Samples([], [], [], [])
    sampling = {"do_sample": False} if temperature is None else {"do_sample": True, "temperature": temperature, "top_k": 0}
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, leave=False):
        chunk = texts[start : start + batch_size]
        batch = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        batch = batch.to(device)
        ids = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            num_return_sequences=num_return_sequences,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        new = ids[:, batch["input_ids"].shape[1] :].tolist()
        decoded = tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        for row, mask in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), strict=True):
            out.prompt_ids.append([t for t, m in zip(row, mask, strict=True) if m])
        for i in range(0, len(new), num_return_sequences):
            group = new[i : i + num_return_sequences]
            cut = [next((j + 1 for j, t in enumerate(g) if t in eos), None) for g in group]
            out.texts.append([d.strip() for d in decoded[i : i + num_return_sequences]])
            out.completion_ids.append([g[:c] if c else g for g, c in zip(group, cut, strict=True)])
            out.finished.append([c is not None for c in cut])
    return out


_engines: dict[str, object] = {}


def _sample_vllm(
    model, tokenizer, prompts, max_new_tokens, temperature, num_return_sequences, seed, vllm: VLLMParams, trust_remote_code
) -> Samples:
    """`sample` on vllm.LLM: the same prompts (chat template, no special tokens added), stops and Samples.

    vLLM loads the model from the folder it was loaded from (`name_or_path`), once per folder and process.
    """
    from pathlib import Path

    from vllm import LLM, SamplingParams

    folder = str(getattr(model, "name_or_path", "") or "")
    if not Path(folder).is_dir():
        raise ValueError(f"vllm.enabled: the model to sample has no folder for vLLM to load ({folder!r})")
    if folder not in _engines:
        _engines.clear()  # one engine at a time: each reserves vllm.gpu_memory_utilization of the GPU
        gc.collect()
        torch.cuda.empty_cache()
        _engines[folder] = LLM(
            model=folder,
            dtype="auto",
            seed=seed,
            gpu_memory_utilization=vllm.gpu_memory_utilization,
            tensor_parallel_size=vllm.tensor_parallel_size,
            max_model_len=vllm.max_model_length,
            trust_remote_code=trust_remote_code,
        )
    engine = _engines[folder]
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    eos = _eos_ids(model, tokenizer)
    # The model's generation_config.json (top_p, repetition_penalty, ...), as HF generate applies it, then ours;
    # vLLM's own defaults come from the same place (`get_diff_sampling_param`).
    try:
        defaults = dict(engine.llm_engine.model_config.get_diff_sampling_param())
    except AttributeError:
        defaults = {}
    greedy = temperature is None
    sampling = SamplingParams(
        **{
            **defaults,
            "n": num_return_sequences,
            "temperature": 0.0 if greedy else temperature,
            "top_k": -1 if not greedy else defaults.get("top_k", -1),  # HF here: top_k=0, no cut-off
            "max_tokens": max_new_tokens,
            "seed": seed,
            "stop_token_ids": sorted(eos),
            "skip_special_tokens": True,
        }
    )
    results = engine.generate([{"prompt_token_ids": ids} for ids in prompt_ids], sampling, use_tqdm=False)
    out = Samples([], [], [], [])
    for ids, result in zip(prompt_ids, results, strict=True):
        group = [list(c.token_ids) for c in result.outputs]
        cut = [next((j + 1 for j, t in enumerate(g) if t in eos), None) for g in group]
        out.prompt_ids.append(ids)
        out.texts.append([c.text.strip() for c in result.outputs])
        out.completion_ids.append([g[:c] if c else g for g, c in zip(group, cut, strict=True)])
        out.finished.append([c is not None or o.finish_reason == "stop" for c, o in zip(cut, result.outputs, strict=True)])
    return out


def _eos_ids(model, tokenizer) -> set[int]:
    """Every token that ends an answer: the tokenizer's EOS and the model's generation config's (e.g. ChatML's)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return {i for i in ids if i is not None}


def generate(model, tokenizer, prompts: list[list[dict]], **kwargs) -> list[list[str]]:
    """For each prompt, `num_return_sequences` answer texts (see `sample`)."""
    return sample(model, tokenizer, prompts, **kwargs).texts


@torch.no_grad()
def completion_logprobs(
    model, prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int, batch_size: int = 256
) -> np.ndarray:
    """log π(y | x) of exactly the given token sequences, summed over y's tokens (a Monte-Carlo KL needs the
    tokens that were sampled, not a re-tokenisation of their decoded text)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(prompt_ids), batch_size):
        ps, cs = prompt_ids[start : start + batch_size], completion_ids[start : start + batch_size]
        full = [p + c for p, c in zip(ps, cs, strict=True)]
        width = max(map(len, full))
        ids = torch.full((len(full), width), pad_id)
        mask = torch.zeros_like(ids)
        target = torch.zeros_like(ids, dtype=torch.bool)
        for i, (p, f) in enumerate(zip(ps, full, strict=True)):
            ids[i, width - len(f) :] = torch.tensor(f)
            mask[i, width - len(f) :] = 1
            target[i, width - len(f) + len(p) :] = True
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        out.append((logp * target[:, 1:].to(device)).sum(-1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


@torch.no_grad()
def score(model, tokenizer, prompts: list[list[dict]], completions: list[list[dict]], batch_size: int = 256) -> np.ndarray:
    """The reward model's scalar for each (prompt, completion) conversation."""
    model.eval()
    device = next(model.parameters()).device
    texts = [tokenizer.apply_chat_template(p + c, tokenize=False) for p, c in zip(prompts, completions, strict=True)]
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        out.append(model(**batch.to(device)).logits[:, 0].float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def sequence_logprobs(
    model, tokenizer, prompts: list[list[dict]], completions: list[list[dict]], batch_size: int = 256
) -> np.ndarray:
    """log π(y | x), summed over the completion's tokens (its closing EOS included)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(prompts), batch_size):
        ps, cs = prompts[start : start + batch_size], completions[start : start + batch_size]
        prompt_ids = _encode(
            tokenizer, [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in ps]
        )
        full_ids = _encode(tokenizer, [tokenizer.apply_chat_template(p + c, tokenize=False) for p, c in zip(ps, cs, strict=True)])
        width = max(map(len, full_ids))
        ids = torch.full((len(full_ids), width), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        target = torch.zeros_like(ids, dtype=torch.bool)
        for i, (pi, fi) in enumerate(zip(prompt_ids, full_ids, strict=True)):
            ids[i, width - len(fi) :] = torch.tensor(fi)
            mask[i, width - len(fi) :] = 1
            target[i, width - len(fi) + len(pi) :] = True
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
        logp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        out.append((logp * target[:, 1:].to(device)).sum(-1).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)
