#!/usr/bin/env bash
# README command 2: set up (idempotent) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider --durations=25 "${@}"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "no tests were collected"; fi
exit "$rc"
