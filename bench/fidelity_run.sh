#!/usr/bin/env bash
# Simulator fidelity run (bench/RESULTS.md, Simulator / Fidelity): `argus up --mode ha` (the demo service,
# two cache-k0 slots), optionally the batch-time calibration, then one Poisson `argus load` per rate, then
#   .venv/bin/python bench/bench_sim.py fidelity OUT/ha-<i>/report.json [--calibration=OUT/calibration.json]
# Uses both cores for minutes: run it under the shared CPU lock, e.g.
#   flock /tmp/argus-cpu.lock timeout 600 bench/fidelity_run.sh out/fidelity 0.75:180 0.85:150
# Arguments: OUT, then RATE:DURATION per load (req/s : seconds). CALIBRATE=0 skips the calibration
# (then the first load starts right after "ready in", as in the quickstart).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
OUT=$(realpath -m "${1:?usage: bench/fidelity_run.sh OUT RATE:DURATION...}"); shift
WORK="$OUT/run"
rm -rf "$WORK"; mkdir -p "$WORK"
echo "[fidelity] $(date -u +%FT%TZ) load average: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/argus up --workdir "$WORK" --mode ha >"$WORK/up.log" 2>&1 &
UP=$!
trap 'kill -TERM $UP 2>/dev/null || true; wait $UP 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q "ready in" "$WORK/up.log" && break; kill -0 $UP || exit 1; sleep 1; done
grep "ready in" "$WORK/up.log"
if [ "${CALIBRATE:-1}" = 1 ]; then
  .venv/bin/python bench/fidelity_calibrate.py "$WORK" "$OUT/calibration.json" --rounds 3
fi
i=0
for spec in "$@"; do
  i=$((i + 1))
  rate=${spec%%:*}; dur=${spec##*:}
  .venv/bin/argus load bursty --workdir "$WORK" --rate "$rate" --peak-rate "$rate" --duration "$dur" --seed $((i - 1)) \
    --out "$OUT" --label "ha-$i" 2>/dev/null | grep -E '"(requests|ok|throughput_rps|latency_p50_s|latency_p99_s)"|report:'
  echo "[fidelity] after load $i: load average $(cut -d' ' -f1-3 /proc/loadavg)"
done
