"""The exchange rate of demonstrations for preference labels, read from a sweep's runs in a real MLflow store."""

import json
import math

import pytest

from demo2reward.evaluation import exchange
from demo2reward.tracking import ROLE_TAG

IRL = {0: 0.5, 1: 0.6, 2: 0.7}
PREFS = {100: {0: 0.2, 1: 0.3, 2: 0.4}, 1000: {0: 0.7, 1: 0.8, 2: 0.9}}


def test_crossing_is_log_linear_and_says_when_it_is_out_of_range():
    assert exchange.crossing([100, 1000], [0.3, 0.8], 0.6) == pytest.approx(100 * 10**0.6)
    assert exchange.crossing([100, 300, 1000], [0.1, 0.5, 0.9], 0.5) == pytest.approx(300)
    assert exchange.crossing([100, 1000], [0.7, 0.8], 0.6) == -math.inf
    assert exchange.crossing([100, 1000], [0.3, 0.5], 0.6) == math.inf


def test_exchange_rate_and_its_seed_bootstrap():
    rate = exchange.exchange_rate(IRL, PREFS, n_demos=1500)
    assert rate["labels"] == pytest.approx(398.1, abs=0.1)
    assert rate["labels_per_demo"] == pytest.approx(398.1 / 1500, abs=1e-4)
    lo, hi = rate["labels_ci"]
    assert 100 < lo < rate["labels"] < hi < 1000  # seeds move IRL's and prefs-only's means together here
    assert "about 0.265 preference labels" in exchange.headline(rate)
    far = exchange.exchange_rate(IRL, {100: PREFS[100], 1000: {0: 0.3, 1: 0.4, 2: 0.5}}, n_demos=1500)
    assert far["labels"] == math.inf and "worth more than 0.667 preference labels" in exchange.headline(far)
    with pytest.raises(exchange.SweepError, match="at least 2"):
        exchange.exchange_rate({0: 0.5}, {100: {0: 0.2}, 1000: {0: 0.9}}, n_demos=10)


def _log_run(client, exp_id: str, name: str, n: int, recovery: dict[str, dict[int, float]], lr: str = "0.001") -> None:
    run = client.create_run(exp_id, run_name=name, tags={ROLE_TAG: "pipeline"})
    params = {"reward.human_pairs": str(n), "task.n_train": "1500", "reward.learning_rate": lr, "irl_tracks": "x"}
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    for track, by_seed in recovery.items():
        suffix = exchange.RECOVERY_SUFFIX[track]
        for seed, value in by_seed.items():
            client.log_metric(run.info.run_id, f"summary/reward_recovery_ratio{suffix}_seed{seed}", value)
    client.set_terminated(run.info.run_id)


def test_the_command_reads_a_sweep_from_mlflow_and_refuses_a_mixed_one(tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment("demo2reward")
    _log_run(client, exp_id, "default", 0, {"irl": IRL, "irl_guarded": IRL})
    _log_run(client, exp_id, "n100", 100, {"hybrid": {0: 0.6, 1: 0.7, 2: 0.8}, "prefs_only": PREFS[100]})
    with pytest.raises(SystemExit, match="at least two N > 0"):
        exchange.main(["--out", str(tmp_path / "out")])
    _log_run(client, exp_id, "n1000", 1000, {"hybrid": {0: 0.8, 1: 0.9, 2: 1.0}, "prefs_only": PREFS[1000]})
    exchange.main(["--out", str(tmp_path / "out")])
    assert "about 0.265 preference labels" in capsys.readouterr().out
    result = json.loads((tmp_path / "out" / "exchange.json").read_text())
    assert result["runs"] == {"0": "default", "100": "n100", "1000": "n1000"}
    assert [p["N"] for p in result["curves"]["prefs_only"]] == [100, 1000]
    hybrid_vs_prefs = next(d for d in result["differences"] if d["N"] == 100 and d["minus"] == "prefs_only")
    assert hybrid_vs_prefs["mean"] == pytest.approx(0.4)
    assert (tmp_path / "out" / "exchange.png").stat().st_size > 10_000
    assert "One demonstration is worth" in (tmp_path / "out" / "exchange.md").read_text()

    far = {0: 0.3, 1: 0.4, 2: 0.5}
    _log_run(client, exp_id, "n1000-far", 1000, {"hybrid": far, "prefs_only": far})
    exchange.main(["--out", str(tmp_path / "far")])
    rate = json.loads((tmp_path / "far" / "exchange.json").read_text())["exchange"]
    assert rate["labels"] == "> 1000" and rate["labels_per_demo"] == "> 0.667" and rate["resamples_above_range"] > 0.5

    _log_run(client, exp_id, "n300-other-lr", 300, {"prefs_only": PREFS[100]}, lr="0.01")
    with pytest.raises(SystemExit, match=r"n300-other-lr \(N = 300\) differs from the default run default in reward.lea"):
        exchange.main(["--out", str(tmp_path / "out")])
