"""Rollouts: sample responses from a policy on conversational prompts, in batches."""

from __future__ import annotations

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


def rollout_rows(
    model, tokenizer, demos: list[dict], *, per_prompt: int, temperature: float, max_new_tokens: int, batch_size: int, seed: int
) -> list[dict]:
    """One row per sample: the prompt, the demonstration and a policy sample, in conversational form."""
    samples = generate(
        model,
        tokenizer,
        [d["prompt"] for d in demos],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        num_return_sequences=per_prompt,
        batch_size=batch_size,
        seed=seed,
        desc="rollout",
    )
    return [
        {"prompt": d["prompt"], "demonstration": d["completion"], "completion": [{"role": "assistant", "content": s}]}
        for d, group in zip(demos, samples, strict=True)
        for s in group
    ]
