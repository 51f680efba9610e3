"""What a human preference label is worth next to a demonstration, from a `reward.human_pairs` sweep.

Each experiment of the sweep (`docs/ablations.md`) runs the `hybrid` and `prefs_only` tracks with N human pairs;
its report logs every track's reward-recovery ratio per seed to its MLflow pipeline run. This module reads those
runs, one per N plus the default run (N = 0, the `irl` track), and writes:

- the recovery ratio against N for IRL (demonstrations only), hybrid and prefs-only, with t-intervals over seeds;
- the exchange rate: N*, the number of preference labels with which prefs-only recovers as much as IRL does from
  its demonstrations (log-linear between the swept N), divided by the number of demonstrations. Its CI resamples
  the seeds (a bootstrap over seed means); a resample whose prefs-only curve never reaches IRL's ratio within the
  swept N counts as above the range, and the CI then says so instead of inventing a number.

`demo2reward-exchange` is its command line; the runs must share every param but `reward.human_pairs`,
`irl_tracks` and `reward.human_weight`, or it refuses to mix them.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from demo2reward.core.artifacts import atomic_file, write_json
from demo2reward.evaluation.results import RECOVERY_SUFFIX
from demo2reward.evaluation.statistics import seed_interval, seed_summary

SWEPT = ("reward.human_pairs", "irl_tracks", "reward.human_weight")  # what may differ between one sweep's runs
TRACK_OF_SUFFIX = {suffix: track for track, suffix in RECOVERY_SUFFIX.items()}


class SweepError(ValueError):
    """The MLflow runs do not make one sweep (missing points, mixed settings, no common seeds)."""


def recovery_of(metrics: Mapping[str, float]) -> dict[str, dict[int, float]]:
    """track -> seed -> recovery ratio, from a pipeline run's `summary/reward_recovery_ratio<suffix>_seed<S>`."""
    out: dict[str, dict[int, float]] = {}
    for key, value in metrics.items():
        head, sep, seed = key.removeprefix("summary/reward_recovery_ratio").rpartition("_seed")
        if key.startswith("summary/reward_recovery_ratio") and sep and seed.isdigit() and head in TRACK_OF_SUFFIX:
            out.setdefault(TRACK_OF_SUFFIX[head], {})[int(seed)] = float(value)
    return out


def sweep_points(runs: Sequence) -> tuple[dict[int, dict[str, dict[int, float]]], dict[int, str], dict[str, str]]:
    """The newest default run (N = 0, with the irl track) and the newest run per N > 0 (with prefs_only), which
    must share the default run's params but the swept ones.

    Returns N -> track -> seed -> recovery, N -> run name, and the shared params."""
    candidates = []
    for run in runs:  # newest first
        params = dict(run.data.params)
        if "reward.human_pairs" in params:
            n = int(params["reward.human_pairs"])
            recovery = recovery_of(run.data.metrics)
            if ("irl" if n == 0 else "prefs_only") in recovery:
                candidates.append((n, run, recovery, {k: v for k, v in params.items() if k not in SWEPT}))
    anchor = next((c for c in candidates if c[0] == 0), None)
    if anchor is None:
        raise SweepError("no finished default run (reward.human_pairs: 0, the irl track) with per-seed recovery ratios")
    shared = anchor[3]
    points: dict[int, dict[str, dict[int, float]]] = {0: anchor[2]}
    names: dict[int, str] = {0: anchor[1].info.run_name}
    for n, run, recovery, fixed in candidates:
        if n in points:
            continue
        if fixed != shared:
            differ = sorted(k for k in set(fixed) | set(shared) if fixed.get(k) != shared.get(k))
            raise SweepError(
                f"run {run.info.run_name} (N = {n}) differs from the default run {names[0]} in {', '.join(differ[:5])}"
            )
        points[n], names[n] = recovery, run.info.run_name
    if len(points) < 3:
        raise SweepError(f"a sweep needs at least two N > 0 besides the default run; found N = {sorted(points)}")
    return points, names, shared


def crossing(ns: Sequence[int], curve: Sequence[float], target: float) -> float:
    """The smallest N at which `curve` (over increasing `ns`) reaches `target`, log-linear between points;
    -inf when it already does at the first N, +inf when it never does."""
    if curve[0] >= target:
        return -math.inf
    for (n0, c0), (n1, c1) in zip(zip(ns, curve, strict=True), zip(ns[1:], curve[1:], strict=True), strict=False):
        if c1 >= target:
            t = (target - c0) / (c1 - c0)
            return float(math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))))
    return math.inf


