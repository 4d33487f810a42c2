#!/usr/bin/env bash
# CPU benchmark, side by side in one run: greenbatch-runtime serve vs KServe's own Python model
# server (PyPI kserve, benchmarks/kserve_server.py) serving torchvision resnet18 (random weights)
# with torch on the CPU, same threads. Both driven by the same client, the runtime's loadgen
# (binary tensor extension, batch-1 requests): closed loop at concurrency 1/4/16 (throughput) and an
# open Poisson loop at a fixed rate (p99). perf_analyzer cannot drive KServe 0.21 (no model-config
# endpoint; its responses fail perf_analyzer's parser: "non-existing object member
# 'binary_data_size'"), see docs/benchmarks.md. Order: kserve, runtime (dynamic batching), runtime
# (batch 1, i.e. equal batching), kserve again — the machine's speed drifts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
build_runtime_release
PY="$GREENBATCH_VENV/bin/python"
"$PY" -c 'import kserve' 2>/dev/null || "$GREENBATCH_VENV/bin/pip" install -q --cache-dir "$GREENBATCH_CACHE/pip" 'kserve==0.21.*' >&2
OUT=${OUT:-benchmarks/results/kserve-$(date +%Y%m%d-%H%M)}
THREADS=${THREADS:-2}
D=${DURATION:-15}
RATE=${RATE:-3}
PORT=18095
mkdir -p "$OUT"
"$PY" benchmarks/python_eager_sweep.py --model resnet18 --trace-to "$OUT/resnet18.pt"
wait_ready() { for _ in $(seq 1 240); do curl -sf "http://127.0.0.1:$PORT/v2/models/resnet18/ready" >/dev/null && return 0; sleep 0.5; done; return 1; }
drive() {
  local name=$1
  for c in 1 4 16; do
    "$BIN" loadgen --url "http://127.0.0.1:$PORT" --model resnet18 --concurrency "$c" --duration-seconds "$D" --json "$OUT/$name-c$c.json" >/dev/null
  done
  "$BIN" loadgen --url "http://127.0.0.1:$PORT" --model resnet18 --rate "$RATE" --duration-seconds "$D" --json "$OUT/$name-rate.json" >/dev/null
}
kserve() {
  "$PY" benchmarks/kserve_server.py --model resnet18 --port "$PORT" --threads "$THREADS" >"$OUT/kserve-$1.log" 2>&1 &
  local pid=$!; wait_ready; drive "kserve-$1"; kill "$pid"; wait "$pid" 2>/dev/null || true
}
runtime() {
  local name=$1; shift
  "$BIN" serve --model "$OUT/resnet18.pt" --name resnet18 --bind 127.0.0.1 --port "$PORT" --threads "$THREADS" --meter none "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!; wait_ready; drive "$name"; kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
log "kserve (A)"; kserve a
log "runtime, dynamic batching up to 8 (B)"; runtime runtime-dyn --max-batch-size 8 --max-queue-delay-ms 10
log "runtime, batch 1 (B)"; runtime runtime-b1 --max-batch-size 1 --max-queue-delay-ms 0
log "kserve (A)"; kserve b
lscpu | grep -E 'Model name|^CPU\(s\)' >"$OUT/host.txt"
"$PY" - "$OUT" <<'PY' | tee "$OUT/compare.md"
import json, sys
out = sys.argv[1]
load = lambda n: json.load(open(f"{out}/{n}.json"))
print("| load | kserve A | kserve B | runtime batch-1 | runtime dynamic | batch-1 / kserve (mean) | dynamic / kserve (mean) |")
print("|---|---|---|---|---|---|---|")
for c in (1, 4, 16):
    k = [load(f"kserve-{x}-c{c}")["throughput_per_second"] for x in "ab"]
    b1 = load(f"runtime-b1-c{c}")["throughput_per_second"]; dy = load(f"runtime-dyn-c{c}")["throughput_per_second"]
    km = sum(k) / 2
    print(f"| throughput/s, concurrency {c} | {k[0]:.2f} | {k[1]:.2f} | {b1:.2f} | {dy:.2f} | {b1 / km:.2f}x | {dy / km:.2f}x |")
k = [load(f"kserve-{x}-rate")["latency_p99_ms"] for x in "ab"]
b1 = load("runtime-b1-rate")["latency_p99_ms"]; dy = load("runtime-dyn-rate")["latency_p99_ms"]
km = sum(k) / 2
print(f"| p99 ms at the fixed rate | {k[0]:.1f} | {k[1]:.1f} | {b1:.1f} | {dy:.1f} | {b1 / km:.2f}x | {dy / km:.2f}x |")
errs = {n: load(n)["errors"] for n in ["kserve-a-rate", "kserve-b-rate", "runtime-b1-rate", "runtime-dyn-rate"]}
print("\nerrors at the fixed rate:", errs)
PY
