#!/usr/bin/env bash
# Idempotent setup for a fresh Debian 12 / Python 3.11 machine (root): system packages and the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v prometheus >/dev/null 2>&1; then
  echo "[setup] installing prometheus (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.argus-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing Python packages (a few minutes on first run)"
  .venv/bin/pip install -q --upgrade pip
  # The CPU wheel of this exact torch version is what PLATFORM.md pins; any other spec pulls CUDA.
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[local,dev]" "torch==2.13.0"
  # The real CLIP BPE vocabulary for the tiny model's tokenizer; --no-deps keeps the CPU torch.
  .venv/bin/pip install -q --no-deps "open_clip_torch==3.3.0"
  echo "$want" > "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import torch,diffusers;print("torch",torch.__version__,"diffusers",diffusers.__version__)')"
