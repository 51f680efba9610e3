"""Statistics over seeds and prompts: t-intervals of seed means, and bootstrap intervals over prompts."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


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
