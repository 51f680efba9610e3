"""check_params: validate the whole params.yaml (unknown keys, misspelt sections, gaps in `iterations`) before any
stage runs, in about a second and without importing torch. Every stage depends on its marker, and it depends on
the whole params.yaml file, so any edit is checked even when no stage would run."""

import argparse
import sys
from pathlib import Path

from demo2reward.core.artifacts import write_json
from demo2reward.core.params import ParamsError, load_params

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--params", type=Path, default=Path("params.yaml"))
ap.add_argument("--out", type=Path, required=True, help="a constant marker, written only when the params are valid")
args = ap.parse_args()

try:
    load_params(args.params)
except ParamsError as err:
    print(f"check_params: {err}", file=sys.stderr)
    sys.exit(2)
write_json(args.out, {"valid": True})
print(f"check_params: {args.params} is valid", file=sys.stderr)
