#!/usr/bin/env bash
# One-command set-up: a venv in .venv with CPU PyTorch and napari-halo-seg (+ test extras).
# Usage: bash scripts/setup.sh        (PYTHON=python3.11 bash scripts/setup.sh to pick an interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# CPU PyTorch first, so the dependency resolver never pulls a multi-GB CUDA build
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q torch==2.13.0 \
    || .venv/bin/python -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
fi
.venv/bin/python -m pip install -q -e ".[testing]"
echo "ready: .venv/bin/halo-seg demo   |   tests: see README.md"
