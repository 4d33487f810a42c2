#!/usr/bin/env bash
# Server overhead on the CPU, in one run: p50 latency of batch-1 requests through
# `greenbatch-runtime serve` (client-side, closed loop, concurrency 1, HTTP on loopback, binary tensor
# request body, max batch 1, no queue delay) minus the model's raw execution time at batch 1 (p50 from
# `greenbatch-runtime profile`, same binary, model and threads). Small model: the tiny TorchScript CNN
# fixture (3x16x16) and torchvision resnet18 (3x224x224).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
build_runtime_release
OUT=${OUT:-benchmarks/results/overhead-$(date +%Y%m%d-%H%M)}
mkdir -p "$OUT"
PORT=18096
measure() {
  local name=$1 model=$2 shape=$3
  "$BIN" profile --model "$model" --shape "$shape" --candidates 1 --windows 10 --window-seconds 0.5 --meter none \
    --threads 1 --json "$OUT/$name-profile.json" >/dev/null 2>&1
  "$BIN" serve --model "$model" --shape "$shape" --name m --bind 127.0.0.1 --port "$PORT" --threads 1 --meter none \
    --max-batch-size 1 --max-queue-delay-ms 0 >"$OUT/$name-serve.log" 2>&1 &
  local pid=$!
  wait_ready "http://127.0.0.1:$PORT/v2/health/ready" || true
  "$BIN" loadgen --url "http://127.0.0.1:$PORT" --model m --concurrency 1 --duration-seconds 10 --threads 1 --json "$OUT/$name-serve.json" >/dev/null
  kill -TERM "$pid"; wait "$pid" || true
  python3 - "$OUT" "$name" <<'PY'
import json, sys
out, name = sys.argv[1], sys.argv[2]
raw = json.load(open(f"{out}/{name}-profile.json"))["table"]["rows"][0]["latencyMs"]["p50"]
srv = json.load(open(f"{out}/{name}-serve.json"))["latency_p50_ms"]
print(f"| {name} | {raw:.3f} | {srv:.3f} | {srv - raw:.3f} |")
PY
}
{
  echo "| model | raw execution p50 ms | served request p50 ms | overhead ms |"
  echo "|---|---|---|---|"
  measure tiny_cnn runtime/tests/fixtures/tiny_cnn.pt 3,16,16
  "$GREENBATCH_VENV/bin/python" benchmarks/python_eager_sweep.py --model resnet18 --trace-to "$OUT/resnet18.pt" 2>/dev/null
  measure resnet18 "$OUT/resnet18.pt" 3,224,224
} | tee "$OUT/overhead.md"
