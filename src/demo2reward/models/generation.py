"""Inference with any policy or reward model: batched generation, reward scores and sequence log-probabilities.

Every prompt is rendered with the model's chat template, so that training, rollouts, RL and evaluation all see
the same text.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm


@torch.no_grad()
def generate(
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
) -> list[list[str]]:
    """Return, for each prompt, `num_return_sequences` response texts (greedy when temperature is None)."""
    torch.manual_seed(seed)
    model.eval()
    device = next(model.parameters()).device
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    out: list[list[str]] = []
    sampling = {"do_sample": False} if temperature is None else {"do_sample": True, "temperature": temperature, "top_k": 0}
    for start in tqdm(range(0, len(texts), batch_size), desc=desc, leave=False):
        batch = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(device)
        ids = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            num_return_sequences=num_return_sequences,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sampling,
        )
        completions = tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        completions = [c.strip() for c in completions]  # keep inner newlines: code and lists need them
        for i in range(0, len(completions), num_return_sequences):
            out.append(completions[i : i + num_return_sequences])
    return out


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
