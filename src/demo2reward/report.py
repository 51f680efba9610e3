"""The report: the methods against the metrics with bootstrap confidence intervals, per-iteration curves
(JSON for `dvc plots`, PNG for people) and the headline ratios."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from demo2reward.artifacts import atomic_file, read_json, read_jsonl, write_json

COLUMNS = (
    "reward_accuracy",
    "reward_accuracy_policy_pairs",
    "win_rate_vs_demos",
    "win_rate_vs_demos_sampled",
    "true_reward_mean",
    "true_reward_mean_sampled",
    "proxy_reward_mean",
    "kl_to_sft",
    "response_length_mean",
)
# Metric -> the per-prompt field of data/answers/<method>.jsonl it averages (for bootstrap CIs).
PER_PROMPT = {
    "win_rate_vs_demos": "win_vs_demo",
    "win_rate_vs_demos_sampled": "win_vs_demo_sampled",
    "true_reward_mean": "true_reward",
    "true_reward_mean_sampled": "true_reward_sampled",
}
CURVES = ("reward_accuracy", "win_rate_vs_demos", "true_reward_mean", "true_reward_mean_sampled")
TRACKS = (("irl", "IRL"), ("spin", "SPIN"), ("oracle", "Oracle (r*)"))


def bootstrap_ci(groups: list[np.ndarray], n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the grand mean, resampling groups (seeds) and then items (prompts) within each.

    With one group this is the ordinary bootstrap over prompts.
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


def load_evaluations(eval_dir: str | Path) -> dict[str, dict[int, dict]]:
    """{track: {k: metrics}} from `sft.json` (k = 0) and `<track>_<k>.json`."""
    eval_dir = Path(eval_dir)
    tracks: dict[str, dict[int, dict]] = {}
    for path in sorted(eval_dir.glob("*.json")):
        m = re.fullmatch(r"([a-z]+)_(\d+)", path.stem)
        if m:
            tracks.setdefault(m.group(1), {})[int(m.group(2))] = read_json(path)
    sft = eval_dir / "sft.json"
    if sft.exists():
        tracks["sft"] = {0: read_json(sft)}
    return tracks


def attach_intervals(tracks: dict[str, dict[int, dict]], answers_dir: str | Path | None) -> None:
    """Add `<metric>_ci` = [lo, hi] to each evaluation whose per-prompt answers are available."""
    if answers_dir is None:
        return
    for track, by_k in tracks.items():
        for k, metrics in by_k.items():
            path = Path(answers_dir) / (f"{track}_{k}.jsonl" if track != "sft" else "sft.jsonl")
            if not path.exists():
                continue
            rows = read_jsonl(path)
            for metric, field in PER_PROMPT.items():
                if rows and field in rows[0]:
                    metrics[f"{metric}_ci"] = list(bootstrap_ci([np.array([r[field] for r in rows])]))


def _fmt(v) -> str:
    return "–" if v is None or v != v else f"{v:.3f}"


def _cell(m: dict, column: str) -> str:
    ci = m.get(f"{column}_ci")
    return _fmt(m.get(column)) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def summarise(tracks: dict[str, dict[int, dict]]) -> dict[str, float]:
    """Headline numbers: gains at the final iteration K and the reward-recovery ratio against the oracle."""
    out: dict[str, float] = {}
    sft = tracks.get("sft", {}).get(0)
    irl, oracle = tracks.get("irl", {}), tracks.get("oracle", {})
    if not (sft and irl):
        return out
    final = irl[max(irl)]
    for key in ("true_reward_mean", "true_reward_mean_sampled", "win_rate_vs_demos", "win_rate_vs_demos_sampled"):
        out[f"irl_gain_{key}"] = final[key] - sft[key]
        if oracle:
            gain = oracle[max(oracle)][key] - sft[key]
            out[f"oracle_gain_{key}"] = gain
            if key.startswith("true_reward"):
                suffix = key.removeprefix("true_reward_mean")
                out[f"reward_recovery_ratio{suffix}"] = out[f"irl_gain_{key}"] / gain if gain > 0 else float("nan")
    spin = tracks.get("spin", {})
    if spin:
        for key in ("true_reward_mean", "true_reward_mean_sampled", "win_rate_vs_demos", "win_rate_vs_demos_sampled"):
            out[f"spin_gain_{key}"] = spin[max(spin)][key] - sft[key]
        out["spin_reward_accuracy_final"] = spin[max(spin)].get("reward_accuracy", float("nan"))
    accs = [irl[k].get("reward_accuracy", float("nan")) for k in sorted(irl)]
    out["reward_accuracy_min"] = min(accs)
    out["irl_reward_accuracy_final"] = accs[-1]
    out["K"] = float(max(irl))
    return out


def table1_rows(tracks) -> list[tuple[str, dict]]:
    """Table 1: SFT, then best and final iteration of each track (best = highest win rate vs demos)."""
    rows = [("SFT", tracks["sft"][0])] if "sft" in tracks else []
    for track, label in TRACKS:
        by_k = tracks.get(track, {})
        if not by_k:
            continue
        best = max(by_k, key=lambda k: by_k[k].get("win_rate_vs_demos", float("-inf")))
        rows.append((f"{label} best (k={best})", by_k[best]))
        rows.append((f"{label} final (k={max(by_k)})", by_k[max(by_k)]))
    return rows


def all_rows(tracks) -> list[tuple[str, dict]]:
    rows = [("SFT", tracks["sft"][0])] if "sft" in tracks else []
    for track, label in TRACKS:
        rows += [(f"{label} k={k}", tracks[track][k]) for k in sorted(tracks.get(track, {}))]
    return rows


def curves(tracks) -> dict[str, list[dict]]:
    """Per-track records `{iteration, metric...}`, SFT as iteration 0 of each track (for `dvc plots`)."""
    out = {}
    for track, _ in TRACKS:
        if track not in tracks:
            continue
        points = {**({0: tracks["sft"][0]} if "sft" in tracks else {}), **tracks[track]}
        keys = (*CURVES, "proxy_reward_mean")
        out[track] = [{"iteration": k, **{c: points[k][c] for c in keys if c in points[k]}} for k in sorted(points)]
    return out


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def plot_curves(curve_data: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4))
    for ax, metric in zip(axes, CURVES, strict=True):
        for track, points in curve_data.items():
            pts = [p for p in points if p.get(metric) is not None]
            ax.plot([p["iteration"] for p in pts], [p[metric] for p in pts], marker="o", label=track)
        ax.set_title(metric)
        ax.set_xlabel("iteration k (0 = SFT)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    _save(fig, path)


def plot_overoptimisation(curve_data: dict[str, list[dict]], path: Path) -> None:
    """Proxy (learned) reward against true reward per IRL iteration: a rising proxy with a falling truth is hacking."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in curve_data.get("irl", []) if "proxy_reward_mean" in p]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([p["proxy_reward_mean"] for p in pts], [p["true_reward_mean"] for p in pts], marker="o")
    for p in pts:
        ax.annotate(f"k={p['iteration']}", (p["proxy_reward_mean"], p["true_reward_mean"]))
    ax.set_xlabel("proxy reward (RM k, greedy answers)")
    ax.set_ylabel("true reward r* (greedy answers)")
    ax.set_title("Over-optimisation view (IRL)")
    ax.grid(alpha=0.3)
    _save(fig, path)


