"""The explicit reward model: Bradley-Terry on demo-vs-rollout pairs with TRL `RewardTrainer`.

What each IRL track fits on: demonstration pairs (`irl`, `irl_guarded`, the paper), those plus the first
`reward.human_pairs` human preferences (`hybrid`), or those preferences alone (`prefs_only`: standard RLHF).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from datasets import Dataset
from trl import RewardConfig, RewardTrainer

from demo2reward.core import iterates
from demo2reward.core.artifacts import DataFileError, atomic_dir, read_jsonl
from demo2reward.core.distributed import shards_parameters
from demo2reward.core.params import HUMAN_TRACKS, RewardParams
from demo2reward.core.runtime import Runtime
from demo2reward.loop.pairs import build_pairs
from demo2reward.models.generation import score
from demo2reward.models.modeling import load_reward_model, load_tokenizer, lora_config
from demo2reward.models.training import check_lengths, merge_lora, save_trained, tokenize_conversations, trainer_kwargs


def pair_outcomes(model, tokenizer, pairs: list[dict]) -> np.ndarray:
    """Per pair: 1 if the chosen response scores higher, 0.5 for a tie, else 0."""
    prompts = [p["prompt"] for p in pairs]
    c = score(model, tokenizer, prompts, [p["chosen"] for p in pairs])
    r = score(model, tokenizer, prompts, [p["rejected"] for p in pairs])
    return (c > r) + 0.5 * (c == r)


def preference_accuracy(model, tokenizer, pairs: list[dict]) -> float:
    """Fraction of pairs where the chosen response scores higher; a tie counts half."""
    return float(pair_outcomes(model, tokenizer, pairs).mean()) if pairs else float("nan")


def _standardise(model, tokenizer, pairs: list[dict], sample: int = 512) -> dict[str, float]:
    """Rescale the score head so rewards on (a sample of) the training responses have unit std.

    Then the KL coefficient β means the same thing every iteration. A constant offset does not matter:
    RLOO and GRPO subtract a per-prompt baseline.
    """
    pairs = pairs[:sample]  # already shuffled; a std needs no more
    prompts = [p["prompt"] for p in pairs] * 2
    completions = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    s = score(model, tokenizer, prompts, completions)
    std = float(s.std()) or 1.0
    model.score.weight.data /= std
    return {"score_std_before": std, "score_mean_before": float(s.mean())}


def _standardise_saved(folder: Path, tokenizer, pairs: list[dict], trust_remote_code: bool = False) -> dict[str, float]:
    """`_standardise` on the saved model in `folder` (rank 0, after the trainer gathered it), saved back in place."""
    model = load_reward_model(folder, tokenizer, trust_remote_code=trust_remote_code)
    stats = _standardise(model, tokenizer, pairs)
    model.save_pretrained(folder)
    return stats


def fit_reward_model(
    init: str | Path,
    tokenizer_path: str | Path,
    pairs: list[dict],
    p: RewardParams,
    out: str | Path,
    seed: int,
    max_length: int,
    fresh: int = 0,
    repeats: list[int] | None = None,
    runtime: Runtime = Runtime(),
) -> dict[str, float]:
    """Fit a Bradley-Terry reward model from `init` on `pairs` (a `validation_fraction` held back); save it to `out`.

    The last `fresh` pairs are this iteration's: their held-out accuracy (`val_accuracy_fresh`) says whether the RM
    can still tell the demonstrations from the current policy's rollouts, which is adaptive K's stopping signal.
    `repeats[i]` is how often training pair i appears in every epoch (its weight); a held-out pair appears once.
    """
    trust = runtime.trust_remote_code
    tokenizer = load_tokenizer(tokenizer_path, trust)
    # Tokenised once, here, as TRL would: the length check and the trainer share the ids (TRL skips its own pass).
    chosen = tokenize_conversations(tokenizer, [q["prompt"] + q["chosen"] for q in pairs])
    rejected = tokenize_conversations(tokenizer, [q["prompt"] + q["rejected"] for q in pairs])
    longest = [max(len(c), len(r)) for c, r in zip(chosen, rejected, strict=True)]
    lengths = check_lengths("reward: pairs", longest, max_length, "reward.max_length")
    model = load_reward_model(init, tokenizer, new_head=True, trust_remote_code=trust)  # from SFT the score head is new
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = int(len(order) * p.validation_fraction)
    val, train = [pairs[i] for i in order[:n_val]], [pairs[i] for i in order[n_val:]]
    val_is_fresh = np.array([i >= len(pairs) - fresh for i in order[:n_val]], dtype=bool)
    val_ids = [{"chosen_ids": chosen[i], "rejected_ids": rejected[i]} for i in order[:n_val]]
    train_ids = [
        {"chosen_ids": chosen[i], "rejected_ids": rejected[i]}
        for i in order[n_val:]
        for _ in range(1 if repeats is None else repeats[i])
    ]
    with atomic_dir(out, manifest=True) as tmp:
        config = RewardConfig(
            **trainer_kwargs(str(tmp / "trainer"), seed, p),
            learning_rate=p.learning_rate,
            num_train_epochs=p.epochs,
            per_device_train_batch_size=p.per_device_batch_size,
            per_device_eval_batch_size=p.eval_batch_size,
            lr_scheduler_type="linear",
            max_length=max_length,
            eval_strategy="no",
        )
        trainer = RewardTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(train_ids),
            eval_dataset=Dataset.from_list(val_ids) if val else None,
            processing_class=tokenizer,
            peft_config=lora_config(p.lora, "SEQ_CLS"),
        )
        result = trainer.train()
        metrics = {"train_loss": float(result.training_loss), "train_runtime_s": float(result.metrics["train_runtime"])}
        history = [h for h in trainer.state.log_history if "accuracy" in h]
        if history:
            metrics["train_accuracy_last"] = float(history[-1]["accuracy"])
        if val:
            metrics["val_loss"] = float(trainer.evaluate()["eval_loss"])
        if shards_parameters():  # ZeRO-3 / FSDP: no rank holds the whole head; rescale the saved, gathered copy
            save_trained(trainer, tokenizer, tmp)
            metrics.update(_standardise_saved(tmp, tokenizer, train, trust))
            fitted = load_reward_model(tmp, tokenizer, trust_remote_code=trust) if val else None
        else:
            fitted = merge_lora(trainer)
            metrics.update(_standardise(fitted, tokenizer, train))  # in place, before saving
            save_trained(trainer, tokenizer, tmp)
        if val:
            # Pooled over the pairs: TRL's eval_accuracy is a mean of per-batch accuracies, in which a short last
            # batch weighs as much as a full one. A positive rescaling changes no order, so standardising is moot.
            outcomes = pair_outcomes(fitted, tokenizer, val)
            metrics["val_accuracy"] = float(outcomes.mean())
            if val_is_fresh.any():
                metrics["val_accuracy_fresh"] = float(outcomes[val_is_fresh].mean())
                metrics["pairs_val_fresh"] = int(val_is_fresh.sum())
    # What the trainer kept: RewardTrainer drops pairs longer than max_length.
    metrics.update({"pairs_train": len(trainer.train_dataset), "pairs_val": len(val), **lengths})
    return metrics


def reward_init(init: str, k: int, previous: Path, sft_policy: Path) -> Path:
    """Where RM k starts: the SFT policy every iteration, or RM k-1 when warm (iteration 1 has none: SFT)."""
    return iterates.reward(previous) if init == "warm" and k > 1 else Path(sft_policy)


def human_pairs(path: Path, n: int) -> list[dict]:
    """The first `n` human preference pairs of the task's `human_prefs.jsonl`; fewer fails."""
    pairs = read_jsonl(path, required=("prompt", "chosen", "rejected"), allow_empty=True)[:n]
    if len(pairs) < n:
        raise DataFileError(f"{path}: reward.human_pairs is {n} but the task has {len(pairs)} (raise task's n_human_pairs)")
    return pairs


