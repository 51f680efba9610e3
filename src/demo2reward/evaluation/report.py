"""The report: the methods against the metrics as seed means with bootstrap confidence intervals, the paper's
claims tested as paired differences, the collapse-guard comparison, per-iteration curves (JSON for
`dvc plots`, PNG for people) and the headline ratios.

Inputs are the evaluate stages' files, `metrics/eval/seed_<S>/{sft,<track>_<k>}.json`, with their per-prompt
answers in `data/answers/seed_<S>/...jsonl`; only the seeds, tracks and iterations of the current params count,
so stale files of an earlier, larger run never leak in.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from demo2reward.core.artifacts import atomic_file, read_json, read_jsonl, write_json

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
# The paper's claims, as (better, worse) at the final iteration.
CLAIMS = (
    ("irl", "spin"),
    ("spin", "sft"),
    ("irl", "sft"),
    ("irl_guarded", "irl"),
    ("hybrid", "prefs_only"),
    ("hybrid", "irl"),
    ("irl", "prefs_only"),
)
CLAIM_METRICS = ("win_rate_vs_demos", "true_reward_mean", "win_rate_vs_demos_llm", "win_rate_vs_demos_rm")

# track -> k -> seed -> metrics (k = 0 is SFT, which every track starts from)
Evaluations = dict[str, dict[int, dict[int, dict]]]
# track -> k -> aggregated metrics: `m` (seed mean), `m_ci` ([lo, hi]), `m_seeds` (per-seed values)
Aggregated = dict[str, dict[int, dict]]


def bootstrap_ci(groups: list[np.ndarray], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the grand mean, resampling groups (seeds) and then items (prompts) within each.

    With one group this is the ordinary bootstrap over prompts; with one item per group, over seeds.
    """
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(len(groups), size=len(groups)) if len(groups) > 1 else [0]
        stats[b] = np.mean([groups[g][rng.integers(len(groups[g]), size=len(groups[g]))].mean() for g in picked])
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


MIN_SEEDS_FOR_VERDICT = 3  # fewer seeds cannot estimate the between-seed variance that dominates here


