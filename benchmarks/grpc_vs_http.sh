#!/usr/bin/env bash
# CPU benchmark, side by side in one run: one greenbatch-runtime server, driven by Triton's
# perf_analyzer over KServe v2 HTTP (binary tensor extension) and over KServe v2 gRPC (raw tensors),
# at concurrency 1, 4 and 16, batch 1 per request, a fixed request count per measurement window.
# The same server process answers both (HTTP port and --grpc-port), so only the protocol differs.
# MODEL: a small one (the tiny CNN fixture by default) so the protocol's share of the time shows;
# SHAPE its item shape. Order: http, grpc, grpc, http — the machine's speed drifts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
build_runtime_release
OUT=${OUT:-benchmarks/results/grpc-http-$(date +%Y%m%d-%H%M)}
MODEL=${MODEL:-runtime/tests/fixtures/tiny_cnn.pt}
SHAPE=${SHAPE:-3,16,16}
COUNT=${COUNT:-200}
PORT=18097
GRPC_PORT=18098
mkdir -p "$OUT"
. "$(bash scripts/setup-v2-clients.sh)"
"$BIN" serve --model "$MODEL" --name m --shape "$SHAPE" --bind 127.0.0.1 --port "$PORT" --grpc-port "$GRPC_PORT" \
  --threads 1 --meter none --max-batch-size 16 --max-queue-delay-ms 1 >"$OUT/server.log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' EXIT
wait_ready "http://127.0.0.1:$PORT/v2/models/m/ready" 120
drive() { # NAME PROTOCOL URL
  for c in 1 4 16; do
    "$GREENBATCH_PERF_ANALYZER" -m m -u "$3" -i "$2" -b 1 --shape "input__0:$SHAPE" --input-data zero \
      --measurement-mode count_windows --measurement-request-count "$COUNT" --max-trials 10 \
      --stability-percentage 999 --concurrency-range "$c" -f "$OUT/$1-c$c.csv" >"$OUT/$1-c$c.txt" 2>&1
  done
}
log "http (A)"; drive http-a http "127.0.0.1:$PORT"
log "grpc (B)"; drive grpc-a grpc "127.0.0.1:$GRPC_PORT"
log "grpc (B)"; drive grpc-b grpc "127.0.0.1:$GRPC_PORT"
log "http (A)"; drive http-b http "127.0.0.1:$PORT"
lscpu | grep -E 'Model name|^CPU\(s\)' >"$OUT/host.txt"
python3 - "$OUT" <<'PY' | tee "$OUT/compare.md"
import csv, sys
out = sys.argv[1]
def row(n):
    with open(f"{out}/{n}.csv") as f:
        return next(csv.DictReader(f))
def mean(key, proto, c, scale=1.0):
    return sum(float(row(f"{proto}-{x}-c{c}")[key]) for x in "ab") / 2 / scale
print("| concurrency | HTTP inf/s | gRPC inf/s | gRPC / HTTP | HTTP p50 ms | gRPC p50 ms | HTTP p99 ms | gRPC p99 ms |")
print("|---|---|---|---|---|---|---|---|")
for c in (1, 4, 16):
    th, tg = mean("Inferences/Second", "http", c), mean("Inferences/Second", "grpc", c)
    p50h, p50g = mean("p50 latency", "http", c, 1000), mean("p50 latency", "grpc", c, 1000)
    p99h, p99g = mean("p99 latency", "http", c, 1000), mean("p99 latency", "grpc", c, 1000)
    print(f"| {c} | {th:.0f} | {tg:.0f} | {tg / th:.2f}x | {p50h:.2f} | {p50g:.2f} | {p99h:.2f} | {p99g:.2f} |")
PY
