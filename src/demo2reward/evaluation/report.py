"""The report: the methods against the metrics as seed means with confidence intervals, the paper's claims, the
collapse-guard and adaptive-K sections, the per-iteration curves (JSON for `dvc plots`, PNG for people) and the
headline numbers, written as report.md, report.csv, summary.json and summary_detail.json.

The pieces live by concern: `results` (gathering and aggregation), `statistics`, `claims`, `dynamics` (per-seed
trajectories) and `plots`; this module writes the files and the prose.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from demo2reward.core.artifacts import atomic_file, read_json, write_json
from demo2reward.evaluation.claims import claims, verdict
from demo2reward.evaluation.dynamics import adaptive_k, guard_trajectories
from demo2reward.evaluation.plots import plot_curves, plot_guards, plot_overoptimisation
from demo2reward.evaluation.results import (
    COLUMNS,
    CURVES,
    LABELS,
    LEARNED,
    TRACKS,
    Aggregated,
    aggregate,
    best_k,
    curves,
    final_k,
    headline,
    load_answers,
    load_evaluations,
    quality_metric,
    recovery_by_seed,
    summarise,
)
from demo2reward.evaluation.statistics import MIN_SEEDS_FOR_VERDICT, seed_summary
from demo2reward.tasks.base import TaskInfo, read_task_info


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
            f"| [{_fmt(r['ci'][0])}, {_fmt(r['ci'][1])}] | {per_seed} | {verdict(r)} |"
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
    task_dir: str | Path | None = None,
) -> tuple[dict[str, float], Aggregated]:
    """Write report.md, report.csv, summary.json (headline), summary_detail.json, curves/*.json and plots/*.png;
    return the detailed summary and the seed-aggregated metrics. `task_dir`'s task.json says why a metric that the
    task cannot give (reward accuracy without preference pairs, true reward without a gold reward) is absent."""
    out_dir = Path(out_dir)
    task = read_task_info(task_dir) if task_dir is not None else None
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
        "(DPO-style); "
        + ("SPIN's is its implicit reward β·log(π_k / π_{k-1}); " if "spin" in agg else "")
        + "IRL's is its explicit reward model's.",
    ]
    if "oracle" in agg:
        lines += ["The oracle track trains on the true reward r* (an upper bound) and has no learned reward."]
    lines += _absent_lines(agg, task)
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
        f"Per iteration, seed means with 95% CI bands, {_against(agg)}:",
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


def _against(agg: Aggregated) -> str:
    """The figure's tracks, in words: "IRL against SPIN and the oracle upper bound" when every baseline ran."""
    baselines = [name for track, name in (("spin", "SPIN"), ("oracle", "the oracle upper bound")) if track in agg]
    return "IRL against " + " and ".join(baselines) if baselines else "IRL and SFT"


def _absent_lines(agg: Aggregated, task: TaskInfo | None) -> list[str]:
    """Why a column the paper reports is missing from this run's tables, from the task's own account (task.json)."""
    present = {key for by_k in agg.values() for m in by_k.values() for key in m}
    lines = []
    if task is not None and "reward_accuracy" not in present:
        lines.append(f"**Reward accuracy is absent:** {task.why_absent('heldout_prefs')}; it is measured on held-out")
        lines.append("human preference pairs, which this run does not have. Every other metric was computed.")
    if task is not None and "true_reward_mean" not in present:
        lines.append(f"**The true reward, the gold win rate and the oracle track are absent:** {task.why_absent('gold_reward')}.")
    return ["", *lines] if lines else []


def mirror_report(run, summary: dict[str, float], agg: Aggregated) -> None:
    """The report's seed means on the pipeline run (IRL's unprefixed, SFT at step 0), so that the MLflow UI compares
    experiments by them; `run` is the report stage's run (`tracking.StageRun`)."""
    run.log_metrics(summary)
    for track, by_k in agg.items():
        for k, m in by_k.items():
            means = {c: m[c] for c in (*CURVES, "kl_to_sft", "proxy_reward_mean") if c in m}
            run.log_pipeline_metrics(means, step=k, prefix="" if track in ("sft", "irl") else f"{track}/")
    run.log_pipeline_metrics(summary, step=final_k(agg, "irl") or 0, prefix="summary/")
