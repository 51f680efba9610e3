import json

import numpy as np
import pytest

from demo2reward.report import bootstrap_ci, summarise, write_report


def _write(d, name, **m):
    (d / f"{name}.json").write_text(json.dumps(m))


@pytest.fixture
def evals(tmp_path):
    d = tmp_path / "eval"
    d.mkdir()
    base = dict(win_rate_vs_demos=0.2, win_rate_vs_demos_sampled=0.1, true_reward_mean=0.2, true_reward_mean_sampled=0.0)
    _write(d, "sft", **base, reward_accuracy=0.55, kl_to_sft=0.0)
    _write(
        d,
        "irl_1",
        **{**base, "true_reward_mean": 0.4, "true_reward_mean_sampled": 0.3, "win_rate_vs_demos": 0.5},
        reward_accuracy=0.8,
        proxy_reward_mean=0.1,
    )
    _write(
        d,
        "irl_2",
        **{**base, "true_reward_mean": 0.5, "true_reward_mean_sampled": 0.4},
        reward_accuracy=0.78,
        proxy_reward_mean=0.3,
    )
    _write(d, "spin_1", **base, reward_accuracy=0.6)
    _write(d, "spin_2", **base, reward_accuracy=0.62)
    _write(d, "oracle_1", **{**base, "true_reward_mean": 0.6, "true_reward_mean_sampled": 0.6})
    _write(d, "oracle_2", **{**base, "true_reward_mean": 0.8, "true_reward_mean_sampled": 0.8})
    answers = tmp_path / "answers"
    answers.mkdir()
    rows = [
        {"true_reward": 0.5, "true_reward_sampled": 0.4, "win_vs_demo": w, "win_vs_demo_sampled": 0.0} for w in (0, 1, 0.5, 1)
    ]
    (answers / "irl_2.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d, answers


def test_report_renders_tables_figures_and_ratio(evals, tmp_path):
    summary = write_report(evals[0], tmp_path / "out", evals[1])
    assert summary["reward_recovery_ratio"] == pytest.approx((0.5 - 0.2) / (0.8 - 0.2))
    assert summary["reward_recovery_ratio_sampled"] == pytest.approx(0.4 / 0.8)
    assert summary["reward_accuracy_min"] == pytest.approx(0.78)
    assert summary["spin_reward_accuracy_final"] == pytest.approx(0.62)
    md = (tmp_path / "out" / "report.md").read_text()
    for row in ("| SFT |", "| IRL best (k=1) |", "| IRL final (k=2) |", "| SPIN final (k=2) |", "| Oracle (r*) k=2 |"):
        assert row in md
    assert "| 0.500 [0.500, 0.500] |" in md  # constant per-prompt rewards: a zero-width interval
    csv_lines = (tmp_path / "out" / "report.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,reward_accuracy") and len(csv_lines) == 1 + 7
    curve = json.loads((tmp_path / "out" / "curves" / "irl.json").read_text())
    assert [p["iteration"] for p in curve] == [0, 1, 2] and curve[2]["true_reward_mean"] == 0.5
    for png in ("curves.png", "overoptimisation.png"):
        assert (tmp_path / "out" / "plots" / png).read_bytes()[:4] == b"\x89PNG"


def test_bootstrap_ci_known_answers():
    assert bootstrap_ci([np.full(50, 0.3)]) == pytest.approx((0.3, 0.3))
    # Bernoulli(0.5) over 400 prompts: the 95% interval is about 0.5 ± 1.96·0.025.
    lo, hi = bootstrap_ci([np.tile([0.0, 1.0], 200)])
    assert lo == pytest.approx(0.451, abs=0.012) and hi == pytest.approx(0.549, abs=0.012)
    # Two seeds that disagree: the seed-level resampling widens the interval beyond either seed's own.
    lo2, hi2 = bootstrap_ci([np.tile([0.0, 1.0], 200), np.tile([1.0, 1.0], 200)])
    assert lo2 < 0.6 and hi2 > 0.95
    assert np.isnan(bootstrap_ci([])[0])


def test_summary_without_oracle_has_no_ratio():
    m = {"true_reward_mean": 0.1, "true_reward_mean_sampled": 0, "win_rate_vs_demos": 0, "win_rate_vs_demos_sampled": 0}
    s = summarise({"sft": {0: m}, "irl": {1: {**m, "true_reward_mean": 0.2, "reward_accuracy": 0.7}}})
    assert "reward_recovery_ratio" not in s and s["irl_gain_true_reward_mean"] == pytest.approx(0.1)


def test_benchmark_scores_join_table_1_when_enabled(evals, tmp_path):
    mt = tmp_path / "mtbench.json"
    mt.write_text(json.dumps({"enabled": True, "sft": {"overall": 2.5}, "irl": {"overall": 3.25}, "spin": {"overall": 3.0}}))
    lb = tmp_path / "leaderboard.json"
    lb.write_text(json.dumps({"enabled": False}))
    write_report(evals[0], tmp_path / "out", evals[1], mt, lb)
    md = (tmp_path / "out" / "report.md").read_text()
    table1 = md.split("## Every iteration")[0]
    assert "mtbench_overall" in table1 and "leaderboard_average" not in table1
    assert "| 3.250 |" in next(line for line in table1.splitlines() if line.startswith("| IRL final"))
