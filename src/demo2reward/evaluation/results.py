"""The evaluations of a run, gathered: per track, iteration and seed (`load_evaluations`), aggregated over seeds
(`aggregate`), paired differences, the headline numbers and the per-iteration curves.

Inputs are the evaluate stages' files, `metrics/eval/seed_<S>/{sft,<track>_<k>}.json`, with their per-prompt
answers in `data/answers/seed_<S>/...jsonl`; only the seeds, tracks and iterations of the current params count,
so stale files of an earlier, larger run never leak in.

The recovery ratio, defined once here: (a track's gain in true reward over SFT) / (the oracle's gain), both at
iteration K. `reward_recovery_ratio*` in the summary is the ratio of the seed means; `recovery_by_seed` gives it
per seed, whose seed mean the human-labels section and `demo2reward-exchange` compare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from demo2reward.core.artifacts import read_json, read_jsonl
from demo2reward.evaluation.statistics import bootstrap_ci, seed_interval

COLUMNS = (
    "reward_accuracy",
    "reward_accuracy_policy_pairs",
    "win_rate_vs_demos",
    "win_rate_vs_demos_sampled",
    "win_rate_vs_demos_llm",
    "win_rate_vs_demos_rm",
    "true_reward_mean",
    "true_reward_mean_sampled",
    "proxy_reward_mean",
    "kl_to_sft",
    "response_length_mean",
)


# Metric -> the per-prompt field of the answers file it averages (for bootstrap CIs over prompts too).
PER_PROMPT = {
    "win_rate_vs_demos": "win_vs_demo",
    "win_rate_vs_demos_sampled": "win_vs_demo_sampled",
    "win_rate_vs_demos_llm": "win_vs_demo_llm",
    "win_rate_vs_demos_rm": "win_vs_demo_rm",
    "true_reward_mean": "true_reward",
    "true_reward_mean_sampled": "true_reward_sampled",
}


WIN_RATES = ("win_rate_vs_demos", "win_rate_vs_demos_llm", "win_rate_vs_demos_rm")


# Quality measures, best first: r* exists on the synthetic task only; real tasks have a judge's win rate.
QUALITY = ("true_reward_mean", "win_rate_vs_demos_llm", "win_rate_vs_demos_rm")


CURVES = ("reward_accuracy", "win_rate_vs_demos", "true_reward_mean", "true_reward_mean_sampled")


TRACKS = (
    ("irl", "IRL"),
    ("irl_guarded", "IRL + guards"),
    ("hybrid", "IRL + human prefs"),
    ("prefs_only", "Human prefs only (RLHF)"),
    ("spin", "SPIN"),
    ("oracle", "Oracle (r*)"),
)


LEARNED = ("irl", "irl_guarded", "hybrid", "prefs_only")  # the tracks whose recovery of the oracle's gain is reported


LABELS = dict(TRACKS) | {"sft": "SFT"}


# track -> k -> seed -> metrics (k = 0 is SFT, which every track starts from)
Evaluations = dict[str, dict[int, dict[int, dict]]]


# track -> k -> aggregated metrics: `m` (seed mean), `m_ci` ([lo, hi]), `m_seeds` (per-seed values)
Aggregated = dict[str, dict[int, dict]]


def _stem(track: str, k: int) -> str:
    return "sft" if track == "sft" else f"{track}_{k}"


def load_evaluations(
    eval_dir: str | Path,
    seeds: Iterable[int] | None = None,
    max_k: int | None = None,
    tracks: Iterable[str] | None = None,
) -> Evaluations:
    """Read `seed_<S>/sft.json` and `seed_<S>/<track>_<k>.json`, keeping only `seeds`, `tracks` and k ≤ `max_k`,
    so that files of an earlier, larger run (other seeds, tracks or iterations) never leak into this one's report."""
    evals: Evaluations = {}
    wanted = None if seeds is None else set(seeds)
    wanted_tracks = None if tracks is None else set(tracks)
    for seed_dir in sorted(Path(eval_dir).glob("seed_*")):
        seed = int(seed_dir.name.removeprefix("seed_"))
        if wanted is not None and seed not in wanted:
            continue
        for path in sorted(seed_dir.glob("*.json")):
            m = re.fullmatch(r"([a-z_]+)_(\d+)", path.stem)
            track, k = ("sft", 0) if path.stem == "sft" else (m.group(1), int(m.group(2))) if m else (None, 0)
            if track is None or (max_k is not None and k > max_k):
                continue
            if wanted_tracks is not None and track not in wanted_tracks:
                continue
            metrics = read_json(path)
            if not metrics.get("skipped"):  # e.g. the oracle track of a real task, which has no r*
                evals.setdefault(track, {}).setdefault(k, {})[seed] = metrics
    return evals


