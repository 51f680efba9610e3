"""What every stage script shares: validated params, threads, seeding, clean errors and an MLflow child run."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from demo2reward.artifacts import DataFileError
from demo2reward.params import Params, ParamsError, load_params


class StageError(RuntimeError):
    """A stage cannot run with what it was given (missing input, unreachable service, ...)."""


@contextlib.contextmanager
def stage(name: str, sections: tuple[str, ...], params_path: str | Path = "params.yaml") -> Iterator[tuple[Params, object]]:
    """Validate params before any compute, then run the stage body inside its MLflow child run.

    Expected failures (bad params, malformed data) print one line naming the key or the file and exit 2;
    nothing is written, since outputs are only moved into place when a stage finishes.
    """
    try:
        params = load_params(params_path)
    except ParamsError as err:
        sys.exit(f"{name}: {err}")

    from transformers import set_seed

    from demo2reward.tracking import stage_run
    from demo2reward.training import set_threads

    set_threads(params.threads)
    set_seed(params.seed)
    logged = {s: getattr(params, s).model_dump(mode="json") for s in sections}
    logged["seed"] = params.seed
    try:
        with stage_run(name, params.tracking.experiment, params.digest(), logged) as run:
            yield params, run
    except (DataFileError, StageError) as err:
        sys.exit(f"{name}: error: {err}")
