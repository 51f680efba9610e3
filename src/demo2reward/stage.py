"""What every stage script shares: validated params, threads, seeding, clean errors and an MLflow child run."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

from demo2reward.artifacts import DataFileError
from demo2reward.params import Params, ParamsError, load_params


class StageError(RuntimeError):
    """A stage cannot run with what it was given (missing input, unreachable service, ...)."""


def set_threads_and_seed(threads: int, seed: int) -> None:
    """What transformers.set_seed does, without its import chain (peft, torch.distributed: ~5 s per stage)."""
    import numpy as np

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")  # stage scripts import their modules first; pairs and report never load torch
    if torch is not None:
        torch.set_num_threads(threads)
        torch.manual_seed(seed)


@contextlib.contextmanager
def stage(
    name: str, sections: tuple[str, ...], seed: int | None = None, params_path: str | Path = "params.yaml"
) -> Iterator[tuple[Params, object]]:
    """Validate params before any compute, then run the stage body inside its MLflow child run.

    `seed` is the training seed of a per-seed stage (one of `params.seeds`); shared stages use `params.seed`.

    Expected failures (bad params, malformed data) print one line naming the key or the file and exit 2;
    nothing is written, since outputs are only moved into place when a stage finishes.
    """
    try:
        params = load_params(params_path)
    except ParamsError as err:
        sys.exit(f"{name}: {err}")

    from demo2reward.tracking import stage_run

    if seed is not None and seed not in params.seeds:
        sys.exit(f"{name}: seed {seed} is not in params seeds {params.seeds}")
    seed = params.seed if seed is None else seed
    set_threads_and_seed(params.threads, seed)
    logged = {s: getattr(params, s).model_dump(mode="json") for s in sections}
    logged["seed"] = seed
    try:
        with stage_run(name, params.tracking.experiment, params.digest(), logged) as run:
            yield params, run
    except (DataFileError, StageError) as err:
        sys.exit(f"{name}: error: {err}")
