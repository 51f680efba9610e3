"""Apply a preset (presets/*.yaml: a partial params file) over params.yaml, validated before anything runs.

    python -m demo2reward.presets presets/tldr-pythia1b.yaml            # print the merged, validated params
    python -m demo2reward.presets presets/tldr-pythia1b.yaml --write    # and write them to params.yaml

Mappings merge key by key; lists (iterations, seeds, target_modules) replace. `--write` rewrites params.yaml
without its comments (`git checkout params.yaml` restores the default).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from demo2reward.core.params import ParamsError, parse_params


def merge(base: dict, overlay: dict) -> dict:
    """`overlay` merged into a copy of `base`: mappings key by key, everything else replaced."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def apply_preset(preset: str | Path, params: str | Path = "params.yaml") -> dict:
    merged = merge(yaml.safe_load(Path(params).read_text()) or {}, yaml.safe_load(Path(preset).read_text()) or {})
    parse_params(merged)  # a preset that does not fit the schema fails here, naming the key
    return merged


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", type=Path)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--write", action="store_true", help="write the merged params to --params")
    args = ap.parse_args(argv)
    try:
        merged = apply_preset(args.preset, args.params)
    except ParamsError as err:
        sys.exit(f"{args.preset}: {err}")
    text = yaml.safe_dump(merged, sort_keys=False)
    if args.write:
        args.params.write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
