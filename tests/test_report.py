import json

import pytest

from demo2reward.report import summarise, write_report


def _write(d, name, **m):
    (d / f"{name}.json").write_text(json.dumps(m))


@pytest.fixture
def evals(tmp_path):
    d = tmp_path / "eval"
    d.mkdir()
    base = dict(win_rate_vs_demos=0.2, win_rate_vs_demos_sampled=0.1, true_reward_mean=0.2, true_reward_mean_sampled=0.0)
    _write(d, "sft", **base, reward_accuracy=0.55, kl_to_sft=0.0)
    _write(d, "irl_1", **{**base, "true_reward_mean": 0.4, "true_reward_mean_sampled": 0.3}, reward_accuracy=0.8)
    _write(d, "irl_2", **{**base, "true_reward_mean": 0.5, "true_reward_mean_sampled": 0.4}, reward_accuracy=0.78)
    _write(d, "oracle_1", **{**base, "true_reward_mean": 0.6, "true_reward_mean_sampled": 0.6})
    _write(d, "oracle_2", **{**base, "true_reward_mean": 0.8, "true_reward_mean_sampled": 0.8})
    return d


def test_report_renders_table_curves_and_ratio(evals, tmp_path):
    summary = write_report(evals, tmp_path / "out")
    assert summary["reward_recovery_ratio"] == pytest.approx((0.5 - 0.2) / (0.8 - 0.2))
    assert summary["reward_recovery_ratio_sampled"] == pytest.approx(0.4 / 0.8)
    assert summary["reward_accuracy_min"] == pytest.approx(0.78)
    md = (tmp_path / "out" / "report.md").read_text()
    for row in ("| SFT |", "| IRL k=1 |", "| IRL k=2 |", "| Oracle (r*) k=2 |"):
        assert row in md
    curve = json.loads((tmp_path / "out" / "curves" / "irl.json").read_text())
    assert [p["iteration"] for p in curve] == [0, 1, 2] and curve[2]["true_reward_mean"] == 0.5
    assert (tmp_path / "out" / "plots" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_summary_without_oracle_has_no_ratio():
    tracks = {"sft": {0: {"true_reward_mean": 0.1, "true_reward_mean_sampled": 0, "win_rate_vs_demos": 0,
                          "win_rate_vs_demos_sampled": 0}},
              "irl": {1: {"true_reward_mean": 0.2, "true_reward_mean_sampled": 0, "win_rate_vs_demos": 0,
                          "win_rate_vs_demos_sampled": 0, "reward_accuracy": 0.7}}}  # fmt: skip
    s = summarise(tracks)
    assert "reward_recovery_ratio" not in s and s["irl_gain_true_reward_mean"] == pytest.approx(0.1)
