#!/usr/bin/env bash
# Create (or complete) the project's virtual environment on a fresh Debian/Ubuntu machine.
# torch: the local/CPU build where there is no NVIDIA GPU, so no multi-GB CUDA download.
set -euo pipefail
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "error: Python >= 3.10 is required ($PYTHON is $($PYTHON --version 2>&1)); set PYTHON=python3.x" >&2
  exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" || { echo "error: cannot create $VENV; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2; exit 2; }
fi
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install -q --upgrade pip

TORCH=torch==2.13.0
if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${PIP[@]}" install "$TORCH"
  else
    # A local wheel (pip find-links) first, its dependencies come with the project below;
    # then the CPU index of pytorch.org; then plain PyPI.
    "${PIP[@]}" install -q --no-index --no-deps "$TORCH" 2>/dev/null \
      || "${PIP[@]}" install "$TORCH" --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
      || "${PIP[@]}" install "$TORCH"
  fi
fi
"${PIP[@]}" install -q -e ".[test,ros,ray]"
echo "environment ready: $VENV"
