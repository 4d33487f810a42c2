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
# Results: $OUT/gpu-all.tgz (one file, so it comes back), packed every 20 s, after the profiler part
# and at exit: a run the call's limit cuts short still brings back what it measured. BUDGET (560 s)
# bounds the whole run: the serving part gets what the profiler part left. Run it with the device
# tool's kind nvidia-h200: the J/image anchor is an H200's (compare.py says when it is not).
# profile = benchmarks/gpu/run.sh for resnet50: link check and build info, Python eager vs the
#   default runtime profile twice back to back vs a --cuda-graphs profile (speed, J/image,
#   repeatability), served outputs vs eager PyTorch (with and without graphs, an uncapturable model),
#   OOM row, fp16/bf16, tune.
# serve = benchmarks/gpu/serve.sh: batch-1 vs adaptive vs adaptive with CUDA graphs at 500 and 2000
#   req/s, with the fresh profiles; run alone (`all.sh serve`), also adaptive over gRPC.
# With time left: RESULTS=/tmp/gb-shuffle MODELS=shufflenet_v2_x0_5 bash benchmarks/gpu/all.sh profile
set -uo pipefail
R=${RESULTS:-/tmp/greenbatch-gpu-all}
WHAT=${1:-all}
BUDGET=${BUDGET:-560}
mkdir -p "$R/profile" "$R/serve"
# Written beside, then renamed: a pack cut short never replaces a whole one.
# Each pack its own temp file (the periodic one may run beside the last); tar's 1 is "a file
# changed as it was read" (logs still written), still a whole archive.
pack() {
  [ -n "${OUT:-}" ] || return 0
  local tmp="$OUT/.gpu-all.tgz.$BASHPID"
  tar czf "$tmp" -C "$R" . 2>/dev/null
  if [ $? -le 1 ]; then mv -f "$tmp" "$OUT/gpu-all.tgz"; else rm -f "$tmp"; fi
}
trap pack EXIT
( while sleep 20; do pack; done ) </dev/null >/dev/null 2>&1 &
PACKER=$!
left() { echo $((BUDGET - SECONDS)); }
export BIN=${BIN:-.device/greenbatch-runtime}
export MODEL_DIR=/tmp/greenbatch-models  # outside $R: the traced models stay off the results
if [ "$WHAT" = all ] || [ "$WHAT" = profile ]; then
  export RUNS=${RUNS:-"rust1: rust2: graphs1:--cuda-graphs"}
  MODELS=${MODELS:-resnet50} OUT="$R/profile" timeout -k 10 400 bash benchmarks/gpu/run.sh 2>&1 | tee "$R/profile/run.log"
  pack
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
  if [ ! -f "$MODEL" ] && [ "$(left)" -gt 200 ]; then
    mkdir -p "$MODEL_DIR"
    timeout --foreground 120 python3 benchmarks/python_eager_sweep.py --model resnet50 --trace-to "$MODEL" || MODEL=builtin:resnet50
  fi
  [ -f "$MODEL" ] || MODEL=builtin:resnet50
  echo "serving $MODEL with profiles $PROFILE and ${GRAPHS_PROFILE:-(no graphs profile)}"
  # Alone in its call (`all.sh serve`) the serving part has the call's 10 minutes, and also runs the
  # adaptive policy over gRPC; after the profiler in the same call it keeps to 170 s without it.
  if [ "$WHAT" = serve ]; then SERVE_TIMEOUT=400; GRPC=${GRPC:-1}; else SERVE_TIMEOUT=170; GRPC=${GRPC:-0}; fi
  [ "$(left)" -lt "$SERVE_TIMEOUT" ] && SERVE_TIMEOUT=$(($(left) > 30 ? $(left) : 30))
  echo "serving part: ${SERVE_TIMEOUT} s"
  # --device cuda: a GPU the runtime cannot see is a failure here, not a CPU measurement.
  GRAPHS_PROFILE="$GRAPHS_PROFILE" RATES=${RATES:-"500 2000"} GRPC="$GRPC" EXTRA="--device cuda" \
  MODEL="$MODEL" OUT="$R/serve" PROFILE="$PROFILE" DURATION=${DURATION:-6} timeout -k 10 "$SERVE_TIMEOUT" bash benchmarks/gpu/serve.sh 2>&1 | tee "$R/serve/run.log"
fi
kill "$PACKER" 2>/dev/null
pack
