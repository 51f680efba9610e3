"""The report's figures (PNG, for people; `dvc plots` draws the JSON curves): seed means per iteration with CI
bands, the over-optimisation view, and the per-seed guard trajectories."""

from __future__ import annotations

from pathlib import Path

from demo2reward.core.artifacts import atomic_file
from demo2reward.evaluation.results import CURVES, LABELS, TRACKS, Aggregated


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> None:
    fig.tight_layout(rect=rect)
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    pyplot().close(fig)


def _iteration_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("iteration k (0 = SFT)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


FALLBACK_CURVES = ("kl_to_sft", "response_length_mean")  # what every run has, for a task with no gold reward nor pairs


def plot_curves(agg: Aggregated, path: Path) -> None:
    """Seed mean per iteration with its 95% CI band, one line per track; a panel per metric that the run has."""
    plt = pyplot()
    present = {key for by_k in agg.values() for m in by_k.values() for key in m}
    panels = [m for m in CURVES if m in present] or [m for m in FALLBACK_CURVES if m in present]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    axes = axes[0]
    for ax, metric in zip(axes, panels, strict=True):
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
    if legend:
        fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    save_figure(fig, path, rect=(0, 0.08, 1, 1))


def plot_overoptimisation(agg: Aggregated, path: Path) -> None:
    """Per IRL iteration: the true reward r* (left axis) and KL to SFT (right axis), each in its own units.

    The proxy reward is not plotted across iterations: each RM k is standardised on its own pairs, so proxy values of
    different k are on different scales, and a line through them would suggest a trend that is not there.
    """
    plt = pyplot()
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
    save_figure(fig, path)


def plot_guards(trajectories: list[dict], path: Path, metric: str = "true_reward_mean") -> None:
    """`metric` per iteration, one line per seed, without and with the guards; x marks a rejected update."""
    plt = pyplot()
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
    save_figure(fig, path)
