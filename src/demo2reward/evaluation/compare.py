"""`demo2reward-compare`: every track's reward accuracy against its win rate and true reward, across the pipeline
runs in MLflow (the report's final-iteration seed means) and the DVC experiments (their metrics/summary.json)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from demo2reward.core.artifacts import repo_root
from demo2reward.evaluation.results import HEADLINE, RECOVERY_SUFFIX
from demo2reward.tracking import pipeline_runs, tracking_uri

TRACKS = ("irl", "irl_guarded", "hybrid", "prefs_only", "spin", "oracle")
COMPARED = ("reward_accuracy", "win_rate_vs_demos", "true_reward_mean")


def compare_runs(experiment: str = "demo2reward") -> list[dict]:
    """One row per MLflow pipeline run and track: the final iteration's seed means, as the report logged them."""
    rows = []
    for r in pipeline_runs(experiment)[1]:
        for track in TRACKS:
            prefix = "" if track == "irl" else f"{track}/"
            values = {m: r.data.metrics.get(prefix + m) for m in COMPARED}
            if any(v is not None for v in values.values()):
                recovery = r.data.metrics.get(f"summary/reward_recovery_ratio{RECOVERY_SUFFIX.get(track, '-')}")
                rows.append({"source": "mlflow", "run": r.info.run_name, "track": track, **values, "recovery": recovery})
    return rows


def compare_link(ui: str, experiment: str = "demo2reward", limit: int = 10) -> str | None:
    """A link to the MLflow UI's comparison of the newest pipeline runs that have a report: their params and
    metrics side by side, and a Scatter Plot tab for reward accuracy against win rate. None when there is none."""
    import urllib.parse

    exp_id, runs = pipeline_runs(experiment, "metrics.reward_accuracy >= 0", limit)  # the report ran
    if not runs:
        return None
    ids = json.dumps([r.info.run_id for r in runs], separators=(",", ":"))
    query = urllib.parse.urlencode({"runs": ids, "experiments": json.dumps([exp_id])})
    return f"{ui.rstrip('/')}/#/compare-runs?{query}"


def compare_experiments(root: str | Path = ".") -> list[dict]:
    """One row per DVC experiment (and the workspace) and track, from its metrics/summary.json (`dvc exp show`)."""
    proc = subprocess.run(["dvc", "exp", "show", "--json"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        return []
    rows = []

    def visit(node, name: str | None = None) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item, name)
        elif isinstance(node, dict):
            name = node.get("name") or node.get("rev") or name
            summary = ((node.get("data") or {}).get("metrics") or {}).get("metrics/summary.json", {}).get("data")
            if summary:
                for track in TRACKS:
                    values = {long: summary.get(f"{track}_{short}") for long, short in HEADLINE.items()}
                    if any(v is not None for v in values.values()):
                        recovery = summary.get("reward_recovery_ratio") if track == "irl" else None
                        rows.append({"source": "dvc", "run": name, "track": track, **values, "recovery": recovery})
            for key in ("experiments", "revs"):
                visit(node.get(key), name)

    visit(json.loads(proc.stdout))
    return rows


def _print_table(rows: list[dict]) -> None:
    header = list(rows[0])
    widths = [max(len(h), *(len(_show(r.get(h))) for r in rows)) for h in header]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(_show(r.get(h)).ljust(w) for h, w in zip(header, widths, strict=True)))


def main(argv: list[str] | None = None) -> None:
    """`demo2reward-compare`: every track's reward accuracy against its win rate and true reward, across the pipeline
    runs in MLflow (final-iteration seed means) and the DVC experiments (their metrics/summary.json)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--experiment", default="demo2reward", help="MLflow experiment")
    ap.add_argument("--source", choices=("both", "mlflow", "dvc"), default="both")
    ap.add_argument("--ui", metavar="URL", help="print a link to the MLflow UI (`mlflow ui` at URL) comparing the runs")
    args = ap.parse_args(argv)
    if args.ui:
        link = compare_link(args.ui, args.experiment)
        print(link or f"no finished pipeline run with a report in MLflow experiment {args.experiment!r}")
        raise SystemExit(0 if link else 1)
    found = False
    if args.source in ("both", "mlflow"):
        if rows := compare_runs(args.experiment):
            print(f"MLflow pipeline runs ({tracking_uri()}): final iteration, seed means")
            _print_table(rows)
            found = True
        else:
            print(f"no pipeline runs in MLflow experiment {args.experiment!r} at {tracking_uri()}")
    if args.source in ("both", "dvc"):
        if rows := compare_experiments(repo_root()):
            print("\nDVC experiments (metrics/summary.json): final iteration, seed means")
            _print_table(rows)
            found = True
        else:
            print("no DVC experiments with metrics/summary.json")
    if not found:
        raise SystemExit(1)


def _show(v) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
