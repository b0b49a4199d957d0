#!/usr/bin/env bash
# README command 2: set up (idempotent) and run the whole test suite.
#
# With no arguments: the tests run on ARGUS_TEST_WORKERS pytest-xdist workers (default 3: most end-to-end
# tests wait on real processes more than they compute), except those marked `serial`, which saturate the
# CPU on purpose and compare what they measure; those run afterwards, alone. With arguments: one plain
# pytest run of what they name.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PYTEST=(.venv/bin/python -m pytest -q -p no:cacheprovider)
set +e
if [ "$#" -gt 0 ]; then
  "${PYTEST[@]}" --durations=25 "$@"
  rc=$?
  if [ "$rc" = 5 ]; then echo "no tests were collected"; fi
  exit "$rc"
fi
start=$SECONDS
echo "[test] phase 1: every test not marked serial, on ${ARGUS_TEST_WORKERS:-3} workers"
"${PYTEST[@]}" --durations=25 -n "${ARGUS_TEST_WORKERS:-3}" -m "not serial"
rc1=$?
echo "[test] phase 1: exit $rc1 after $((SECONDS - start)) s"
echo "[test] phase 2: the serial tests, alone"
"${PYTEST[@]}" --durations=10 -m serial
rc2=$?
echo "[test] phase 2: exit $rc2; whole suite $((SECONDS - start)) s"
for rc in "$rc1" "$rc2"; do
  if [ "$rc" = 5 ]; then echo "no tests were collected"; exit 5; fi
  if [ "$rc" != 0 ]; then exit "$rc"; fi
done
exit 0