def seed_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """t-interval of the mean of per-seed values: it carries the between-seed variance (n − 1 degrees of freedom).

    A bootstrap that resamples 3 seeds sees at most 10 distinct means and understates that variance; a rerun on
    another machine moved one seed's result outside such an interval.
    """
    from scipy import stats

    x = np.asarray(values, dtype=float)
    half = stats.t.ppf((1 + level) / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def seed_summary(by_seed: Mapping[int, float]) -> dict:
    """The seed mean of a per-seed value, its t-interval (NaN with one seed) and the per-seed values."""
    values = list(by_seed.values())
    ci = seed_interval(values) if len(values) > 1 else (float("nan"), float("nan"))
    return {"mean": float(np.mean(values)), "ci": list(ci), "per_seed": dict(by_seed)}


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


def _verdict(d: dict) -> str:
    if len(d["per_seed"]) < MIN_SEEDS_FOR_VERDICT:
        return f"– (needs ≥ {MIN_SEEDS_FOR_VERDICT} seeds)"
    if d["mean"] > 0:
        return "yes" if d["ci"][0] > 0 else "yes, not significant"
    return "no" if d["ci"][1] < 0 else "no, not significant"


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


def claims(agg: Aggregated, evals: Evaluations, answers) -> list[dict]:
    """The paper's orderings at the final iteration, each a paired difference with a CI."""
    rows = []
    for better, worse in CLAIMS:
        if not (agg.get(better) and agg.get(worse)):
            continue
        a, b = (better, final_k(agg, better)), (worse, final_k(agg, worse))
        for metric in CLAIM_METRICS:
            d = paired_difference(answers, evals, a, b, metric)
            if d:
                rows.append({"better": better, "worse": worse, "metric": metric, **d})
    if agg.get("irl") and agg.get("spin"):  # reward accuracy has no per-prompt answers: paired over seeds
        ka, kb = final_k(agg, "irl"), final_k(agg, "spin")
        ia, sa = evals["irl"][ka], evals["spin"][kb]
        seeds = sorted(set(ia) & set(sa))
        diffs = [
            ia[s]["reward_accuracy"] - sa[s]["reward_accuracy"]
            for s in seeds
            if "reward_accuracy" in ia[s] and "reward_accuracy" in sa[s]
        ]
        if len(diffs) > 1:
            lo, hi = seed_interval(diffs)
            rows.append(
                {
                    "better": "irl",
                    "worse": "spin",
                    "metric": "reward_accuracy",
                    "mean": float(np.mean(diffs)),
                    "ci": [lo, hi],
                    "per_seed": diffs,
                }
            )
    return rows


def _seed_curve(evals: Evaluations, track: str, seed: int, metric: str) -> dict[int, float]:
    """`metric` per iteration of one track and seed, SFT as iteration 0."""
    sft = evals.get("sft", {}).get(0, {}).get(seed, {})
    curve = {0: sft[metric]} if metric in sft else {}
    by_k = evals[track]
    return curve | {k: by_k[k][seed][metric] for k in sorted(by_k) if metric in by_k[k].get(seed, {})}


def _policy_metrics(train_dir: str | Path | None, track: str, seed: int, ks: Iterable[int], key: str) -> dict[int, dict]:
    """The `policy@…` metrics of iterations `ks` that record `key` (none without `train_dir`)."""
    found = {}
    for k in ks if train_dir else ():
        path = Path(train_dir) / f"seed_{seed}" / f"policy_{track}_{k}.json"
        if path.exists() and key in (m := read_json(path)):
            found[k] = m
    return found


def guard_trajectories(evals: Evaluations, answers, train_dir: str | Path | None, metric: str = "true_reward_mean") -> list[dict]:
    """Per IRL track and seed: does it help (peak > SFT) and then hold, or collapse (final < peak)?

    Both tests are paired per-prompt bootstraps of `metric` within the seed, so "collapses" means the final
    iterate is significantly worse than the track's best, not just noisily lower.
    """
    rows = []
    for track in ("irl", "irl_guarded"):
        by_k = evals.get(track)
        if not by_k:
            continue
        K = max(by_k)  # noqa: N806 - the paper's name
        for seed in sorted(by_k[K]):
            curve = _seed_curve(evals, track, seed, metric)
            if K not in curve:
                continue
            peak = max((k for k in curve if k > 0), key=curve.get)
            helps = paired_difference(answers, evals, (track, peak), ("sft", 0), metric, [seed])
            drop = paired_difference(answers, evals, (track, K), (track, peak), metric, [seed]) if peak != K else None
            gated = _policy_metrics(train_dir, track, seed, sorted(by_k), "gate_accepted")
            gate = [(k, bool(m["gate_accepted"])) for k, m in gated.items()]
            helped = helps is not None and helps["ci"][0] > 0
            collapsed = drop is not None and drop["ci"][1] < 0
            shape = ("helps, then collapses" if collapsed else "helps, then holds") if helped else "does not help"
            rows.append(
                {
                    "track": track,
                    "seed": seed,
                    "curve": curve,
                    "peak": peak,
                    "drop_from_peak": (curve[K] - curve[peak]),
                    "shape": shape,
                    "gate": gate,
                }
            )
    return rows


def adaptive_k(evals: Evaluations, answers, train_dir: str | Path | None, metric: str = "true_reward_mean") -> list[dict]:
    """Per IRL track and seed of a run with `loop.stop` on: where the loop stopped (K_stop, or K if it never did),
    against the iteration with the best `metric`, and the regret of stopping there (paired, within the seed)."""
    rows = []
    for track in ("irl", "irl_guarded"):
        by_k = evals.get(track)
        if not by_k:
            continue
        K = max(by_k)  # noqa: N806 - the paper's name
        for seed in sorted(by_k[K]):
            checks = _policy_metrics(train_dir, track, seed, sorted(by_k), "stopped")
            if not checks:
                continue  # loop.stop was off
            k_stop = next((int(m["k_stop"]) for m in checks.values() if m["stopped"]), K)
            curve = _seed_curve(evals, track, seed, metric)
            best = max(curve, key=curve.get)
            at = {k: ("sft", 0) if k == 0 else (track, k) for k in (best, k_stop, K)}
            regret = paired_difference(answers, evals, at[best], at[k_stop], metric, [seed]) if best != k_stop else None
            rows.append(
                {
                    "track": track,
                    "seed": seed,
                    "k_stop": k_stop,
                    "best": best,
                    "curve": curve,
                    "fresh_accuracy": {k: m["fresh_accuracy"] for k, m in checks.items() if "fresh_accuracy" in m},
                    "regret": curve[best] - curve[k_stop],
                    "regret_ci": regret["ci"] if regret else [0.0, 0.0],
                    "trainings_skipped": 2 * K - min(K, k_stop + 1) - min(K, k_stop),  # RM fits + RL updates
                    "K": K,
                }
            )
    return rows


def _adaptive_k_lines(rows: list[dict]) -> list[str]:
    lines = [
        "| track | seed | K_stop | best k | at K_stop | at best | regret (95% CI) | within CI? | RM held-out fresh accuracy "
        "(k: acc) | trainings skipped |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fresh = ", ".join(f"{k}: {a:.3f}" for k, a in r["fresh_accuracy"].items())
        lo, hi = r["regret_ci"]
        lines.append(
            f"| {LABELS[r['track']]} | {r['seed']} | {r['k_stop']} | {r['best']} | {_fmt(r['curve'][r['k_stop']])} "
            f"| {_fmt(r['curve'][r['best']])} | {r['regret']:+.3f} [{lo:+.3f}, {hi:+.3f}] | {'yes' if lo <= 0 else 'no'} "
            f"| {fresh} | {r['trainings_skipped']} of {2 * r['K']} |"
        )
    return lines


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> None:
    fig.tight_layout(rect=rect)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    _pyplot().close(fig)


def _iteration_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("iteration k (0 = SFT)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_curves(agg: Aggregated, path: Path) -> None:
    """Seed mean per iteration with its 95% CI band, one line per track."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4))
    for ax, metric in zip(axes, CURVES, strict=True):
        # SFT's reward accuracy is its implicit reward's, not a learned RM's: a separate point, not the curve's start.
        joined = metric != "reward_accuracy"
        if not joined and metric in agg.get("sft", {}).get(0, {}):
            ax.plot([0], [agg["sft"][0][metric]], marker="s", color="black", linestyle="none", label="SFT (implicit)")
        for track, label in TRACKS:
            points = {**({0: agg["sft"][0]} if "sft" in agg and joined else {}), **agg.get(track, {})}
            ks = [k for k in sorted(points) if metric in points[k]] if track in agg else []
            if not ks:
                continue
            (line,) = ax.plot(ks, [points[k][metric] for k in ks], marker="o", label=label)
            cis = [points[k].get(f"{metric}_ci") for k in ks]
            if all(cis):
                ax.fill_between(ks, [c[0] for c in cis], [c[1] for c in cis], color=line.get_color(), alpha=0.15)
        ax.set_title(metric)
        _iteration_axis(ax)
        ax.grid(alpha=0.3)
    legend = {}  # every track once, from whichever panel drew it (the oracle has no reward accuracy)
    for ax in axes:
        legend.update(zip(*reversed(ax.get_legend_handles_labels()), strict=True))
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    _save(fig, path, rect=(0, 0.08, 1, 1))


def plot_overoptimisation(agg: Aggregated, path: Path) -> None:
    """Per IRL iteration: the true reward r* (left axis) and KL to SFT (right axis), each in its own units.

    The proxy reward is not plotted across iterations: each RM k is standardised on its own pairs, so proxy values of
    different k are on different scales, and a line through them would suggest a trend that is not there.
    """
    plt = _pyplot()
    fig, (ax_true, ax_kl) = plt.subplots(1, 2, figsize=(9, 3.6))
    for track in ("irl", "irl_guarded"):
        pts = {0: agg["sft"][0], **agg.get(track, {})} if agg.get(track) and "sft" in agg else {}
        ks = [k for k in sorted(pts) if "true_reward_mean" in pts[k]]
        if not ks:
            continue
        ax_true.plot(ks, [pts[k]["true_reward_mean"] for k in ks], marker="o", label=LABELS[track])
        ax_kl.plot(ks, [pts[k].get("kl_to_sft", 0.0) for k in ks], marker="o", label=LABELS[track])
    ax_true.set_ylabel("true reward r* (greedy; seed mean)")
    ax_kl.set_ylabel("KL(π ‖ π_sft) per answer (seed mean)")
    for ax in (ax_true, ax_kl):
        _iteration_axis(ax)
        ax.grid(alpha=0.3)
    ax_true.legend(fontsize=8)
    fig.suptitle("Over-optimisation: does the true reward still rise as the policy moves away from SFT?")
    _save(fig, path)


def plot_guards(trajectories: list[dict], path: Path, metric: str = "true_reward_mean") -> None:
    """`metric` per iteration, one line per seed, without and with the guards; x marks a rejected update."""
    plt = _pyplot()
    tracks = [t for t in ("irl", "irl_guarded") if any(r["track"] == t for r in trajectories)] or ["irl"]
    fig, axes = plt.subplots(1, len(tracks), figsize=(4.5 * len(tracks), 3.6), sharey=True, squeeze=False)
    for ax, track in zip(axes[0], tracks, strict=True):
        for r in (r for r in trajectories if r["track"] == track):
            ks = sorted(r["curve"])
            (line,) = ax.plot(ks, [r["curve"][k] for k in ks], marker="o", label=f"seed {r['seed']}")
            rejected = [k for k, ok in r["gate"] if not ok]
            ax.plot(rejected, [r["curve"][k] for k in rejected], "x", color=line.get_color(), markersize=11)
        ax.set_title(LABELS[track])
        _iteration_axis(ax)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"{metric} (greedy)")
    axes[0][0].legend(fontsize=8)
    _save(fig, path)


def _fmt(v) -> str:
    return "–" if v is None or v != v else f"{v:.3f}"


def _cell(m: dict, column: str) -> str:
    ci = m.get(f"{column}_ci")
    return _fmt(m.get(column)) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] == ci[0] else "")


def table1_rows(agg: Aggregated) -> list[tuple[str, dict]]:
    """Table 1: SFT, then the best and final iteration of each track."""
    rows = [("SFT", agg["sft"][0])] if "sft" in agg else []
    for track, label in TRACKS:
        if agg.get(track):
            best, final = best_k(agg, track), final_k(agg, track)
            if best == final:
                rows.append((f"{label} final = best (k={final})", agg[track][final]))
            else:
                rows.append((f"{label} best (k={best})", agg[track][best]))
                rows.append((f"{label} final (k={final})", agg[track][final]))
    return rows


def all_rows(agg: Aggregated) -> list[tuple[str, dict]]:
    rows = [("SFT", agg["sft"][0])] if "sft" in agg else []
    for track, label in TRACKS:
        rows += [(f"{label} k={k}", agg[track][k]) for k in sorted(agg.get(track, {}))]
    return rows


def _csv(rows: list[tuple[str, dict]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["method", "n_seeds", *(f"{c}{end}" for c in COLUMNS for end in ("", "_ci_lo", "_ci_hi"))])
    for name, m in rows:
        cells = []
        for c in COLUMNS:
            ci = m.get(f"{c}_ci", [None, None])
            cells += [m.get(c), *ci]
        writer.writerow([name, m.get("n_seeds"), *cells])
    return buf.getvalue()


def _markdown_table(rows: list[tuple[str, dict]], extra: tuple[str, ...] = ()) -> list[str]:
    columns = tuple(c for c in (*COLUMNS, *extra) if any(c in m for _, m in rows))
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    return lines + [f"| {name} | " + " | ".join(_cell(m, c) for c in columns) + " |" for name, m in rows]


def attach_benchmarks(agg: Aggregated, benchmarks: dict[str, dict]) -> tuple[str, ...]:
    """Put MT-Bench / leaderboard scores on SFT and the final IRL/SPIN rows; returns the columns that got any."""
    finals = {"sft": agg.get("sft", {}).get(0)}
    for track in ("irl", "spin"):
        if agg.get(track):
            finals[track] = agg[track][final_k(agg, track)]
    columns = []
    for column, (scores, key) in benchmarks.items():
        if not scores.get("enabled"):
            continue
        columns.append(column)
        for policy, m in finals.items():
            if m is not None and policy in scores:
                m[column] = scores[policy][key]
    return tuple(columns)


def _claims_lines(rows: list[dict]) -> list[str]:
    lines = ["| claim | metric | difference (mean over seeds) | 95% CI | per seed | holds? |", "|---|---|---|---|---|---|"]
    for r in rows:
        per_seed = ", ".join(f"{v:+.3f}" for v in r["per_seed"])
        lines.append(
            f"| {LABELS[r['better']]} > {LABELS[r['worse']]} | {r['metric']} | {r['mean']:+.3f} "
            f"| [{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}] | {per_seed} | {_verdict(r)} |"
        )
    return lines


def human_label_rows(agg: Aggregated) -> list[dict]:
    """Per learned track present: the recovery ratio at K per seed, its seed mean and t-interval."""
    rows = []
    for track in LEARNED:
        if by_seed := recovery_by_seed(agg, track):
            rows.append({"track": track, **seed_summary(by_seed)})
    return rows


def _human_label_lines(rows: list[dict], human_pairs: int, human_weight: int) -> list[str]:
    data = {
        "irl": "demonstration pairs",
        "irl_guarded": "demonstration pairs (guarded RL)",
        "hybrid": f"demonstration pairs + {human_pairs} human pairs (each ×{human_weight})",
        "prefs_only": f"{human_pairs} human pairs",
    }
    lines = ["| track | the RM fits on | recovery ratio at K | per seed |", "|---|---|---|---|"]
    for r in rows:
        per_seed = ", ".join(f"{s}: {_fmt(v)}" for s, v in r["per_seed"].items())
        ci = f"[{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}]"
        lines.append(f"| {LABELS[r['track']]} | {data[r['track']]} | {_fmt(r['mean'])} {ci} | {per_seed} |")
    return lines


def _guards_lines(trajectories: list[dict]) -> list[str]:
    if not trajectories:
        return []
    ks = sorted({k for r in trajectories for k in r["curve"]})
    lines = [
        "| track | seed | " + " | ".join(f"k={k}" for k in ks) + " | peak | final − peak | gate (k: kept?) | shape |",
        "|---" * (len(ks) + 6) + "|",
    ]
    for r in trajectories:
        gate = ", ".join(f"{k}: {'yes' if ok else 'no'}" for k, ok in r["gate"]) or "–"
        cells = " | ".join(_fmt(r["curve"].get(k)) for k in ks)
        peak = f"k={r['peak']} | {r['drop_from_peak']:+.3f}"
        lines.append(f"| {LABELS[r['track']]} | {r['seed']} | {cells} | {peak} | {gate} | {r['shape']} |")
    return lines


def write_report(
    eval_dir: str | Path,
    out_dir: str | Path,
    answers_dir: str | Path | None = None,
    mtbench: str | Path | None = None,
    leaderboard: str | Path | None = None,
    train_dir: str | Path | None = None,
    seeds: Iterable[int] | None = None,
    max_k: int | None = None,
    tracks: Iterable[str] | None = None,
    human_pairs: int = 0,
    human_weight: int = 1,
) -> tuple[dict[str, float], Aggregated]:
    """Write report.md, report.csv, summary.json (headline), summary_detail.json, curves/*.json and plots/*.png;
    return the detailed summary and
    the seed-aggregated metrics."""
    out_dir = Path(out_dir)
    evals = load_evaluations(eval_dir, seeds, max_k, tracks)
    answers = load_answers(answers_dir, evals)
    agg = aggregate(evals, answers)
    benchmarks = {
        "mtbench_overall": (read_json(mtbench) if mtbench and Path(mtbench).exists() else {}, "overall"),
        "leaderboard_average": (read_json(leaderboard) if leaderboard and Path(leaderboard).exists() else {}, "average"),
    }
    extra = attach_benchmarks(agg, benchmarks)
    summary = summarise(agg)
    claim_rows = claims(agg, evals, answers)
    for r in claim_rows:
        summary[f"{r['better']}_minus_{r['worse']}_{r['metric']}"] = r["mean"]
    quality = quality_metric(agg)
    trajectories = guard_trajectories(evals, answers, train_dir, quality)
    stops = adaptive_k(evals, answers, train_dir, quality)
    for track in ("irl", "irl_guarded"):
        if mine := [r for r in trajectories if r["track"] == track]:
            summary[f"{track}_seeds_collapsed"] = float(sum(r["shape"].endswith("collapses") for r in mine))
        if mine := [r for r in stops if r["track"] == track]:
            summary[f"{track}_k_stop_mean"] = float(np.mean([r["k_stop"] for r in mine]))
            summary[f"{track}_stop_regret_mean"] = float(np.mean([r["regret"] for r in mine]))
    curve_data = curves(agg)
    for track, points in curve_data.items():
        write_json(out_dir / "curves" / f"{track}.json", points)
    plot_curves(agg, out_dir / "plots" / "curves.png")
    plot_overoptimisation(agg, out_dir / "plots" / "overoptimisation.png")
    plot_guards(trajectories, out_dir / "plots" / "guards.png", quality)
    write_json(out_dir / "summary.json", headline(agg, summary), sort_keys=False)
    write_json(out_dir / "summary_detail.json", summary)
    with atomic_file(out_dir / "report.csv") as f:
        f.write(_csv(all_rows(agg)))

    n_seeds = int(summary.get("seeds", 0))
    lines = ["# demo2reward report", "", "Every number is computed from `metrics/eval/seed_*/*.json` by `stages/report.py`.", ""]
    lines += [f"## Table 1: methods at their best and final iteration (mean over {n_seeds} seed{'s' * (n_seeds != 1)})", ""]
    lines += _markdown_table(table1_rows(agg), extra)
    lines += [
        "",
        "Brackets: 95% t-interval of the mean over seeds (n − 1 degrees of freedom), so it carries the between-seed",
        "variance, which dominates here: seed-level results are chaotic in float noise, and only seed means are claims.",
        "With one seed the bracket is a bootstrap over that seed's held-out prompts, and no claim gets a verdict.",
        "*Best* is the iteration with the highest mean `win_rate_vs_demos`, picked on the same held-out prompts, so it",
        "is optimistic; *final* is iteration K. SFT's `reward_accuracy` is its implicit reward log π_sft − log π_base",
        "(DPO-style); SPIN's is its implicit reward β·log(π_k / π_{k-1}); IRL's is its explicit reward model's.",
        "The oracle track trains on the true reward r* (an upper bound) and has no learned reward.",
    ]
    if extra:
        lines += ["Benchmark columns grade the first seed's policies only."]
    if claim_rows:
        lines += ["", "## The paper's claims, at the final iteration", ""]
        lines += _claims_lines(claim_rows)
        lines += [
            "",
            "Differences are paired: both policies answered the same held-out prompts in each seed; the CI is a",
            "t-interval over the per-seed differences. *not significant*: it contains 0. Verdicts need at least",
            f"{MIN_SEEDS_FOR_VERDICT} seeds.",
        ]
    if human_pairs and (label_rows := human_label_rows(agg)):
        lines += ["", f"## Human preference labels: {human_pairs} pairs (`reward.human_pairs`)", ""]
        lines += _human_label_lines(label_rows, human_pairs, human_weight)
        lines += [
            "",
            "Recovery ratio per seed: (true reward at K − SFT's) / (the oracle's at K − SFT's), greedy on the held-out",
            "prompts; brackets: the t-interval over seeds. The human pairs are the task's training preferences",
            "(`human_prefs.jsonl`: the simulated labeller on fresh prompts), never the held-out ones. Across N,",
            "`demo2reward-exchange` turns a sweep's MLflow runs into the exchange rate of demonstrations for labels.",
        ]
    if trajectories:
        lines += ["", "## Collapse guards: helps, then holds or collapses?", ""]
        lines += _guards_lines(trajectories)
        lines += [
            "",
            f"`{quality}` (greedy, held-out prompts) per iteration and seed. *Helps*: the track's best iterate beats",
            "SFT (paired bootstrap CI above 0); *collapses*: the final iterate is below that best (CI below 0).",
            "The gate column lists the acceptance gate's decisions; a rejected update carries the previous policy.",
            "",
            "![guards](plots/guards.png)",
        ]
    if stops:
        lines += ["", "## Adaptive K: where the loop stopped (`loop.stop`)", ""]
        lines += _adaptive_k_lines(stops)
        lines += [
            "",
            f"`{quality}` (greedy, held-out prompts). K_stop: the last policy trained; it was carried forward from then",
            "on. The rule sees no r*: it stops when RM k's accuracy on its held-out pairs of iteration k (demonstration",
            "vs policy k-1's rollouts) falls below `loop.stop_accuracy`. *Best k* is picked with r* on the evaluation",
            "prompts (optimistic). Regret: best − K_stop, a paired bootstrap CI over the seed's prompts; *within CI*: it",
            "contains 0. Trainings skipped: RM fits and RL updates not run, of 2K.",
        ]
    lines += ["", "## Every iteration", ""]
    lines += _markdown_table(all_rows(agg))
    if summary:
        lines += ["", "## Headline", "", "| quantity | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(summary.items())]
        lines += [
            "",
            "reward_recovery_ratio = (IRL gain in true reward over SFT) / (oracle gain), both at iteration K and",
            "averaged over seeds; the `_sampled` variant uses temperature-1 samples instead of greedy answers.",
        ]
    lines += [
        "",
        "## Figures",
        "",
        "Per iteration, seed means with 95% CI bands, IRL against SPIN and the oracle upper bound:",
        "",
        "![curves](plots/curves.png)",
        "",
        "Over-optimisation view: the true reward and the KL to SFT per IRL iteration, each on its own axis. A KL that",
        "keeps rising while the true reward falls flags reward hacking. The proxy reward is left out on purpose: each",
        "RM k is standardised on its own pairs, so proxy values of different iterations are not on one scale.",
        "",
        "![over-optimisation](plots/overoptimisation.png)",
        "",
    ]
    with atomic_file(out_dir / "report.md") as f:
        f.write("\n".join(lines))
    return summary, agg
