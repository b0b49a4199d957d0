#!/usr/bin/env bash
# README command 1: set up (idempotent), bring the whole system up locally (Prometheus, Envoy, router,
# Triton workers, the control loop) serving the world model (argus/data/models/world-sd, trained here by
# `argus train-model`), replay a short bursty trace of held-out world prompts against it, print the report
# (with the quality of every returned image measured by the exact scorer), shut down.
# Extra arguments go to `argus up` (e.g. -f service.yaml). Environment: QUICKSTART_DURATION (s, default 240),
# QUICKSTART_RATE / QUICKSTART_PEAK (req/s off-peak / during the burst, default 0.15 / 1.3, on the machine the
# demo profile was measured on: `argus up --calibrate` measures this one and `--machine-scaled` rescales them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORK=run/quickstart
OUT=out/quickstart
DURATION=${QUICKSTART_DURATION:-240}
mkdir -p "$WORK" "$OUT"
LOG="$WORK/argus-up.log"

.venv/bin/argus up --calibrate --workdir "$WORK" "$@" >"$LOG" 2>&1 &
UP=$!
stop() {
  if kill -0 "$UP" 2>/dev/null; then
    echo "[quickstart] stopping the system"
    kill -TERM "$UP" 2>/dev/null || true
    wait "$UP" 2>/dev/null || true
  fi
}
trap stop EXIT INT TERM

echo "[quickstart] starting the local system (log: $LOG)"
for _ in $(seq 1 300); do
  if grep -q "ready in" "$LOG" 2>/dev/null; then break; fi
  if ! kill -0 "$UP" 2>/dev/null; then echo "[quickstart] argus up exited:"; tail -30 "$LOG"; exit 1; fi
  sleep 1
done
grep -q "ready in" "$LOG" || { echo "[quickstart] not ready after 300 s:"; tail -30 "$LOG"; exit 1; }
grep "ready in" "$LOG"
.venv/bin/argus status --workdir "$WORK"

echo "[quickstart] replaying a bursty trace for ${DURATION}s: off-peak, a burst in the middle third, off-peak again"
.venv/bin/argus load bursty --workdir "$WORK" --duration "$DURATION" --rate "${QUICKSTART_RATE:-0.15}" \
  --peak-rate "${QUICKSTART_PEAK:-1.3}" --machine-scaled --prompts world-held-out --out "$OUT" --label argus

echo "[quickstart] what the control loop did (reallocations):"
grep "^\[argus\]" "$LOG" | grep -v "ready in\|starting\|press Ctrl-C" || echo "  (no reallocation)"
.venv/bin/argus status --workdir "$WORK"
echo "[quickstart] report: $OUT/argus/report.json  plot: $OUT/argus/timeline.png"
echo "[quickstart] compare with the baselines: bench/bench_local.py (see bench/RESULTS.md, section 'local system')"
