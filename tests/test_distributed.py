"""Beyond one process: what fails before any compute, and what reaches TRL. (The 2-process run is in test_pipeline.)"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

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


def test_vllm_params_reach_every_online_trainer_as_trls_own_options():
    from trl import GRPOConfig, RLOOConfig
    from trl.experimental.online_dpo import OnlineDPOConfig

    from demo2reward.core.params import parse_params
    from demo2reward.core.runtime import Runtime
    from demo2reward.models import generation

    assert generation.trl_vllm_kwargs(RLOOConfig, None) == {}  # off: TRL's defaults, HF generate
    vllm = VLLMParams(enabled=True, mode="server", gpu_memory_utilization=0.5)
    params = parse_params({"vllm": vllm.model_dump()})
    assert Runtime.of(params, ("policy",)).vllm is None  # a stage that does not list the vllm section generates with HF
    assert Runtime.of(params, ("policy", "vllm")).vllm == vllm
    for config_class in (RLOOConfig, GRPOConfig, OnlineDPOConfig):
        kwargs = generation.trl_vllm_kwargs(config_class, vllm)
        assert kwargs["use_vllm"] is True and kwargs["vllm_mode"] == "server", config_class.__name__
        assert kwargs["vllm_gpu_memory_utilization"] == 0.5
        config = config_class(output_dir="/tmp/unused", use_cpu=True, report_to="none", **kwargs)
        assert config.use_vllm and config.vllm_mode == "server"
    assert "vllm_tensor_parallel_size" in generation.trl_vllm_kwargs(RLOOConfig, vllm)


def test_a_stopped_launch_stops_its_ranks(tmp_path):
    """SIGTERM to a stage that launched ranks: torchrun runs them in sessions of their own, so a SIGKILL of the
    launcher (what subprocess.run does on an exception) would orphan them, still writing and holding GPUs."""
    import signal
    import time

    (tmp_path / "rank.py").write_text(
        "import os, pathlib, sys, time\n"
        "pathlib.Path(sys.argv[1], os.environ['RANK']).write_text(str(os.getpid()))\n"
        "time.sleep(300)\n"
    )
    code = (
        "import signal, sys\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
        "from demo2reward.core.distributed import launch\n"
        f"launch(2, {str(ROOT / 'presets/accelerate/multi_gpu.yaml')!r}, [{str(tmp_path / 'rank.py')!r}, {str(tmp_path)!r}])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    stage = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not ((tmp_path / "0").exists() and (tmp_path / "1").exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
    ranks = [int((tmp_path / r).read_text()) for r in ("0", "1")]
    stage.send_signal(signal.SIGTERM)
    assert stage.wait(timeout=90) != 0

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"

    while any(alive(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in ranks)


def test_ranks_share_the_cores_and_lora_refuses_sharded_saving(monkeypatch):
    from demo2reward.core.params import ParamsError, parse_params
    from demo2reward.core.stage import resolve_threads

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    cores = len(os.sched_getaffinity(0))
    assert resolve_threads("auto") == max(1, cores // 2)
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.chdir(ROOT)
    lora = {"enabled": True}
    for config in ("deepspeed_zero2.yaml", "deepspeed_zero3.yaml", "fsdp2.yaml"):
        distributed = {"num_processes": 2, "config_file": f"presets/accelerate/{config}"}
        with pytest.raises(ParamsError, match=r"sft.lora.enabled: LoRA is saved merged"):
            parse_params(merged_params({"distributed": distributed, "sft": {"lora": lora}}))
    parse_params(merged_params({"distributed": {"num_processes": 2}, "sft": {"lora": lora}}))  # DDP merges fine


def test_a_sharded_reward_model_is_standardised_on_its_saved_copy(tmp_path):
    """Under ZeRO-3 or FSDP the score head is rescaled after saving (`_standardise_saved`); same result."""
    import numpy as np

    from demo2reward.core.params import ModelParams
    from demo2reward.loop.reward import _standardise_saved
    from demo2reward.models.generation import score
    from demo2reward.models.modeling import build_causal_lm, load_reward_model, train_tokenizer

    tokenizer = train_tokenizer(["alpha beta gamma delta epsilon zeta eta theta"])
    build_causal_lm(
        ModelParams(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2), tokenizer, 0
    ).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    load_reward_model(tmp_path / "lm", tokenizer, new_head=True).save_pretrained(tmp_path / "rm")
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    pairs = [
        {"prompt": [{"role": "user", "content": w}], "chosen": [{"role": "assistant", "content": f"{w} {v}"}],
         "rejected": [{"role": "assistant", "content": v}]}
        for w in words for v in words
    ]  # fmt: skip
    stats = _standardise_saved(tmp_path / "rm", tokenizer, pairs)
    model = load_reward_model(tmp_path / "rm", tokenizer)
    prompts = [p["prompt"] for p in pairs] * 2
    scores = score(model, tokenizer, prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
    assert stats["score_std_before"] > 0 and np.std(scores) == pytest.approx(1.0, rel=1e-3)
