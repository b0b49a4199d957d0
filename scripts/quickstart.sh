#!/usr/bin/env bash
# README command 1: set up (idempotent), start the whole system locally, show it working, shut down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/argus up --demo "${@}"
