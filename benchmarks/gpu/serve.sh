#!/usr/bin/env bash
# Serving energy at fixed request rates: batch-1 serving vs the adaptive policy, driven by the
# runtime's open-loop Poisson load generator. For each policy the server runs alone on the GPU;
# J/request comes from the server's own NVML-counter accounting (energy / inferences over the run).
# With GRAPHS_PROFILE (a profile measured with --cuda-graphs), a third policy serves adaptively with
# replayed CUDA graphs. With GRPC=1 (the default) a last policy serves as adaptive does, driven
# over KServe v2 gRPC instead of HTTP (the loadgen's --grpc): the protocol's share of the host path.
# Usage (repo root): BIN=path/to/greenbatch-runtime OUT=dir bash benchmarks/gpu/serve.sh
set -uo pipefail
BIN=${BIN:-.device/greenbatch-runtime}
OUT=${OUT:-/tmp/greenbatch-serve}
MODEL=${MODEL:-builtin:resnet50}
NAME=${NAME:-resnet50}
SHAPE=${SHAPE:-3,224,224}
RATES=${RATES:-"100 500 2000"}
DURATION=${DURATION:-8}
SLO_MS=${SLO_MS:-50}
PROFILE=${PROFILE:-benchmarks/results/h200-20261126/rust1-resnet50.json}
EXTRA=${EXTRA:-}
PORT=${PORT:-18080}
GRPC_PORT=${GRPC_PORT:-18081}
mkdir -p "$OUT"
if python3 -c 'import torch' 2>/dev/null; then
  TORCH_LIB=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
  export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# The server and the load generator on separate cores where the host has enough (taskset from
# util-linux), so the client's work does not eat into the server's.
SERVER_CPUS=(); CLIENT_CPUS=()
n=$(nproc 2>/dev/null || echo 1)
if command -v taskset >/dev/null && [ "$n" -ge 8 ]; then
  SERVER_CPUS=(taskset -c "0-$((n / 2 - 1))"); CLIENT_CPUS=(taskset -c "$((n / 2))-$((n - 1))")
  echo "server on cores 0-$((n / 2 - 1)), load generator on $((n / 2))-$((n - 1))"
fi
policy() {
  local name=$1; shift
  local server_grpc=() client_grpc=()
  case $name in *-grpc) server_grpc=(--grpc-port "$GRPC_PORT"); client_grpc=(--grpc "127.0.0.1:$GRPC_PORT");; esac
  "${SERVER_CPUS[@]}" "$BIN" serve --model "$MODEL" --shape "$SHAPE" --name "$NAME" --bind 127.0.0.1 --port "$PORT" --http-threads 8 --shutdown-delay-seconds 0 $EXTRA "${server_grpc[@]}" "$@" \
    >"$OUT/serve-$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 240); do
    curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null && break
    sleep 0.25
  done
  for rate in $RATES; do
    echo "== $(date +%T) $name at $rate req/s"
    curl -sf "http://127.0.0.1:$PORT/metrics" >"$OUT/window-$name-$rate-0.txt"; date +%s.%N >"$OUT/window-$name-$rate-0.time"
    "${CLIENT_CPUS[@]}" "$BIN" loadgen --url "http://127.0.0.1:$PORT" "${client_grpc[@]}" --model "$NAME" --rate "$rate" --duration-seconds "$DURATION" \
      --slo-ms "$SLO_MS" --threads 8 --json "$OUT/$name-$rate.json" >/dev/null 2>>"$OUT/loadgen.log" || echo "loadgen failed"
    curl -sf "http://127.0.0.1:$PORT/metrics" >"$OUT/window-$name-$rate-1.txt"; date +%s.%N >"$OUT/window-$name-$rate-1.time"
  done
  curl -sf "http://127.0.0.1:$PORT/metrics" >"$OUT/metrics-$name.txt" || echo "no metrics from $name"
  kill -TERM "$pid"; wait "$pid"; echo "server exit $?"
}
policy batch1 --max-batch-size 1 --max-queue-delay-ms 0
policy adaptive --max-batch-size 256 --max-queue-delay-ms 5 --profile "$PROFILE" --slo-ms "$SLO_MS" --percentile 99
[ -n "${GRAPHS_PROFILE:-}" ] && policy adaptive-graphs --max-batch-size 256 --max-queue-delay-ms 5 --cuda-graphs \
  --profile "$GRAPHS_PROFILE" --slo-ms "$SLO_MS" --percentile 99
