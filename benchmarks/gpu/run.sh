#!/usr/bin/env bash
# GPU checks for the runtime's profiler, in one run on a GPU host (no Rust toolchain needed there):
#   1. the CUDA link trap is fixed: the binary links libtorch_cuda and sees the GPU;
#   2. for resnet50 and shufflenet_v2_x0_5 (TorchScript traced from torchvision, random weights):
#      Python torch eager sweep, then `greenbatch-runtime profile` twice back to back, all with the
#      same protocol and the same NVML counter; compare.py prints latency and J/inference ratios,
#      the deviation from the H200 reference sweep, and run-to-run agreement. $RUNS lists the runtime
#      profiles as LABEL:FLAGS; the default runs the default twice (rust1/rust2), `--cuda-graphs` twice
#      (graphs1/graphs2: speed, energy and repeatability of replayed CUDA graphs) and the TorchScript
#      as saved (`--graph=none`, what freezing is worth on this GPU);
#   3. CUDA out of memory at a huge batch is reported as a skipped row, not a crash.
# Usage (repo root): BIN=path/to/greenbatch-runtime OUT=results-dir bash benchmarks/gpu/run.sh
set -uo pipefail
BIN=${BIN:-.device/greenbatch-runtime}
OUT=${OUT:-/tmp/greenbatch-gpu}
WORK=${MODEL_DIR:-$(mktemp -d)}  # the traced models
mkdir -p "$WORK"
MODELS=${MODELS:-"resnet50 shufflenet_v2_x0_5"}
RUNS=${RUNS:-"rust1: rust2: graphs1:--cuda-graphs graphs2:--cuda-graphs none:--graph=none"}
ANCHOR=core/fixtures/h200_torch_eager_sweep.json
mkdir -p "$OUT"
TORCH_LIB=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONUNBUFFERED=1 GREENBATCH_LOG_FORMAT=text
step() { echo "== $(date +%T) $*"; }

step "host"
# Before any CUDA context of ours: the idle draw, P-state and clocks, to tell a host that idles high
# (the 2026-11-26 H200 drew 125 W idle with a context, the reference host 83 W) from our own doing.
nvidia-smi --query-gpu=name,driver_version,power.limit,power.draw,pstate,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/host.txt"
python3 -c 'import torch; print("torch", torch.__version__)' | tee -a "$OUT/host.txt"
"$BIN" --version | tee -a "$OUT/host.txt"
step "link check"
if ldd "$BIN" | grep -q libtorch_cuda.so; then echo "ok: $BIN links libtorch_cuda.so"; else echo "FAIL: libtorch_cuda.so not linked"; fi | tee -a "$OUT/host.txt"

for m in $MODELS; do
  step "trace $m"
  timeout --foreground 120 python3 benchmarks/python_eager_sweep.py --model "$m" --trace-to "$WORK/$m.pt" || echo "FAIL trace $m"
done
for m in $MODELS; do
  step "python eager $m"
  timeout --foreground 200 python3 benchmarks/python_eager_sweep.py --model "$m" --device cuda --out "$OUT/py-$m.json" 2>>"$OUT/log.txt" || echo "FAIL python $m"
  # Each run is LABEL:FLAGS (FLAGS comma-separated). A pair LABEL1/LABEL2 is compared back to back.
  for run in $RUNS; do
    label=${run%%:*}; flags=${run#*:}
    step "rust profile $m $label ${flags//,/ }"
    # shellcheck disable=SC2086  # flags split on purpose
    timeout --foreground 200 "$BIN" profile --device cuda --model "$WORK/$m.pt" ${flags//,/ } --json "$OUT/$label-$m.json" >>"$OUT/tables.txt" 2>>"$OUT/log.txt"
    echo "exit $?"
  done
  for run in $RUNS; do
    label=${run%%:*}; flags=${run#*:}
    case $label in *2) continue ;; esac
    pair=(); [ -f "$OUT/${label%1}2-$m.json" ] && [ "${label%1}" != "$label" ] && pair=(--rust2 "$OUT/${label%1}2-$m.json")
    [ -f "$OUT/$label-$m.json" ] && python3 benchmarks/compare.py --title "$m fp32, runtime ${flags//,/ } ($label)" \
      --python "$OUT/py-$m.json" --rust "$OUT/$label-$m.json" "${pair[@]}" --anchor "$ANCHOR" --anchor-model "$m" | tee -a "$OUT/compare.md"
  done
done

# check_served LOG FIXTURE [serve flags...]: serves a fixture model on the GPU and compares its
# replies with eager PyTorch (benchmarks/gpu/check_outputs.py); the server's log goes to $OUT/LOG.
check_served() {
  local log=$1 name=$2; shift 2
  "$BIN" serve --model "runtime/tests/fixtures/$name.pt" --shape 3,16,16 --device cuda --bind 127.0.0.1 --port 18081 \
    --max-batch-size 8 --max-queue-delay-ms 0 --shutdown-delay-seconds 0 "$@" >"$OUT/$log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do curl -sf http://127.0.0.1:18081/v2/health/ready >/dev/null && break; sleep 0.25; done
  echo "serve $name ${*:-(default)}:" | tee -a "$OUT/check-outputs.txt"
  timeout --foreground 60 python3 benchmarks/gpu/check_outputs.py --url http://127.0.0.1:18081 --name "$name" \
    --model "runtime/tests/fixtures/$name.pt" | tee -a "$OUT/check-outputs.txt"
  kill -TERM "$pid"; wait "$pid"
}
step "served outputs match eager PyTorch (default, then --cuda-graphs; padded batches)"
check_served check-serve.log conv_bn
check_served check-serve-graphs.log conv_bn --cuda-graphs

step "a model that cannot be captured falls back to eager execution with the same outputs"
check_served check-host-sync.log host_sync --cuda-graphs
grep -c "CUDA graph capture failed" "$OUT/check-host-sync.log" | sed 's/^/capture-failed warnings: /' | tee -a "$OUT/check-outputs.txt"

step "out of memory is a row, not a crash"
timeout --foreground 120 "$BIN" profile --model builtin:resnet18 --shape 3,2048,2048 --candidates 1,1024,2048 --windows 3 \
  --window-seconds 0.2 --warmup-seconds 0 --json "$OUT/oom.json" >"$OUT/oom.txt" 2>&1
echo "exit $?" | tee -a "$OUT/oom.txt"
tail -n 8 "$OUT/oom.txt"

step "fp16 and bf16 on CUDA (explicit options): a short profile each"
for p in fp16 bf16; do
  timeout --foreground 90 "$BIN" profile --model "$WORK/resnet50.pt" --precision "$p" --candidates 1,32 --windows 3 \
    --window-seconds 0.3 --warmup-seconds 0.5 --json "$OUT/$p-resnet50.json" >"$OUT/$p.txt" 2>&1
  echo "$p exit $?"; tail -n 4 "$OUT/$p.txt"
done

step "tune on the GPU (resnet50, p95 <= 10 ms) from the saved profile"
"$BIN" tune --from-profile "$OUT/rust1-resnet50.json" --slo-ms 10 --percentile 95 --plot "$OUT/tune-resnet50.svg" | tail -n 9
step "done"