def reward_iterate(
    track: str,
    iterate: Path,
    k: int,
    previous: Path,
    sft_policy: Path,
    pairs_path: Path,
    rollouts_path: Path,
    human_path: Path,
    p: RewardParams,
    seed: int,
    max_length: int,
    runtime: Runtime = Runtime(),
) -> dict[str, float]:
    """Write `iterate`/reward: a Bradley-Terry RM fitted on the track's data at iterate k, started from SFT
    (`init: sft`, the authors' choice) or from iterate k-1's RM (`init: warm`). Iterate k-1's RM is carried forward
    instead, with no training, once the loop has stopped (adaptive K), and by `prefs_only` after iteration 1: its
    data never change, so it is one RM, as in standard RLHF."""
    k_stop = iterates.stopped_at(previous)
    if k_stop is not None or (track == "prefs_only" and k > 1):
        iterates.carry_forward(iterates.reward(previous), iterates.reward(iterate))
        return {"carried_forward": 1.0} | ({} if k_stop is None else {"k_stop": float(k_stop)})
    init = reward_init(p.init, k, previous, sft_policy)
    human = human_pairs(human_path, p.human_pairs) if track in HUMAN_TRACKS else []
    pairs = read_jsonl(pairs_path, required=("prompt", "chosen", "rejected"))
    if track == "prefs_only":
        # As many training steps as a fit on this iteration's demonstration pairs would take (each human pair
        # repeated): N pairs for one epoch would be a few steps, and the comparison is of data, not of steps.
        repeats = max(1, round(len(pairs) / len(human)))
        metrics = fit_reward_model(
            init, sft_policy, human, p, iterates.reward(iterate), seed, max_length, repeats=[repeats] * len(human),
            runtime=runtime,
        )  # fmt: skip
        return metrics | {"pairs_human": len(human), "human_repeats": repeats}
    # This iteration's pairs are the pool's last ones (`loop.pairs.pool_pairs`).
    fresh, _ = build_pairs(read_jsonl(rollouts_path, required=("prompt", "demonstration", "completion")))
    if fresh and pairs[-len(fresh) :] != fresh:
        raise DataFileError(f"{pairs_path}: does not end with the pairs of {rollouts_path} (a stale pool?)")
    out = iterates.reward(iterate)
    if not human:
        return fit_reward_model(init, sft_policy, pairs, p, out, seed, max_length, fresh=len(fresh), runtime=runtime)
    repeats = [p.human_weight] * len(human) + [1] * len(pairs)
    metrics = fit_reward_model(init, sft_policy, [*human, *pairs], p, out, seed, max_length, len(fresh), repeats, runtime)
    return metrics | {"pairs_human": len(human)}