def load_answers(answers_dir: str | Path | None, evals: Evaluations) -> dict[tuple[str, int, int], list[dict]]:
    """Per-prompt answers of every evaluation that has them, keyed (track, k, seed)."""
    out = {}
    if answers_dir is None:
        return out
    for track, by_k in evals.items():
        for k, by_seed in by_k.items():
            for seed in by_seed:
                path = Path(answers_dir) / f"seed_{seed}" / f"{_stem(track, k)}.jsonl"
                if path.exists():
                    out[track, k, seed] = read_jsonl(path)
    return out


def _per_prompt(answers, track: str, k: int, seeds: list[int], metric: str) -> list[np.ndarray] | None:
    """One array of per-prompt values per seed, or None unless every seed has them."""
    field = PER_PROMPT.get(metric)
    rows = [answers.get((track, k, s)) for s in seeds]
    if field is None or any(not r or field not in r[0] for r in rows):
        return None
    return [np.array([row[field] for row in r], dtype=float) for r in rows]


def aggregate(evals: Evaluations, answers) -> Aggregated:
    """Seed means with a t-interval over seeds (≥ 2 seeds); with one seed, a bootstrap over its held-out prompts."""
    agg: Aggregated = {}
    for track, by_k in evals.items():
        for k, by_seed in by_k.items():
            seeds = sorted(by_seed)
            m: dict = {"n_seeds": len(seeds), "seeds": seeds}
            keys = {key for s in seeds for key, v in by_seed[s].items() if isinstance(v, int | float)}
            for key in sorted(keys - {"iteration", "seed"}):
                values = [float(by_seed[s][key]) for s in seeds if key in by_seed[s]]
                m[key] = float(np.mean(values))
                m[f"{key}_seeds"] = values
                if len(values) > 1:
                    m[f"{key}_ci"] = list(seed_interval(values))
                elif (groups := _per_prompt(answers, track, k, seeds, key)) is not None:
                    m[f"{key}_ci"] = list(bootstrap_ci(groups))
            agg.setdefault(track, {})[k] = m
    return agg


def paired_difference(
    answers, evals: Evaluations, a: tuple[str, int], b: tuple[str, int], metric: str, seeds: Iterable[int] | None = None
) -> dict | None:
    """Mean of metric(a) − metric(b) over seeds (all shared ones, or `seeds`) and held-out prompts, with its CI.

    Both policies answered the same prompts in each seed, so the difference is paired prompt by prompt,
    which is much tighter than comparing two separate intervals.
    """
    shared = set(evals.get(a[0], {}).get(a[1], {})) & set(evals.get(b[0], {}).get(b[1], {}))
    seeds = sorted(shared if seeds is None else shared & set(seeds))
    ga, gb = _per_prompt(answers, *a, seeds, metric), _per_prompt(answers, *b, seeds, metric)
    if not seeds or ga is None or gb is None or any(len(x) != len(y) for x, y in zip(ga, gb, strict=True)):
        return None
    diffs = [x - y for x, y in zip(ga, gb, strict=True)]
    per_seed = [float(d.mean()) for d in diffs]
    lo, hi = seed_interval(per_seed) if len(per_seed) > 1 else bootstrap_ci(diffs)  # one seed: over its prompts
    return {"mean": float(np.mean(per_seed)), "ci": [lo, hi], "per_seed": per_seed}


def final_k(agg: Aggregated, track: str) -> int | None:
    return max(agg[track]) if agg.get(track) else None


def quality_metric(agg: Aggregated) -> str:
    """The best quality measure that the SFT evaluation has (r* on the synthetic task, else a judge's win rate)."""
    sft = agg.get("sft", {}).get(0, {})
    return next((m for m in QUALITY if m in sft), QUALITY[0])


def best_k(agg: Aggregated, track: str) -> int:
    """The iteration with the highest seed-mean win rate vs demos (picked on the evaluation data: optimistic)."""
    by_k = agg[track]
    key = next((m for m in WIN_RATES if any(m in by_k[k] for k in by_k)), WIN_RATES[0])
    return max(by_k, key=lambda k: by_k[k].get(key, float("-inf")))


