import json

import numpy as np
import pytest

from demo2reward.evaluation.claims import verdict
from demo2reward.evaluation.report import write_report
from demo2reward.evaluation.results import load_answers, load_evaluations, paired_difference, summarise
from demo2reward.evaluation.statistics import bootstrap_ci, seed_interval

BASE = dict(win_rate_vs_demos=0.2, win_rate_vs_demos_sampled=0.1, true_reward_mean=0.2, true_reward_mean_sampled=0.0)


def _write(d, seed, name, **m):
    (d / f"seed_{seed}").mkdir(parents=True, exist_ok=True)
    (d / f"seed_{seed}" / f"{name}.json").write_text(json.dumps(m))


def _answers(d, seed, name, true_rewards, wins):
    (d / f"seed_{seed}").mkdir(parents=True, exist_ok=True)
    rows = [
        {"true_reward": r, "true_reward_sampled": 0.0, "win_vs_demo": w, "win_vs_demo_sampled": 0.0}
        for r, w in zip(true_rewards, wins, strict=True)
    ]
    (d / f"seed_{seed}" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def evals(tmp_path):
    """Two seeds, K = 2; seed 1's IRL is 0.1 better than seed 0's everywhere. Stale seed 7 must be ignored."""
    d, a, t = tmp_path / "eval", tmp_path / "answers", tmp_path / "train"
    for seed, shift in ((0, 0.0), (1, 0.1)):
        _write(d, seed, "sft", **BASE, reward_accuracy=0.55, kl_to_sft=0.0)
        _answers(a, seed, "sft", [0.2] * 4, [0, 0, 0.5, 0])
        for k, (true, win) in {1: (0.4, 0.5), 2: (0.5, 0.25)}.items():
            m = {**BASE, "true_reward_mean": true + shift, "win_rate_vs_demos": win, "true_reward_mean_sampled": true - 0.1}
            _write(d, seed, f"irl_{k}", **m, reward_accuracy=0.8 - 0.02 * k, proxy_reward_mean=0.1 * k)
            _answers(a, seed, f"irl_{k}", [true + shift] * 4, [win] * 4)
            # With the guards: a peak at k = 1 and a collapse at k = 2 in seed 0; the gate rejected k = 2 in seed 1.
            g = {0: (0.6, 0.1), 1: (0.6, 0.6)}[seed][k - 1]
            _write(d, seed, f"irl_guarded_{k}", **{**m, "true_reward_mean": g}, reward_accuracy=0.7, proxy_reward_mean=0.1)
            _answers(a, seed, f"irl_guarded_{k}", [g] * 4, [win] * 4)
            (t / f"seed_{seed}").mkdir(parents=True, exist_ok=True)
            (t / f"seed_{seed}" / f"policy_irl_guarded_{k}.json").write_text(
                json.dumps({"gate_accepted": float(seed == 0 or k == 1)})
            )
            _write(d, seed, f"spin_{k}", **{**BASE, "true_reward_mean": 0.3}, reward_accuracy=0.6 + 0.01 * k)
            _answers(a, seed, f"spin_{k}", [0.3] * 4, [0.2] * 4)
            _write(d, seed, f"oracle_{k}", **{**BASE, "true_reward_mean": 0.6 + 0.2 * (k - 1), "true_reward_mean_sampled": 0.8})
    _write(d, 7, "irl_1", **{**BASE, "true_reward_mean": 99.0})
    _write(d, 0, "irl_3", **{**BASE, "true_reward_mean": 99.0})  # beyond K = 2: stale too
    return d, a, t


def test_report_renders_every_row_and_figure_over_seeds(evals, tmp_path):
    d, a, t = evals
    summary, agg = write_report(d, tmp_path / "out", a, train_dir=t, seeds=[0, 1], max_k=2)
    assert agg["irl"][2]["true_reward_mean"] == pytest.approx(0.55) and agg["irl"][2]["n_seeds"] == 2
    assert agg["irl"][2]["true_reward_mean_seeds"] == pytest.approx([0.5, 0.6])
    assert summary["seeds"] == 2 and summary["K"] == 2
    assert summary["reward_recovery_ratio"] == pytest.approx((0.55 - 0.2) / (0.8 - 0.2))
    assert summary["reward_accuracy_min"] == pytest.approx(0.76)
    assert summary["spin_reward_accuracy_final"] == pytest.approx(0.62)
    assert summary["irl_minus_spin_true_reward_mean"] == pytest.approx(0.25)
    shown = json.loads((tmp_path / "out" / "summary.json").read_text())  # the DVC metric: a few short columns
    assert next(iter(shown)) == "reward_recovery_ratio" and len(shown) <= 18 and max(map(len, shown)) <= 22
    assert shown["irl_acc"] == agg["irl"][2]["reward_accuracy"] and shown["sft_win"] == agg["sft"][0]["win_rate_vs_demos"]
    assert json.loads((tmp_path / "out" / "summary_detail.json").read_text()) == pytest.approx(summary)
    md = (tmp_path / "out" / "report.md").read_text()
    for row in (
        "| SFT |",
        "| IRL best (k=1) |",
        "| IRL final (k=2) |",
        "| IRL + guards final (k=2) |",
        "| SPIN best (k=1) |",
        "| SPIN final (k=2) |",
        "| Oracle (r*) k=2 |",
        "| IRL > SPIN | true_reward_mean | +0.250 |",
        "| IRL > SPIN | reward_accuracy |",
    ):
        assert row in md, row
    # Two seeds, 0.5 and 0.6: a t-interval with 1 degree of freedom, 0.55 ± 12.706 · 0.0707 / √2.
    assert "| 0.550 [-0.085, 1.185] |" in md
    assert "– (needs ≥ 3 seeds)" in md and "| yes |" not in md  # no verdict from two seeds
    assert "99.000" not in md  # stale seed 7 and k = 3 are not read
    guards = md.split("## Collapse guards")[1].split("## Every iteration")[0]
    assert "| IRL + guards | 0 |" in guards and "helps, then collapses" in guards
    assert "1: yes, 2: no" in guards and summary["irl_guarded_seeds_collapsed"] == 1
    csv_lines = (tmp_path / "out" / "report.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,n_seeds,reward_accuracy") and len(csv_lines) == 1 + 1 + 4 * 2
    curve = json.loads((tmp_path / "out" / "curves" / "irl.json").read_text())
    assert [p["iteration"] for p in curve] == [0, 1, 2] and curve[2]["true_reward_mean"] == pytest.approx(0.55)
    for png in ("curves.png", "overoptimisation.png", "guards.png"):
        assert (tmp_path / "out" / "plots" / png).read_bytes()[:4] == b"\x89PNG"


def test_bootstrap_ci_known_answers():
    assert bootstrap_ci([np.full(50, 0.3)]) == pytest.approx((0.3, 0.3))
    # Bernoulli(0.5) over 400 prompts: the 95% interval is about 0.5 ± 1.96·0.025.
    lo, hi = bootstrap_ci([np.tile([0.0, 1.0], 200)])
    assert lo == pytest.approx(0.451, abs=0.012) and hi == pytest.approx(0.549, abs=0.012)
    # Two seeds that disagree: the seed-level resampling widens the interval beyond either seed's own.
    lo2, hi2 = bootstrap_ci([np.tile([0.0, 1.0], 200), np.tile([1.0, 1.0], 200)])
    assert lo2 < 0.6 and hi2 > 0.95
    # One value per group: a bootstrap over seeds, whose extremes are the seeds' min and max.
    assert bootstrap_ci([[0.1], [0.3], [0.2]]) == pytest.approx((0.1, 0.3))
    assert np.isnan(bootstrap_ci([])[0])


def test_paired_difference_cancels_prompt_difficulty(evals):
    d, a, _ = evals
    ev = load_evaluations(d, [0, 1], 2)
    answers = load_answers(a, ev)
    # Make prompt difficulty vary a lot but identically for both policies: the paired CI stays tight.
    for key in [("irl", 2, 0), ("spin", 2, 0)]:
        bump = 0.3 if key[0] == "irl" else 0.0
        answers[key] = [{"true_reward": p + bump} for p in (-5.0, 0.0, 5.0, 10.0)]
    for key in [("irl", 2, 1), ("spin", 2, 1)]:
        answers[key] = [{"true_reward": p + (0.1 if key[0] == "irl" else 0.0)} for p in (-5.0, 0.0, 5.0, 10.0)]
    diff = paired_difference(answers, ev, ("irl", 2), ("spin", 2), "true_reward_mean")
    assert diff["mean"] == pytest.approx(0.2) and diff["per_seed"] == pytest.approx([0.3, 0.1])
    assert diff["ci"] == pytest.approx([0.2 - 1.2706, 0.2 + 1.2706], abs=1e-3)  # t-interval over the 2 seeds
    one = paired_difference(answers, ev, ("irl", 2), ("spin", 2), "true_reward_mean", seeds=[0])
    assert one["ci"] == pytest.approx([0.3, 0.3])  # one seed: over its prompts, where the difference is constant


def test_seed_intervals_are_t_intervals_and_carry_between_seed_variance():
    from scipy import stats

    values = [0.17, 0.06, 0.23, 0.12, 0.20]
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)
    assert seed_interval(values) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
    # Three seeds whose prompts are all alike still get the seeds' spread, unlike a seeds-then-prompts bootstrap.
    lo, hi = seed_interval([0.1, 0.2, 0.3])
    assert hi - lo == pytest.approx(2 * stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3))
    assert verdict({"mean": 0.5, "ci": [0.4, 0.6], "per_seed": [0.5, 0.5]}).startswith("–")
    assert verdict({"mean": 0.5, "ci": [0.4, 0.6], "per_seed": [0.4, 0.5, 0.6]}) == "yes"


