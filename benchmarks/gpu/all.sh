#!/usr/bin/env bash
# The GPU checks for a session lent a GPU host (no Rust toolchain there). Build the runtime here
# first (with CUDA-graph support: `greenbatch-runtime --version` says so) and carry it:
#   source ~/.cache/greenbatch/libtorch.env && cargo build --release -p greenbatch-runtime
#   mkdir -p .device && cp target/release/greenbatch-runtime .device/ && strip .device/greenbatch-runtime
# A device call may run 10 minutes and a session has 15 in all, start-up included. Estimated from
# the H200 run of 2026-11-26: the profiler part ~5.5 min, the serving part ~2 min.
#   one call  (timeout_s 590): bash benchmarks/gpu/all.sh            # profile, then serve
#   two calls (safer; each ~5 min):
#     bash benchmarks/gpu/all.sh profile   # then copy its results to .device/results/profile here
#     bash benchmarks/gpu/all.sh serve     # carry [".device"]: uses .device/results/profile if
#                                          # this call's machine no longer has the first's files
# Results: $OUT/gpu-all.tgz (one file, so it comes back).
# profile = benchmarks/gpu/run.sh for resnet50: link check and build info, Python eager vs the
#   default runtime profile vs two back-to-back --cuda-graphs profiles (speed, J/image,
#   repeatability), served outputs vs eager PyTorch (with and without graphs, an uncapturable model),
#   OOM row, fp16/bf16, tune.
# serve = benchmarks/gpu/serve.sh: batch-1 vs adaptive vs adaptive with CUDA graphs at 500 and 2000
#   req/s, with the fresh profiles; run alone (`all.sh serve`), also adaptive over gRPC.
# With time left: RESULTS=/tmp/gb-shuffle MODELS=shufflenet_v2_x0_5 bash benchmarks/gpu/all.sh profile
set -uo pipefail
R=${RESULTS:-/tmp/greenbatch-gpu-all}
WHAT=${1:-all}
mkdir -p "$R/profile" "$R/serve"
export BIN=${BIN:-.device/greenbatch-runtime}
export MODEL_DIR=/tmp/greenbatch-models  # outside $R: the traced models stay off the results
if [ "$WHAT" = all ] || [ "$WHAT" = profile ]; then
  export RUNS=${RUNS:-"rust1: graphs1:--cuda-graphs graphs2:--cuda-graphs"}
  MODELS=${MODELS:-resnet50} OUT="$R/profile" timeout 400 bash benchmarks/gpu/run.sh 2>&1 | tee "$R/profile/run.log"
fi
if [ "$WHAT" = all ] || [ "$WHAT" = serve ]; then
  P="$R/profile"
  [ -f "$P/rust1-resnet50.json" ] || P=.device/results/profile
  PROFILE="$P/rust1-resnet50.json"
  [ -f "$PROFILE" ] || PROFILE=benchmarks/results/h200-20261126/rust1-resnet50.json
  GRAPHS_PROFILE="$P/graphs1-resnet50.json"
  [ -f "$GRAPHS_PROFILE" ] || GRAPHS_PROFILE=
  # Serve the same traced TorchScript the profile measured (the native build is another code path).
  MODEL="$MODEL_DIR/resnet50.pt"
  if [ ! -f "$MODEL" ]; then
    mkdir -p "$MODEL_DIR"
    timeout 120 python3 benchmarks/python_eager_sweep.py --model resnet50 --trace-to "$MODEL" || MODEL=builtin:resnet50
  fi
  echo "serving $MODEL with profiles $PROFILE and ${GRAPHS_PROFILE:-(no graphs profile)}"
  # Alone in its call (`all.sh serve`) the serving part has the call's 10 minutes, and also runs the
  # adaptive policy over gRPC; after the profiler in the same call it keeps to 170 s without it.
  if [ "$WHAT" = serve ]; then SERVE_TIMEOUT=400; GRPC=${GRPC:-1}; else SERVE_TIMEOUT=170; GRPC=${GRPC:-0}; fi
  GRAPHS_PROFILE="$GRAPHS_PROFILE" RATES=${RATES:-"500 2000"} GRPC="$GRPC" \
  MODEL="$MODEL" OUT="$R/serve" PROFILE="$PROFILE" DURATION=${DURATION:-6} timeout "$SERVE_TIMEOUT" bash benchmarks/gpu/serve.sh 2>&1 | tee "$R/serve/run.log"
fi
if [ -n "${OUT:-}" ]; then tar czf "$OUT/gpu-all.tgz" -C "$R" .; fi