def exchange_rate(
    irl: Mapping[int, float],
    prefs_only: Mapping[int, Mapping[int, float]],
    n_demos: int,
    n_boot: int = 4000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """N* (labels that match IRL's recovery) and N* / n_demos, with a bootstrap CI over the common seeds."""
    ns = sorted(prefs_only)
    seeds = sorted(set(irl).intersection(*(set(prefs_only[n]) for n in ns)))
    if len(seeds) < 2:
        raise SweepError(f"the sweep's runs share {len(seeds)} seed(s); the exchange rate needs at least 2")
    a = np.array([irl[s] for s in seeds])
    p = np.array([[prefs_only[n][s] for s in seeds] for n in ns])  # N x seeds
    point = crossing(ns, list(p.mean(axis=1)), float(a.mean()))
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(len(seeds), size=len(seeds))
        draws[b] = crossing(ns, list(p[:, idx].mean(axis=1)), float(a[idx].mean()))
    alpha = (1 - level) / 2
    lo, hi = (float(np.quantile(draws, q, method="inverted_cdf")) for q in (alpha, 1 - alpha))
    return {
        "n_demos": n_demos,
        "seeds": seeds,
        "labels": point,
        "labels_ci": [lo, hi],
        "labels_per_demo": point / n_demos,
        "labels_per_demo_ci": [lo / n_demos, hi / n_demos],
        "swept": ns,
        "resamples_above_range": float(np.mean(draws == math.inf)),
        "resamples_below_range": float(np.mean(draws == -math.inf)),
    }


def _bound(v: float, ns: Sequence[int], scale: float = 1.0) -> str:
    """N* (or N* per demonstration with `scale` = the number of demonstrations), or the swept range's bound."""
    shown = v if math.isfinite(v) else ns[-1] if v > 0 else ns[0]
    number = f"{shown:.0f}" if scale == 1 else f"{shown / scale:.3g}"
    return number if math.isfinite(v) else f"{'>' if v > 0 else '<'} {number}"


def headline(rate: dict) -> str:
    """The sentence: one demonstration is worth about X preference labels, with its CI, or the bound the sweep
    allows when prefs-only never (or always) matches IRL within the swept N."""
    ns, n = rate["swept"], rate["n_demos"]
    lo, hi = rate["labels_ci"]
    ci = f"95% CI [{_bound(lo, ns, n)}, {_bound(hi, ns, n)}], bootstrap over {len(rate['seeds'])} seeds"
    if rate["labels"] == math.inf:
        return (
            f"One demonstration is worth more than {ns[-1] / n:.3g} preference labels on this task: with up to "
            f"{ns[-1]} labels, prefs-only never recovers as much of the oracle's gain as IRL does from {n} "
            f"demonstrations ({ci}; {rate['resamples_above_range']:.0%} of the resamples above the range)."
        )
    if rate["labels"] == -math.inf:
        return (
            f"One demonstration is worth fewer than {ns[0] / n:.3g} preference labels on this task: {ns[0]} labels "
            f"already recover as much as IRL does from {n} demonstrations ({ci})."
        )
    return (
        f"One demonstration is worth about {rate['labels'] / n:.3g} preference labels on this task ({ci}): "
        f"prefs-only reaches IRL's recovery with {rate['labels']:.0f} labels, IRL uses {n} demonstrations."
    )


def summarise(points: Mapping[int, Mapping[str, Mapping[int, float]]], n_demos: int) -> dict:
    """Per N and track, the seed mean and t-interval of the recovery ratio; the paired hybrid − prefs-only and
    hybrid − IRL differences; and the exchange rate."""
    irl = points[0]["irl"]
    swept = {n: p for n, p in points.items() if n > 0}
    curves: dict[str, list[dict]] = {}
    for n, by_track in sorted(points.items()):
        for track, by_seed in sorted(by_track.items()):
            if n > 0 and track not in ("hybrid", "prefs_only"):
                continue
            curves.setdefault(track, []).append({"N": n, **seed_summary(by_seed)})
    differences = []
    for n, by_track in sorted(swept.items()):
        for other, ref in (("prefs_only", by_track.get("prefs_only")), ("irl", irl)):
            hybrid = by_track.get("hybrid")
            if hybrid and ref:
                seeds = sorted(set(hybrid) & set(ref))
                d = [hybrid[s] - ref[s] for s in seeds]
                if len(d) > 1:
                    differences.append({"N": n, "minus": other, "mean": float(np.mean(d)), "ci": list(seed_interval(d))})
    rate = exchange_rate(irl, {n: p["prefs_only"] for n, p in swept.items()}, n_demos)
    return {"curves": curves, "differences": differences, "exchange": rate, "headline": headline(rate)}


def plot(result: dict, path: Path) -> None:
    from demo2reward.evaluation.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    irl = result["curves"]["irl"][0]
    ns = result["exchange"]["swept"]
    ax.axhline(irl["mean"], color="C0", label=f"IRL: {result['exchange']['n_demos']} demonstrations, no labels")
    ax.axhspan(*irl["ci"], color="C0", alpha=0.15)
    shown = (("hybrid", "hybrid: demonstrations + N labels"), ("prefs_only", "prefs-only: N labels (RLHF)"))
    for i, (track, label) in enumerate(shown):
        pts = result["curves"].get(track, [])
        if pts:
            x = [p["N"] for p in pts]
            y = [p["mean"] for p in pts]
            err = [[p["mean"] - p["ci"][0] for p in pts], [p["ci"][1] - p["mean"] for p in pts]]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=f"C{i + 1}", label=label)
    labels = result["exchange"]["labels"]
    if math.isfinite(labels):
        ax.axvline(labels, color="grey", linestyle="--", label=f"N* ≈ {labels:.0f} labels")
    ax.axhline(0, color="black", linewidth=0.8, linestyle=":", label="SFT (0); the oracle is 1")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("human preference pairs N (reward.human_pairs)")
    ax.set_ylabel("reward-recovery ratio at K (seed mean, 95% t-CI)")
    ax.set_title("What a preference label is worth next to a demonstration", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)