def test_summary_without_oracle_has_no_ratio():
    m = {"true_reward_mean": 0.1, "true_reward_mean_sampled": 0, "win_rate_vs_demos": 0, "win_rate_vs_demos_sampled": 0}
    s = summarise({"sft": {0: m}, "irl": {1: {**m, "true_reward_mean": 0.2, "reward_accuracy": 0.7, "n_seeds": 1}}})
    assert "reward_recovery_ratio" not in s and s["irl_gain_true_reward_mean"] == pytest.approx(0.1)


def test_benchmark_scores_join_table_1_when_enabled(evals, tmp_path):
    d, a, t = evals
    mt = tmp_path / "mtbench.json"
    mt.write_text(json.dumps({"enabled": True, "sft": {"overall": 2.5}, "irl": {"overall": 3.25}, "spin": {"overall": 3.0}}))
    lb = tmp_path / "leaderboard.json"
    lb.write_text(json.dumps({"enabled": False}))
    write_report(d, tmp_path / "out", a, mt, lb, t, seeds=[0, 1], max_k=2)
    md = (tmp_path / "out" / "report.md").read_text()
    table1 = md.split("## The paper's claims")[0]
    assert "mtbench_overall" in table1 and "leaderboard_average" not in table1
    assert "| 3.250 |" in next(line for line in table1.splitlines() if line.startswith("| IRL final"))


def test_the_report_reads_only_the_tracks_of_this_run(tmp_path):
    """A stale irl_guarded file from an earlier run must not become a row of a run that did not have that track."""
    seed_dir = tmp_path / "seed_0"
    seed_dir.mkdir()
    for name in ("sft", "irl_1", "irl_guarded_1", "spin_1"):
        (seed_dir / f"{name}.json").write_text('{"win_rate_vs_demos": 0.5}')
    evals = load_evaluations(tmp_path, seeds=[0], max_k=1, tracks=("sft", "irl", "spin", "oracle"))
    assert set(evals) == {"sft", "irl", "spin"}
