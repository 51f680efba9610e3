"""Beyond one process: what fails before any compute, and what reaches TRL. (The 2-process run is in test_pipeline.)"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import yaml

from demo2reward.core.params import VLLMParams
from tests.conftest import ROOT, merged_params


def _stage(argv: list[str], overrides: dict, tmp_path) -> subprocess.CompletedProcess:
    """Run a stage script in an empty folder holding only params.yaml and the accelerate configs: any input it
    tried to read would be missing, so a clean exit 2 with one line means it stopped before computing."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(merged_params(overrides)))
    (tmp_path / "presets").symlink_to(ROOT / "presets")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DEMO2REWARD_WARM": "0"}
    script = str(ROOT / "stages" / argv[0])
    return subprocess.run([sys.executable, script, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_without_vllm_fails_before_any_compute_naming_the_param(tmp_path):
    argv = ["rollout.py", "--seed", "0", "--k", "1", "--previous", "p", "--demos", "d.jsonl", "--out", "r.jsonl"]
    proc = _stage(argv, {"vllm": {"enabled": True}}, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "vllm.enabled" in lines[0] and "not installed" in lines[0], proc.stderr
    assert not list(tmp_path.glob("logs/*")) and not (tmp_path / "r.jsonl").exists()


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="DeepSpeed is installed here")
def test_a_deepspeed_config_without_deepspeed_fails_naming_the_param(tmp_path):
    config = "presets/accelerate/deepspeed_zero2.yaml"
    argv = ["sft.py", "--seed", "0", "--init", "i", "--demos", "d", "--out", "o", "--pool", "p", "--metrics", "m.json"]
    proc = _stage(argv, {"distributed": {"num_processes": 2, "config_file": config}}, tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"distributed.config_file = {config} needs DeepSpeed" in lines[0], proc.stderr


def test_vllm_params_reach_every_online_trainer_as_trls_own_options(monkeypatch):
    from trl import GRPOConfig, RLOOConfig
    from trl.experimental.online_dpo import OnlineDPOConfig

    from demo2reward.core import backend
    from demo2reward.models import generation

    assert generation.trl_vllm_kwargs(RLOOConfig) == {}  # off: TRL's defaults, HF generate
    monkeypatch.setattr(backend, "vllm", VLLMParams(enabled=True, mode="server", gpu_memory_utilization=0.5))
    for config_class in (RLOOConfig, GRPOConfig, OnlineDPOConfig):
        kwargs = generation.trl_vllm_kwargs(config_class)
        assert kwargs["use_vllm"] is True and kwargs["vllm_mode"] == "server", config_class.__name__
        assert kwargs["vllm_gpu_memory_utilization"] == 0.5
        config = config_class(output_dir="/tmp/unused", use_cpu=True, report_to="none", **kwargs)
        assert config.use_vllm and config.vllm_mode == "server"
    assert "vllm_tensor_parallel_size" in generation.trl_vllm_kwargs(RLOOConfig)