[ "${GRPC:-1}" = 1 ] && policy adaptive-grpc --max-batch-size 256 --max-queue-delay-ms 5 --profile "$PROFILE" --slo-ms "$SLO_MS" --percentile 99
python3 - "$OUT" "$RATES" "$SLO_MS" <<'PY'
import json, os, sys
out, rates, slo = sys.argv[1], sys.argv[2].split(), sys.argv[3]
print(f"\n| rate req/s | policy | ok/requests | throughput/s | p50 ms | p99 ms | within {slo} ms | J/request |")
print("|---|---|---|---|---|---|---|---|")
for rate in rates:
    for pol in ("batch1", "adaptive", "adaptive-graphs", "adaptive-grpc"):
        if pol in ("adaptive-graphs", "adaptive-grpc") and not os.path.exists(f"{out}/{pol}-{rate}.json"):
            continue
        try:
            r = json.load(open(f"{out}/{pol}-{rate}.json"))
        except Exception as e:
            print(f"| {rate} | {pol} | missing ({e}) |"); continue
        f = lambda v, d=2: "-" if v is None else f"{v:.{d}f}"
        att = r.get("slo_attainment")
        print(f"| {rate} | {pol} | {r['ok']}/{r['requests']} | {f(r['throughput_per_second'], 0)} | {f(r['latency_p50_ms'])} | {f(r['latency_p99_ms'])} | {f(att and att * 100, 1)}% | {f(r.get('joules_per_inference'), 3)} |")
PY
# Where the executor's time went over each policy's whole run (all rates): if the server, not the
# device, limits throughput, this says which stage.
python3 - "$OUT" <<'PY'
import glob, os, re, sys
print("\n| policy | batches | assemble s | forward s | respond s |")
print("|---|---|---|---|---|")
for path in sorted(glob.glob(f"{sys.argv[1]}/metrics-*.txt")):
    text = open(path).read()
    val = lambda pat: next((float(m.group(1)) for m in re.finditer(pat + r" ([0-9.eE+-]+)", text)), float("nan"))
    stage = lambda s: val(r'greenbatch_executor_seconds_total\{stage="' + s + r'"\}')
    name = os.path.basename(path)[len("metrics-"):-len(".txt")]
    print(f"| {name} | {val('greenbatch_batches_total'):.0f} | {stage('assemble'):.2f} | {stage('forward'):.2f} | {stage('respond'):.2f} |")
PY
# Per rate, the model thread as the operator reads it (operator/src/load.rs, sizing.rs): busy share,
# items per batch against the cap, and items served per busy second — what the operator takes as a
# pod's capacity when batches are full at the cap and the thread is busy (docs/operator.md,
# "Capacity"); beside the profile's capacity at that cap (batch / p50).
python3 - "$OUT" "$RATES" "$PROFILE" <<'PY'
import json, os, re, sys
out, rates, profile = sys.argv[1], sys.argv[2].split(), sys.argv[3]
rows = {}
try:
    for r in json.load(open(profile))["table"]["rows"]:
        rows[r["batchSize"]] = r["batchSize"] / (r["latencyMs"]["p50"] / 1000.0)
except Exception as e:
    print(f"(no profile capacities: {e})")
def val(text, pat):
    return sum(float(m.group(1)) for m in re.finditer(pat + r" ([0-9.eE+-]+)", text))
print("\n| policy | rate req/s | thread busy | items/batch | cap | served per busy s | profile capacity at cap | operator would learn |")
print("|---|---|---|---|---|---|---|---|")
for pol in ("batch1", "adaptive", "adaptive-graphs", "adaptive-grpc"):
    for rate in rates:
        try:
            a, b = (open(f"{out}/window-{pol}-{rate}-{i}.txt").read() for i in (0, 1))
            t0, t1 = (float(open(f"{out}/window-{pol}-{rate}-{i}.time").read()) for i in (0, 1))
        except OSError:
            continue
        busy_stage = r'greenbatch_executor_seconds_total\{stage="(?:assemble|forward|respond)"\}'
        busy = val(b, busy_stage) - val(a, busy_stage)
        served = val(b, r"greenbatch_inferences_total") - val(a, r"greenbatch_inferences_total")
        batches = val(b, r"greenbatch_batches_total") - val(a, r"greenbatch_batches_total")
        cap = int(val(b, r"greenbatch_max_batch_size"))
        share = busy / (t1 - t0) if t1 > t0 else float("nan")
        per_batch = served / batches if batches else float("nan")
        per_busy = served / busy if busy else float("nan")
        learn = share >= 0.8 and per_batch >= 0.9 * cap
        print(f"| {pol} | {rate} | {share:.2f} | {per_batch:.1f} | {cap} | {per_busy:.0f} | {rows.get(cap, float('nan')):.0f} | {'yes' if learn else 'no'} |")
PY
grep -h "adaptive batching" "$OUT"/serve-adaptive*.log | tail -n 8