def summarise(agg: Aggregated) -> dict[str, float]:
    """Headline numbers: gains at the final iteration K and the reward-recovery ratio against the oracle."""
    out: dict[str, float] = {}
    sft = agg.get("sft", {}).get(0)
    main = next((t for t in LEARNED if agg.get(t)), None)
    if not (sft and main):
        return out
    gained = ("true_reward_mean", "true_reward_mean_sampled", "win_rate_vs_demos", "win_rate_vs_demos_sampled")
    for track in (*LEARNED, "spin", "oracle"):
        if not agg.get(track):
            continue
        final = agg[track][final_k(agg, track)]
        for key in gained:
            if key in final and key in sft:
                out[f"{track}_gain_{key}"] = final[key] - sft[key]
        if "reward_accuracy" in final and track != "oracle":
            out[f"{track}_reward_accuracy_final"] = final["reward_accuracy"]
    for track, suffix in RECOVERY_SUFFIX.items():
        for key in ("true_reward_mean", "true_reward_mean_sampled"):
            gain, oracle_gain = out.get(f"{track}_gain_{key}"), out.get(f"oracle_gain_{key}")
            if gain is not None and oracle_gain is not None and oracle_gain > 0:  # else there is no gain to recover
                out[f"reward_recovery_ratio{suffix}{key.removeprefix('true_reward_mean')}"] = gain / oracle_gain
        for seed, ratio in recovery_by_seed(agg, track).items():
            out[f"reward_recovery_ratio{suffix}_seed{seed}"] = ratio
    irl = agg[main]
    accuracies = [irl[k]["reward_accuracy"] for k in irl if "reward_accuracy" in irl[k]]
    if accuracies and main == "irl":
        out["reward_accuracy_min"] = min(accuracies)
    out["K"] = final_k(agg, main)
    out["seeds"] = irl[final_k(agg, main)]["n_seeds"]
    return out


RECOVERY_SUFFIX = {"irl": "", "irl_guarded": "_guarded", "hybrid": "_hybrid", "prefs_only": "_prefs_only"}


def recovery_by_seed(agg: Aggregated, track: str, key: str = "true_reward_mean") -> dict[int, float]:
    """Per seed, the track's gain in true reward over SFT at K as a fraction of the oracle's (seeds where the oracle
    gained); the seed mean of these, with its t-interval, is what the human-labels section and the sweep compare."""
    sft, oracle = agg.get("sft", {}).get(0), agg.get("oracle")
    if not (sft and oracle and agg.get(track)) or key not in sft:
        return {}
    at_k, best = agg[track][final_k(agg, track)], oracle[final_k(agg, "oracle")]
    if key not in at_k or key not in best:
        return {}
    values = {name: dict(zip(m["seeds"], m[f"{key}_seeds"], strict=True)) for name, m in (("s", sft), ("t", at_k), ("o", best))}
    out = {}
    for seed in sorted(set(values["s"]) & set(values["t"]) & set(values["o"])):
        oracle_gain = values["o"][seed] - values["s"][seed]
        if oracle_gain > 0:
            out[seed] = (values["t"][seed] - values["s"][seed]) / oracle_gain
    return out


HEADLINE = {"reward_accuracy": "acc", "win_rate_vs_demos": "win", "true_reward_mean": "true"}


HEADLINE_TRACKS = {
    "sft": ("win", "true"),
    "irl": ("acc", "win", "true"),
    "spin": ("acc", "win", "true"),
    "oracle": ("win", "true"),
}


def headline(agg: Aggregated, summary: Mapping[str, float]) -> dict[str, float]:
    """The few numbers `dvc exp show` lists per experiment (`metrics/summary.json`, the one DVC metric): the
    recovery ratio, then the held-out reward accuracy (`acc`), win rate against the demonstrations (`win`) and
    greedy true reward (`true`) of SFT, IRL, SPIN and the oracle, seed means at K (SFT at 0). Short names keep the
    table within a screen; everything else (the guarded track, gains, claims) is in `summary_detail.json`."""
    out: dict[str, float] = {}
    if "reward_recovery_ratio" in summary:
        out["reward_recovery_ratio"] = summary["reward_recovery_ratio"]
    for track, shown in HEADLINE_TRACKS.items():
        at_k = agg.get(track, {}).get(0 if track == "sft" else final_k(agg, track) or -1)
        for key, short in HEADLINE.items():
            if at_k and key in at_k and short in shown:
                out[f"{track}_{short}"] = at_k[key]
    for key in ("K", "seeds"):
        if key in summary:
            out[key] = summary[key]
    return out


def curves(agg: Aggregated) -> dict[str, list[dict]]:
    """Per-track seed-mean records `{iteration, metric...}`, SFT as iteration 0 of each track (for `dvc plots`)."""
    out = {}
    for track, _ in TRACKS:
        if track not in agg:
            continue
        points = {**({0: agg["sft"][0]} if "sft" in agg else {}), **agg[track]}
        # Every record gets the same fields: `dvc plots` drops a file whose records differ.
        keys = [c for c in CURVES if all(c in m for m in points.values())]
        out[track] = [{"iteration": k, **{c: points[k][c] for c in keys}} for k in sorted(points)]
    return out
