"""Evaluation of one policy (and the reward it was trained on) on held-out prompts and preferences."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from demo2reward.core import iterates
from demo2reward.core.artifacts import read_jsonl, write_jsonl
from demo2reward.core.conversation import assistant_turns, dialogue_text, prompt_text, response_text
from demo2reward.core.params import IRL_TRACKS, EvaluateParams
from demo2reward.core.runtime import Runtime
from demo2reward.models.generation import completion_logprobs, sample, score, sequence_logprobs
from demo2reward.models.modeling import load_policy, load_reward_model, load_tokenizer
from demo2reward.tasks.base import read_task_info
from demo2reward.tasks.gold import GoldReward, load_gold_reward, wins


def _pair_accuracy(chosen_scores: np.ndarray, rejected_scores: np.ndarray) -> float:
    if len(chosen_scores) == 0:
        return float("nan")
    return float(np.mean((chosen_scores > rejected_scores) + 0.5 * (chosen_scores == rejected_scores)))


class RewardModelJudge:
    """A local sequence-classification model as judge: the answer wins if it scores above the reference."""

    def __init__(self, path: str | Path, trust_remote_code: bool = False):
        self.model = load_reward_model(path, trust_remote_code=trust_remote_code)
        self.tokenizer = load_tokenizer(path, trust_remote_code)

    def win_rates(self, prompts: list[list[dict]], answers: list[str], references: list[str]) -> tuple[list[float], dict]:
        """Per prompt (the whole dialogue so far, rendered by the judge's own template): 1, ½ or 0."""
        a = score(self.model, self.tokenizer, prompts, assistant_turns(answers))
        r = score(self.model, self.tokenizer, prompts, assistant_turns(references))
        return list((a > r) + 0.5 * (a == r)), {}


def build_judge(p: EvaluateParams, root: Path):
    """The extra win-rate judge of `evaluate.judge`, checked before any generation; None without one."""
    if p.judge == "reward_model":
        return RewardModelJudge(p.judge_reward_model, p.judge_trust_remote_code)
    if p.judge == "llm":
        from demo2reward.evaluation.judge import PairwiseJudge, judge_config

        judge = PairwiseJudge(judge_config(p, root))
        judge.preflight()
        return judge
    return None


def evaluate_policy(
    policy_path: str | Path,
    sft_path: str | Path,
    heldout: list[dict],
    heldout_prefs: list[dict],
    gold: GoldReward | None,
    p: EvaluateParams,
    seed: int,
    reward_model_path: str | Path | None = None,
    implicit_reference_path: str | Path | None = None,
    judge=None,
    runtime: Runtime = Runtime(),
) -> tuple[dict[str, float], list[dict]]:
    """Metrics of one policy, and its greedy answers for inspection.

    The reward whose accuracy is measured is the learned reward model at `reward_model_path`, or, if
    `implicit_reference_path` is given instead, the implicit reward log π(y|x) − log π_ref(y|x); with no
    `heldout_prefs` (a task without preference pairs) there is no reward accuracy.
    An extra `judge` (see `build_judge`) adds its own win rate of the greedy answers against the demos.

    The task's `gold` reward (None for a task without one) gives the true reward, the gold win rate against the
    demonstrations, its diagnostics and the gold-labelled pairs of two policy samples; the judge's win rate, the
    learned or implicit reward's accuracy, the proxy reward, KL and lengths need none.
    """
    trust = runtime.trust_remote_code
    tokenizer = load_tokenizer(policy_path, trust)
    policy = load_policy(policy_path, trust)
    sft = load_policy(sft_path, trust)
    prompts = [h["prompt"] for h in heldout]
    posts = [prompt_text(x) for x in prompts]
    demos = [response_text(h["completion"]) for h in heldout]
    gen = {"max_new_tokens": p.max_new_tokens, "batch_size": p.batch_size, "vllm": runtime.vllm, "trust_remote_code": trust}

    greedy_run = sample(policy, tokenizer, prompts, temperature=None, seed=seed, desc="greedy", **gen)
    sampled_run = sample(policy, tokenizer, prompts, temperature=1.0, num_return_sequences=2, seed=seed, desc="sample", **gen)
    greedy = greedy_run.first
    first, second = [s[0] for s in sampled_run.texts], [s[1] for s in sampled_run.texts]

    metrics: dict[str, float] = {}
    if gold is not None:
        r_greedy, r_first, r_second, r_demo = gold(posts, greedy), gold(posts, first), gold(posts, second), gold(posts, demos)
        metrics.update(
            {
                "true_reward_mean": float(r_greedy.mean()),
                "true_reward_mean_sampled": float(r_first.mean()),
                "win_rate_vs_demos": float(wins(r_greedy, r_demo).mean()),
                "win_rate_vs_demos_sampled": float(wins(r_first, r_demo).mean()),
            }
        )
    metrics["response_length_mean"] = float(np.mean([len(g.split()) for g in greedy]))
    metrics["response_length_mean_sampled"] = float(np.mean([len(s.split()) for s in first]))
    # Answers cut at max_new_tokens before their EOS: a chat template closes them anyway, so only this shows it.
    metrics["clipped_fraction"] = float(np.mean([not f[0] for f in greedy_run.finished]))
    metrics["clipped_fraction_sampled"] = float(np.mean([not f[0] for f in sampled_run.finished]))
    judge_scores = None
    if judge is not None:
        suffix = "rm" if isinstance(judge, RewardModelJudge) else "llm"
        # The judge sees the whole dialogue before the answer, not only its last user message.
        questions = prompts if suffix == "rm" else [dialogue_text(x) for x in prompts]
        judge_scores, usage = judge.win_rates(questions, greedy, demos)
        metrics[f"win_rate_vs_demos_{suffix}"] = float(np.mean(judge_scores))
        metrics.update({f"judge_{k}": float(v) for k, v in usage.items()})
    if gold is not None:
        for key, values in gold.diagnostics(posts, first).items():
            metrics[f"{key}_mean_sampled"] = float(np.mean(values))

    bs = p.batch_size
    # Monte-Carlo KL(π ‖ π_sft) on the very tokens π sampled (their decoded, stripped text would re-tokenise
    # differently on a real tokenizer, and a clipped answer would gain an EOS it never sampled).
    sampled_ids = [c[0] for c in sampled_run.completion_ids]
    kl = completion_logprobs(policy, sampled_run.prompt_ids, sampled_ids, tokenizer.pad_token_id, bs)
    kl -= completion_logprobs(sft, sampled_run.prompt_ids, sampled_ids, tokenizer.pad_token_id, bs)
    metrics["kl_to_sft"] = float(kl.mean())
    metrics["kl_to_sft_se"] = float(kl.std(ddof=1) / np.sqrt(len(kl))) if len(kl) > 1 else 0.0

    pref_prompts = [h["prompt"] for h in heldout_prefs]
    if gold is not None:
        # Two samples of the current policy, labelled by the gold reward: the ranking RL actually needs.
        distinct = r_first != r_second
        better_first = r_first > r_second
        pp_prompts = [x for x, d in zip(prompts, distinct, strict=True) if d]
        pp_chosen = assistant_turns(
            [a if b else c for a, c, b, d in zip(first, second, better_first, distinct, strict=True) if d]
        )
        pp_rejected = assistant_turns(
            [c if b else a for a, c, b, d in zip(first, second, better_first, distinct, strict=True) if d]
        )
        metrics["policy_pairs"] = float(len(pp_prompts))

    if reward_model_path is not None:
        rm = load_reward_model(reward_model_path, trust_remote_code=trust)
        rm_tok = load_tokenizer(reward_model_path, trust)
        metrics["proxy_reward_mean"] = float(score(rm, rm_tok, prompts, assistant_turns(greedy), bs).mean())
        metrics["proxy_reward_mean_sampled"] = float(score(rm, rm_tok, prompts, assistant_turns(first), bs).mean())

        def reward_fn(ps, cs):
            return score(rm, rm_tok, ps, cs, bs)
    elif implicit_reference_path is not None:
        ref = load_policy(implicit_reference_path, trust)

        def reward_fn(ps, cs):
            return sequence_logprobs(policy, tokenizer, ps, cs, bs) - sequence_logprobs(ref, tokenizer, ps, cs, bs)
    else:
        reward_fn = None

    if reward_fn is not None:
        if heldout_prefs:
            metrics["reward_accuracy"] = _pair_accuracy(
                reward_fn(pref_prompts, [h["chosen"] for h in heldout_prefs]),
                reward_fn(pref_prompts, [h["rejected"] for h in heldout_prefs]),
            )
        if gold is not None and pp_prompts:  # a coarse gold reward (a verifier's 0/1) may tie every pair of samples
            metrics["reward_accuracy_policy_pairs"] = _pair_accuracy(
                reward_fn(pp_prompts, pp_chosen), reward_fn(pp_prompts, pp_rejected)
            )

    # Per-prompt values, so that the report can bootstrap confidence intervals over prompts.
    answers = [
        {"prompt": x, "demonstration": d, "greedy": g, "sample": s}
        for x, d, g, s in zip(posts, demos, greedy, first, strict=True)
    ]
    if gold is not None:
        per_prompt = zip(answers, r_greedy, r_first, wins(r_greedy, r_demo), wins(r_first, r_demo), strict=True)
        for row, rg, rs, wg, ws in per_prompt:
            row.update({"true_reward": float(rg), "true_reward_sampled": float(rs)})
            row.update({"win_vs_demo": float(wg), "win_vs_demo_sampled": float(ws)})
    if judge_scores is not None:
        for row, v in zip(answers, judge_scores, strict=True):
            row[f"win_vs_demo_{suffix}"] = float(v)
    return metrics, answers


def task_gold_reward(task_dir: Path) -> GoldReward | None:
    """The gold reward the prepared task scores with (checked against what `prepare` recorded), or None."""
    info = read_task_info(task_dir)
    return None if info.gold_reward is None else load_gold_reward(info.gold_reward, task_dir, info.gold_source)


def evaluate_iterate(
    track: str,
    k: int,
    iterate: Path,
    previous_policy: Path,
    sft_policy: Path,
    task_dir: Path,
    p: EvaluateParams,
    seed: int,
    answers_out: Path,
    root: Path,
    runtime: Runtime = Runtime(),
) -> dict[str, float]:
    """Evaluate iterate k of `track` (its policy, `iterate`/policy) and its reward; write its per-prompt answers to
    `answers_out` and return the metrics.

    The reward whose held-out accuracy is measured: an IRL track's learned RM (`iterate`/reward); for SFT and SPIN,
    the implicit reward log π(y|x) − log π_prev(y|x) against the policy it was trained from (`previous_policy`:
    the pretrained base for SFT, iterate k-1 for SPIN, whose DPO β does not change the ranking); none for the oracle.
    A missing judge key or an unreachable judge endpoint fails here, before any generation.
    """
    from demo2reward.core.stage import StageError
    from demo2reward.evaluation.judge import JudgeError

    gold = task_gold_reward(task_dir)
    try:
        judge = build_judge(p, root)
    except JudgeError as err:
        raise StageError(str(err)) from None
    reward = {"sft": {"implicit_reference_path": previous_policy}, "spin": {"implicit_reference_path": previous_policy}}
    reward.update({t: {"reward_model_path": iterates.reward(iterate)} for t in IRL_TRACKS})
    metrics, answers = evaluate_policy(
        iterates.policy(iterate),
        sft_policy,
        read_jsonl(task_dir / "heldout.jsonl", required=("prompt", "completion")),
        read_jsonl(task_dir / "heldout_prefs.jsonl", required=("prompt", "chosen", "rejected"), allow_empty=True),
        gold,
        p,
        seed,
        judge=judge,
        runtime=runtime,
        **reward.get(track, {}),
    )
    metrics["iteration"] = k
    metrics["seed"] = seed
    write_jsonl(answers_out, answers)
    return metrics
