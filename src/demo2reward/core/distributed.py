"""More than one process per training stage, on accelerate (DDP, DeepSpeed ZeRO, FSDP): no launcher of our own.

A training stage (pretrain, sft, reward, policy, oracle, spin) whose params say `distributed.num_processes > 1`
starts `accelerate launch` on its own command line and exits with its code. Each launched process (a rank) runs
the script as usual, and the TRL trainer inside does the distributed work. Rank 0 alone writes the stage's outputs,
metrics and MLflow run: the other ranks take every collective step with it (evaluation and saving under ZeRO-3
are collective) and discard what they would write (`core.artifacts`).

The effective batch stays what params.yaml says: per-device batch x processes x gradient accumulation.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

LAUNCHED = "WORLD_SIZE"  # set by accelerate launch (torchrun) in every rank


def world_size() -> int:
    """Processes of the current stage: 1 unless it runs under `accelerate launch`."""
    return int(os.environ.get(LAUNCHED, "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def launched() -> bool:
    return LAUNCHED in os.environ


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))


def shards_parameters() -> bool:
    """Whether this launch shards the weights themselves (DeepSpeed ZeRO-3, FSDP): then no rank holds a whole
    model in memory, and editing one (the reward model's standardisation) must happen on the saved copy."""
    return os.environ.get("ACCELERATE_USE_FSDP") == "true" or os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"


def bind_device() -> None:
    """Each rank on its own GPU: models are loaded (to "cuda") before any trainer exists, so set it first."""
    import torch

    if launched() and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def on_main_process(compute):
    """`compute()` on rank 0 only, its result sent to every rank: sampled training data (SPIN's pairs, the oracle's
    scale) must be the same on all ranks, or their datasets differ in length and DDP waits forever."""
    if not launched():
        return compute()
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState(cpu=not torch.cuda.is_available())
    box = [compute() if state.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


class RankDone(SystemExit):
    """A rank other than 0 stops here, with exit code 0: its share (the trainer's collective steps) is done."""

    def __init__(self) -> None:
        super().__init__(0)


def end_other_ranks() -> None:
    """Called once the trainer has saved (a collective step under ZeRO-3 and FSDP): what follows (standardising a
    reward model, the acceptance gate, writing outputs and metrics) runs in rank 0 alone."""
    if not is_main_process():
        raise RankDone()


def _free_port() -> int:
    """A free TCP port for the ranks' rendezvous: parallel stages (queued experiments) must not share accelerate's
    default 29500."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_config(config_file: str | Path) -> dict:
    import yaml

    config = yaml.safe_load(Path(config_file).read_text())
    if not isinstance(config, dict) or "distributed_type" not in config:
        raise ValueError(f"{config_file}: not an accelerate config (no distributed_type)")
    return config


class LaunchError(RuntimeError):
    """The accelerate config cannot run on this machine; the message names the param to change."""


def check_launchable(num_processes: int, config_file: str | Path) -> None:
    """Fail before any compute, with the param to change, where the config cannot run on this machine."""
    import importlib.util

    import torch

    kind = accelerate_config(config_file)["distributed_type"]
    if kind == "DEEPSPEED" and importlib.util.find_spec("deepspeed") is None:
        raise LaunchError(f"distributed.config_file = {config_file} needs DeepSpeed: pip install deepspeed")
    if kind in ("DEEPSPEED", "FSDP") and not torch.cuda.is_available():
        raise LaunchError(
            f"distributed.config_file = {config_file} ({kind}) needs GPUs; on a CPU use multi_gpu.yaml (DDP over gloo)"
        )
    if torch.cuda.is_available() and torch.cuda.device_count() < num_processes:
        raise LaunchError(f"distributed.num_processes = {num_processes} but this machine has {torch.cuda.device_count()} GPU(s)")


def launch(num_processes: int, config_file: str | Path, argv: list[str]) -> int:
    """Run `argv` (this stage's script and arguments) under `accelerate launch` in `num_processes` ranks."""
    import torch

    check_launchable(num_processes, config_file)
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()  # what models.training.trainer_kwargs picks
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(config_file),
        "--num_processes", str(num_processes),
        "--num_machines", "1",
        "--main_process_port", str(_free_port()),
        "--mixed_precision", "bf16" if bf16 else "no",
        *argv,
    ]  # fmt: skip
    launcher = subprocess.Popen(cmd)
    try:
        return launcher.wait()
    except BaseException:  # the stage was stopped (SIGTERM, Ctrl-C): torchrun forwards SIGTERM to its ranks and
        launcher.terminate()  # waits for them; they run in sessions of their own, which a SIGKILL would orphan
        try:
            launcher.wait(timeout=60)
        except subprocess.TimeoutExpired:
            launcher.kill()
        raise
