#!/usr/bin/env bash
# CPU benchmark, side by side in one run: greenbatch-runtime serve vs KServe's own Python model
# server (PyPI kserve, benchmarks/kserve_server.py) serving torchvision resnet18 (random weights)
# with torch on the CPU, same threads. Both driven by Triton's perf_analyzer (binary tensor
# extension, one image per request, zero-valued input, a fixed request count per measurement window):
# concurrency 1/4/16 (throughput) and an open Poisson loop at a fixed rate (p99). The KServe side
# needs two things perf_analyzer asks for (benchmarks/kserve_server.py): a model-config route, and
# replies that honour the requested binary outputs. Order: kserve, runtime (dynamic batching),
# runtime (batch 1, i.e. equal batching), kserve again — the machine's speed drifts.
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
COUNT=${COUNT:-40}
mkdir -p "$OUT"
. "$(bash scripts/setup-v2-clients.sh)"
"$PY" benchmarks/python_eager_sweep.py --model resnet18 --trace-to "$OUT/resnet18.pt"
# drive NAME PERF_ANALYZER_SHAPE_ARGS...: the runtime takes batch-1 requests as `-b 1` with the item
# shape (its config has max_batch_size > 0); KServe's config says 0, so the batch dimension is in the shape.
drive() {
  local name=$1; shift
  local common=(-m resnet18 -u "127.0.0.1:$PORT" -i http --input-data zero --measurement-mode count_windows
                --measurement-request-count "$COUNT" --max-trials 10 --stability-percentage 999 "$@")
  for c in 1 4 16; do
    "$GREENBATCH_PERF_ANALYZER" "${common[@]}" --concurrency-range "$c" -f "$OUT/$name-c$c.csv" >"$OUT/$name-c$c.txt" 2>&1
  done
  "$GREENBATCH_PERF_ANALYZER" "${common[@]}" --request-rate-range "$RATE" --async --request-distribution poisson \
    -f "$OUT/$name-rate.csv" >"$OUT/$name-rate.txt" 2>&1
}
kserve() {
  "$PY" benchmarks/kserve_server.py --model resnet18 --port "$PORT" --threads "$THREADS" >"$OUT/kserve-$1.log" 2>&1 &
  local pid=$!; wait_ready "http://127.0.0.1:$PORT/v2/models/resnet18/ready" 120; drive "kserve-$1" --shape input__0:1,3,224,224; kill "$pid"; wait "$pid" 2>/dev/null || true
}
runtime() {
  local name=$1; shift
  "$BIN" serve --model "$OUT/resnet18.pt" --name resnet18 --bind 127.0.0.1 --port "$PORT" --threads "$THREADS" --meter none "$@" >"$OUT/$name.log" 2>&1 &
  local pid=$!; wait_ready "http://127.0.0.1:$PORT/v2/models/resnet18/ready" 120; drive "$name" -b 1 --shape input__0:3,224,224; kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
log "kserve (A)"; kserve a
log "runtime, dynamic batching up to 8 (B)"; runtime runtime-dyn --max-batch-size 8 --max-queue-delay-ms 10
log "runtime, batch 1 (B)"; runtime runtime-b1 --max-batch-size 1 --max-queue-delay-ms 0
log "kserve (A)"; kserve b
lscpu | grep -E 'Model name|^CPU\(s\)' >"$OUT/host.txt"
"$PY" - "$OUT" <<'PY' | tee "$OUT/compare.md"
import csv, sys
out = sys.argv[1]
def row(n):
    with open(f"{out}/{n}.csv") as f:
        return next(csv.DictReader(f))
tput = lambda n: float(row(n)["Inferences/Second"])
p99 = lambda n: float(row(n)["p99 latency"]) / 1000.0
print("| load (perf_analyzer) | kserve A | kserve B | runtime batch-1 | runtime dynamic | batch-1 / kserve (mean) | dynamic / kserve (mean) |")
print("|---|---|---|---|---|---|---|")
for c in (1, 4, 16):
    k = [tput(f"kserve-{x}-c{c}") for x in "ab"]
    b1, dy = tput(f"runtime-b1-c{c}"), tput(f"runtime-dyn-c{c}")
    km = sum(k) / 2
    print(f"| throughput/s, concurrency {c} | {k[0]:.2f} | {k[1]:.2f} | {b1:.2f} | {dy:.2f} | {b1 / km:.2f}x | {dy / km:.2f}x |")
k = [p99(f"kserve-{x}-rate") for x in "ab"]
b1, dy = p99("runtime-b1-rate"), p99("runtime-dyn-rate")
km = sum(k) / 2
print(f"| p99 ms at the fixed rate | {k[0]:.1f} | {k[1]:.1f} | {b1:.1f} | {dy:.1f} | {b1 / km:.2f}x | {dy / km:.2f}x |")
PY
