#!/usr/bin/env bash
# The GPU check (docs/distributed.md): from the repository root of a machine with a GPU, in <= 8 min on one H200.
# Needs the project's packages (pip install -e .; where there is no internet, from carried wheels first).
# Writes one JSON of timings and GPU memory (default metrics/gpu_check.json).
set -euo pipefail
export PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
timeout 480 python3 bench/gpu_check.py --out "${1:-metrics/gpu_check.json}"