def _csv(rows: list[tuple[str, dict]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["method", *COLUMNS, *(f"{c}_ci_{end}" for c in PER_PROMPT for end in ("lo", "hi"))])
    for name, m in rows:
        cis = [m.get(f"{c}_ci", [None, None])[i] for c in PER_PROMPT for i in (0, 1)]
        writer.writerow([name, *(m.get(c) for c in COLUMNS), *cis])
    return buf.getvalue()


def _markdown_table(rows: list[tuple[str, dict]], extra: tuple[str, ...] = ()) -> list[str]:
    columns = (*COLUMNS, *extra)
    lines = ["| method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    return lines + [f"| {name} | " + " | ".join(_cell(m, c) for c in columns) + " |" for name, m in rows]


def attach_benchmarks(tracks, benchmarks: dict[str, dict]) -> tuple[str, ...]:
    """Put MT-Bench / leaderboard scores on SFT and the final IRL/SPIN rows; returns the columns that got any."""
    finals = {"sft": tracks.get("sft", {}).get(0)}
    for track in ("irl", "spin"):
        if tracks.get(track):
            finals[track] = tracks[track][max(tracks[track])]
    columns = []
    for column, (scores, key) in benchmarks.items():
        if not scores.get("enabled"):
            continue
        columns.append(column)
        for policy, m in finals.items():
            if m is not None and policy in scores:
                m[column] = scores[policy][key]
    return tuple(columns)


def write_report(
    eval_dir: str | Path,
    out_dir: str | Path,
    answers_dir: str | Path | None = None,
    mtbench: str | Path | None = None,
    leaderboard: str | Path | None = None,
) -> dict[str, float]:
    out_dir = Path(out_dir)
    tracks = load_evaluations(eval_dir)
    attach_intervals(tracks, answers_dir)
    benchmarks = {
        "mtbench_overall": (read_json(mtbench) if mtbench and Path(mtbench).exists() else {}, "overall"),
        "leaderboard_average": (read_json(leaderboard) if leaderboard and Path(leaderboard).exists() else {}, "average"),
    }
    extra = attach_benchmarks(tracks, benchmarks)
    summary = summarise(tracks)
    curve_data = curves(tracks)
    for track, points in curve_data.items():
        write_json(out_dir / "curves" / f"{track}.json", points)
    plot_curves(curve_data, out_dir / "plots" / "curves.png")
    plot_overoptimisation(curve_data, out_dir / "plots" / "overoptimisation.png")
    write_json(out_dir / "summary.json", summary)
    with atomic_file(out_dir / "report.csv") as f:
        f.write(_csv(all_rows(tracks)))

    lines = ["# demo2reward report", "", "Every number is computed from `metrics/eval/*.json` by `stages/report.py`.", ""]
    lines += ["## Table 1: methods at their best and final iteration", ""]
    lines += _markdown_table(table1_rows(tracks), extra)
    lines += [
        "",
        "Brackets: 95% bootstrap confidence interval over held-out prompts. *Best* is the iteration with the highest",
        "`win_rate_vs_demos`, picked on the same held-out prompts, so it is optimistic; *final* is iteration K.",
        "SFT's `reward_accuracy` is its implicit reward log π_sft − log π_base (DPO-style); SPIN's is its implicit",
        "reward β·log(π_k / π_{k-1}); IRL's is its explicit reward model's. The oracle track has no learned reward.",
        "",
        "## Every iteration",
        "",
    ]
    lines += _markdown_table(all_rows(tracks))
    if summary:
        lines += ["", "## Headline", "", "| quantity | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(summary.items())]
        lines += [
            "",
            "reward_recovery_ratio = (IRL gain in true reward over SFT) / (oracle gain), both at iteration K;",
            "the `_sampled` variant uses temperature-1 samples instead of greedy answers.",
        ]
    lines += [
        "",
        "## Figures",
        "",
        "Per iteration, IRL against SPIN and the oracle upper bound:",
        "",
        "![curves](plots/curves.png)",
        "",
        "Over-optimisation view: the learned (proxy) reward against the true reward per IRL iteration.",
        "A proxy that rises while the true reward falls flags reward hacking.",
        "",
        "![over-optimisation](plots/overoptimisation.png)",
        "",
    ]
    with atomic_file(out_dir / "report.md") as f:
        f.write("\n".join(lines))
    return summary
