"""The report: a table of methods against metrics, per-iteration curves (JSON for `dvc plots`, PNG for people)."""

from __future__ import annotations

import re
from pathlib import Path

from demo2reward.artifacts import atomic_file, read_json, write_json

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
CURVES = ("reward_accuracy", "win_rate_vs_demos", "true_reward_mean", "true_reward_mean_sampled")


def load_evaluations(eval_dir: str | Path) -> dict[str, dict[int, dict]]:
    """{track: {k: metrics}} from `sft.json` (k = 0 of every track) and `<track>_<k>.json`."""
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


def _fmt(v) -> str:
    return "–" if v is None or v != v else f"{v:.3f}"


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
    accs = [irl[k].get("reward_accuracy", float("nan")) for k in sorted(irl)]
    out["reward_accuracy_min"] = min(accs)
    out["K"] = float(max(irl))
    return out


def _rows(tracks) -> list[tuple[str, dict]]:
    rows = [("SFT", tracks["sft"][0])] if "sft" in tracks else []
    for track, label in (("irl", "IRL"), ("spin", "SPIN"), ("oracle", "Oracle (r*)")):
        rows += [(f"{label} k={k}", tracks[track][k]) for k in sorted(tracks.get(track, {}))]
    return rows


def curves(tracks) -> dict[str, list[dict]]:
    """Per-track records `{iteration, metric...}`, SFT as iteration 0 of each track (for `dvc plots`)."""
    out = {}
    for track in ("irl", "spin", "oracle"):
        if track not in tracks:
            continue
        points = {**({0: tracks["sft"][0]} if "sft" in tracks else {}), **tracks[track]}
        out[track] = [{"iteration": k, **{c: points[k].get(c) for c in CURVES if c in points[k]}} for k in sorted(points)]
    return out


def plot(curve_data: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVES), figsize=(4 * len(CURVES), 3.4))
    for ax, metric in zip(axes, CURVES, strict=True):
        for track, points in curve_data.items():
            xs = [p["iteration"] for p in points if p.get(metric) is not None]
            ys = [p[metric] for p in points if p.get(metric) is not None]
            ax.plot(xs, ys, marker="o", label=track)
        ax.set_title(metric)
        ax.set_xlabel("iteration k (0 = SFT)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def write_report(eval_dir: str | Path, out_dir: str | Path) -> dict[str, float]:
    out_dir = Path(out_dir)
    tracks = load_evaluations(eval_dir)
    summary = summarise(tracks)
    curve_data = curves(tracks)
    for track, points in curve_data.items():
        write_json(out_dir / "curves" / f"{track}.json", points)
    plot(curve_data, out_dir / "plots" / "curves.png")
    write_json(out_dir / "summary.json", summary)

    lines = ["# demo2reward report", "", "Every number is computed from `metrics/eval/*.json` by `stages/report.py`.", ""]
    lines += ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in _rows(tracks):
        lines.append(f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in COLUMNS) + " |")
    lines += [
        "",
        "SFT's `reward_accuracy` is its implicit reward log π_sft − log π_base (DPO-style); SPIN's is its implicit",
        "reward β·log(π_k / π_{k-1}). IRL's is its explicit reward model's. The oracle track has no learned reward.",
        "",
    ]
    if summary:
        lines += ["## Headline", "", "| quantity | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in sorted(summary.items())]
        lines += [
            "",
            "reward_recovery_ratio = (IRL gain in true reward over SFT) / (oracle gain), both at iteration K;",
            "the `_sampled` variant uses temperature-1 samples instead of greedy answers.",
        ]
    lines += ["", "## Curves", "", "![curves](plots/curves.png)", ""]
    with atomic_file(out_dir / "report.md") as f:
        f.write("\n".join(lines))
    return summary
