#!/usr/bin/env bash
# The server's own work per request, side by side in one run: the current runtime vs the runtime at
# $BASE (a git revision). Both serve a trivial TorchScript model that takes 3x224x224 float32 (602 KB
# per request) and averages it, so the model costs next to nothing and what is measured is the host
# path: HTTP, decoding, batch assembly and copies. Closed loop, 32 requests in flight, binary request
# bodies, dynamic batching (max batch 32, 2 ms), the load generator on the same machine. Order
# A B A B (this machine's speed drifts over minutes); reports requests/s and p50/p99 per run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
BASE=${BASE:?set BASE to the git revision to compare against}
OUT=${OUT:-benchmarks/results/host-path-$(date +%Y%m%d-%H%M)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# The base binary first: both builds share the release target dir (the worktree's crates get their
# own fingerprints, so switching back only relinks).
WT="$GREENBATCH_CACHE/host-path-base"
[ -d "$WT" ] || git worktree add --detach "$WT" "$BASE" >&2
git -C "$WT" checkout -q --detach "$BASE"
(cd "$WT" && build_runtime_release && cp "$BIN" "$OUT/base-runtime")
build_runtime_release
cp "$BIN" "$OUT/new-runtime"
git -C "$WT" rev-parse HEAD >"$OUT/base-rev.txt"
git rev-parse HEAD >"$OUT/new-rev.txt"
mean_model "$OUT/mean.pt"
PORT=18097
run() {
  local name=$1 bin=$2
  "$bin" serve --model "$OUT/mean.pt" --shape 3,224,224 --name m --bind 127.0.0.1 --port "$PORT" --threads 1 \
    --meter none --max-batch-size 32 --max-queue-delay-ms 2 --http-threads 2 >"$OUT/$name.log" 2>&1 &
  local pid=$!
  wait_ready "http://127.0.0.1:$PORT/v2/health/ready" || true
  "$bin" loadgen --url "http://127.0.0.1:$PORT" --model m --concurrency 32 --duration-seconds 10 --threads 2 \
    --json "$OUT/$name.json" >/dev/null
  kill -TERM "$pid"; wait "$pid" || true
}
run base-a "$OUT/base-runtime"
run new-a "$OUT/new-runtime"
run base-b "$OUT/base-runtime"
run new-b "$OUT/new-runtime"
rm -f "$OUT/base-runtime" "$OUT/new-runtime" "$OUT/mean.pt"
"$GREENBATCH_VENV/bin/python" - "$OUT" <<'PY' | tee "$OUT/host-path.md"
import json, sys
out = sys.argv[1]
base, new = open(f"{out}/base-rev.txt").read()[:8], open(f"{out}/new-rev.txt").read()[:8]
print(f"| run | runtime | requests/s | p50 ms | p99 ms | errors |")
print("|---|---|---|---|---|---|")
rates = {}
for name in ["base-a", "new-a", "base-b", "new-b"]:
    r = json.load(open(f"{out}/{name}.json"))
    rev = base if name.startswith("base") else new
    rates.setdefault(name.split("-")[0], []).append(r["throughput_per_second"])
    print(f"| {name} | {rev} | {r['throughput_per_second']:.0f} | {r['latency_p50_ms']:.2f} | {r['latency_p99_ms']:.2f} | {sum(r['errors'].values())} |")
print(f"\nthroughput ratio new/base: {rates['new'][0] / rates['base'][0]:.2f} (A), {rates['new'][1] / rates['base'][1]:.2f} (B)")
PY