def _json_rate(rate: dict) -> dict:
    """The rate with an out-of-range N* (±inf, which JSON lacks) written as the bound, e.g. "> 1000"."""
    ns, n = rate["swept"], rate["n_demos"]

    def show(v: float, scale: float = 1.0) -> float | str:
        return v / scale if math.isfinite(v) else _bound(v, ns, scale)

    return {
        **rate,
        "labels": show(rate["labels"]),
        "labels_ci": [show(v) for v in rate["labels_ci"]],
        "labels_per_demo": show(rate["labels"], n),
        "labels_per_demo_ci": [show(v, n) for v in rate["labels_ci"]],
    }


def write(result: dict, names: Mapping[int, str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs = {str(n): name for n, name in sorted(names.items())}
    write_json(out / "exchange.json", {**result, "exchange": _json_rate(result["exchange"]), "runs": runs})
    plot(result, out / "exchange.png")
    rows = ["| N | track | recovery ratio at K | per seed |", "|---|---|---|---|"]
    for track, pts in result["curves"].items():
        for p in pts:
            seeds = ", ".join(f"{s}: {v:.3f}" for s, v in p["per_seed"].items())
            rows.append(f"| {p['N']} | {track} | {p['mean']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}] | {seeds} |")
    diffs = [
        f"| {d['N']} | hybrid − {d['minus']} | {d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] |"
        for d in result["differences"]
    ]
    lines = [
        "# Demonstrations against preference labels",
        "",
        f"**{result['headline']}**",
        "",
        rows[0],
        *rows[1:],
        "",
        "| N | difference | recovery ratio, paired over seeds |",
        "|---|---|---|",
        *diffs,
        "",
        "MLflow pipeline runs: " + ", ".join(f"N = {n}: `{name}`" for n, name in sorted(names.items())),
        "",
        "![exchange](exchange.png)",
        "",
    ]
    with atomic_file(out / "exchange.md") as f:
        f.write("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    """`demo2reward-exchange`: the exchange rate of demonstrations for preference labels from the MLflow runs of a
    reward.human_pairs sweep (docs/ablations.md), written to --out as exchange.{md,json,png}."""
    from demo2reward.tracking import pipeline_runs, tracking_uri

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--experiment", default="demo2reward", help="MLflow experiment")
    ap.add_argument("--out", type=Path, default=Path("metrics/human_pairs"))
    args = ap.parse_args(argv)
    _, runs = pipeline_runs(args.experiment, "attributes.status = 'FINISHED'")
    try:
        points, names, shared = sweep_points(runs)
        if not int(shared.get("task.n_train", 0)):
            raise SweepError("the runs carry no task.n_train param")
        result = summarise(points, int(shared["task.n_train"]))
    except SweepError as err:
        raise SystemExit(f"demo2reward-exchange: {err} (MLflow store {tracking_uri()})") from None
    write(result, names, args.out)
    print(result["headline"])
    print(f"written: {args.out}/exchange.md, exchange.json, exchange.png")


if __name__ == "__main__":
    main()
