#!/usr/bin/env bash
# The GPU checks in one device call, for a session lent a GPU host (no Rust toolchain there). Build
# the runtime here first and carry it:
#   source ~/.cache/greenbatch/libtorch.env && cargo build --release -p greenbatch-runtime
#   mkdir -p .device && cp $CARGO_TARGET_DIR/release/greenbatch-runtime .device/ && strip .device/greenbatch-runtime
# then, on the device (carry [".device"], timeout_s ~560):
#   bash benchmarks/gpu/all.sh   # results in $OUT/gpu-all.tgz (one file, so it comes back)
# A device call may run 10 minutes and a session has 15 in all, start-up included, so this call does
# what fits in ~7 minutes, most important first: the profiler checks for resnet50
# (benchmarks/gpu/run.sh: link check, Python eager vs the default runtime profile vs two back-to-back
# profiles with --cuda-graphs, OOM row, tune; ~5 min on the H200 of 2026-11-26) and the serving check
# (benchmarks/gpu/serve.sh: batch-1 vs adaptive vs adaptive with CUDA graphs at 500 and 2000 req/s
# with the fresh profiles; ~1.5 min). With time left, a second call does the shufflenet-class model:
#   RESULTS=/tmp/gb-shuffle MODELS=shufflenet_v2_x0_5 bash benchmarks/gpu/all.sh profile
set -uo pipefail
R=${RESULTS:-/tmp/greenbatch-gpu-all}
WHAT=${1:-all}
mkdir -p "$R/profile" "$R/serve"
export BIN=${BIN:-.device/greenbatch-runtime}
export MODEL_DIR=/tmp/greenbatch-models  # outside $R: the traced models stay off the results
export RUNS=${RUNS:-"rust1: graphs1:--cuda-graphs graphs2:--cuda-graphs"}
MODELS=${MODELS:-resnet50} OUT="$R/profile" timeout 330 bash benchmarks/gpu/run.sh 2>&1 | tee "$R/profile/run.log"
if [ "$WHAT" = all ]; then
  PROFILE="$R/profile/rust1-resnet50.json"
  [ -f "$PROFILE" ] || PROFILE=benchmarks/results/h200-20261126/rust1-resnet50.json
  # Serve the same traced TorchScript the profile measured (the native build is another code path).
  MODEL="$MODEL_DIR/resnet50.pt"
  [ -f "$MODEL" ] || MODEL=builtin:resnet50
  GRAPHS_PROFILE="$R/profile/graphs1-resnet50.json"
  [ -f "$GRAPHS_PROFILE" ] || GRAPHS_PROFILE=
  GRAPHS_PROFILE="$GRAPHS_PROFILE" RATES=${RATES:-"500 2000"} \
  MODEL="$MODEL" OUT="$R/serve" PROFILE="$PROFILE" DURATION=${DURATION:-6} timeout 170 bash benchmarks/gpu/serve.sh 2>&1 | tee "$R/serve/run.log"
fi
if [ -n "${OUT:-}" ]; then tar czf "$OUT/gpu-all.tgz" -C "$R" .; fi
