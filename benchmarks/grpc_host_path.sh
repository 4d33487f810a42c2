#!/usr/bin/env bash
# The protocol's share of the host path for large tensors, side by side in one run: one release
# runtime serving a trivial TorchScript model that takes 3x224x224 float32 (602 KB per request, a
# ResNet input) and averages it — so the model costs next to nothing — driven by the runtime's own
# load generator, closed loop with 32 requests in flight, over HTTP (binary tensor extension, a
# pool of connections) and over gRPC (raw tensors) on 1 and on 4 HTTP/2 connections. The same
# server process answers all (HTTP port and --grpc-port). Order A B C A B C (this machine's speed
# drifts over minutes); reports requests/s, p50/p99 and the gRPC/HTTP throughput ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
build_runtime_release
OUT=${OUT:-benchmarks/results/grpc-host-path-$(date +%Y%m%d-%H%M)}
DURATION=${DURATION:-10}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
mean_model "$OUT/mean.pt"
PORT=18097
GRPC_PORT=18098
"$BIN" serve --model "$OUT/mean.pt" --shape 3,224,224 --name m --bind 127.0.0.1 --port "$PORT" \
  --grpc-port "$GRPC_PORT" --threads 1 --meter none --max-batch-size 32 --max-queue-delay-ms 2 \
  --http-threads 2 >"$OUT/server.log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' EXIT
wait_ready "http://127.0.0.1:$PORT/v2/models/m/ready" 120
drive() { # NAME [loadgen args...]
  local name=$1; shift
  "$BIN" loadgen --url "http://127.0.0.1:$PORT" --model m --concurrency 32 --duration-seconds "$DURATION" \
    --threads 2 --json "$OUT/$name.json" "$@" >/dev/null
}
for round in a b; do
  drive "http-$round"
  drive "grpc1-$round" --grpc "127.0.0.1:$GRPC_PORT" --grpc-connections 1
  drive "grpc4-$round" --grpc "127.0.0.1:$GRPC_PORT" --grpc-connections 4
done
"$BIN" --version >"$OUT/runtime-version.txt"
git rev-parse HEAD >"$OUT/rev.txt"
rm -f "$OUT/mean.pt"
"$GREENBATCH_VENV/bin/python" - "$OUT" <<'PY' | tee "$OUT/grpc-host-path.md"
import json, sys
out = sys.argv[1]
print("| run | protocol | requests/s | p50 ms | p99 ms | errors |")
print("|---|---|---|---|---|---|")
rate = {}
for round in "ab":
    for name in ("http", "grpc1", "grpc4"):
        r = json.load(open(f"{out}/{name}-{round}.json"))
        rate[(name, round)] = r["throughput_per_second"]
        label = {"http": "HTTP", "grpc1": "gRPC, 1 connection", "grpc4": "gRPC, 4 connections"}[name]
        print(f"| {name}-{round} | {label} | {r['throughput_per_second']:.0f} | {r['latency_p50_ms']:.2f} | {r['latency_p99_ms']:.2f} | {sum(r['errors'].values())} |")
for name in ("grpc1", "grpc4"):
    print(f"\n{name}/HTTP throughput: {rate[(name, 'a')] / rate[('http', 'a')]:.2f} (a), {rate[(name, 'b')] / rate[('http', 'b')]:.2f} (b)")
PY
