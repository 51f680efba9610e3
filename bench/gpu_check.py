"""The GPU check (docs/distributed.md): what the project does on one GPU, in one JSON of timings and GPU memory.

1. The embedded pipeline, one seed, K = 1 (`dvc repro` in a scratch clone): on CUDA the trainers pick bf16.
2. The TL;DR real-task path on a Pythia-style (GPT-NeoX) model: `tests/test_real_pipeline.py -k tldr`.
3. HF generate against vLLM, tokens/s, on the SFT policy of (1), where vLLM is installed.

    bash bench/gpu_check.sh                       # on the GPU machine, from the repository root
    python bench/gpu_check.py --micro --out /tmp/gpu_check.json   # the same steps at micro sizes, on any machine
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "src"))


class GPUMemory:
    """Peak GPU memory in use, polled with nvidia-smi (every stage is its own process)."""

    def __init__(self, interval_s: float = 0.5):
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval_s,), daemon=True)

    def _poll(self, interval_s: float) -> None:
        while not self._stop.is_set():
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True
            ).stdout
            used = [float(x) for x in out.split()] or [0.0]
            self.peak_mib = max(self.peak_mib, max(used))
            self._stop.wait(interval_s)

    def __enter__(self):
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def embedded_pipeline(workdir: Path, micro: bool) -> dict:
    from bench.benchmark import scratch_copy
    from tests.conftest import merged_params

    repo = scratch_copy(workdir)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    if micro:
        params = merged_params(yaml.safe_load((REPO_ROOT / "tests" / "micro_params.yaml").read_text()))
    params.update(seeds=[0], iterations=params["iterations"][:1])
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.perf_counter()
    with GPUMemory() as memory:
        proc = subprocess.run(["dvc", "repro", "--no-run-cache"], cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"dvc repro failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    summary = json.loads((repo / "metrics" / "summary.json").read_text())
    return {"wall_s": round(time.perf_counter() - t0, 1), "peak_gpu_mib": memory.peak_mib, "summary": summary, "repo": str(repo)}


def real_task_path() -> dict:
    t0 = time.perf_counter()
    with GPUMemory() as memory:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "tests/test_real_pipeline.py", "-k", "tldr"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
    tail = proc.stdout.strip().splitlines()[-1:] or [""]
    wall = round(time.perf_counter() - t0, 1)
    return {"wall_s": wall, "peak_gpu_mib": memory.peak_mib, "passed": proc.returncode == 0, "pytest": tail[0]}


def generation_throughput(policy: Path, n_prompts: int = 512, max_new_tokens: int = 64) -> dict:
    from demo2reward.core import backend
    from demo2reward.core.artifacts import read_jsonl
    from demo2reward.core.params import VLLMParams
    from demo2reward.models import generation
    from demo2reward.models.modeling import load_policy, load_tokenizer

    tokenizer, model = load_tokenizer(policy), load_policy(policy)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    prompts = [r["prompt"] for r in read_jsonl(policy.parents[3] / "data" / "task" / "train.jsonl")][:n_prompts]
    out = {"prompts": len(prompts), "max_new_tokens": max_new_tokens}
    engines = ["hf"] + (["vllm"] if importlib.util.find_spec("vllm") and torch.cuda.is_available() else [])
    for engine in engines:
        backend.vllm = VLLMParams(enabled=True) if engine == "vllm" else None
        kwargs = {"max_new_tokens": max_new_tokens, "temperature": 1.0, "seed": 0, "batch_size": 256}
        generation.sample(model, tokenizer, prompts[:8], **kwargs)  # warm-up (vLLM: engine start, not timed)
        t0 = time.perf_counter()
        samples = generation.sample(model, tokenizer, prompts, **kwargs)
        seconds = time.perf_counter() - t0
        tokens = sum(len(c) for group in samples.completion_ids for c in group)
        out[engine] = {"seconds": round(seconds, 2), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1)}
    backend.vllm = None
    if "vllm" not in out:
        out["vllm"] = "not measured: vLLM is not installed or there is no GPU"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "metrics" / "gpu_check.json")
    ap.add_argument("--micro", action="store_true", help="micro sizes (tests/micro_params.yaml), to try the script on a CPU")
    args = ap.parse_args()
    missing = [m for m in ("trl", "peft", "datasets", "mlflow", "dvc") if importlib.util.find_spec(m) is None]
    if missing or shutil.which("dvc") is None:
        sys.exit(f"gpu_check: install the project first (pip install -e .); missing: {', '.join(missing) or 'the dvc command'}")
    result: dict = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
    }
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        print("1/3 embedded pipeline, one seed, K = 1", flush=True)
        result["embedded_pipeline"] = embedded_pipeline(Path(scratch), args.micro)
        print("2/3 TL;DR real-task path (Pythia-style model)", flush=True)
        result["real_task_tldr"] = real_task_path()
        print("3/3 HF generate against vLLM", flush=True)
        result["generation"] = generation_throughput(Path(scratch) / "models" / "seed_0" / "sft" / "policy")
    result["embedded_pipeline"].pop("repo")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
