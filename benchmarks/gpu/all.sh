#!/usr/bin/env bash
# Every GPU check in one run, for a session lent a GPU host (no Rust toolchain there). Build the
# runtime here first and carry it:
#   source ~/.cache/greenbatch/libtorch.env && cargo build --release -p greenbatch-runtime
#   mkdir -p .device && cp $CARGO_TARGET_DIR/release/greenbatch-runtime .device/ && strip .device/greenbatch-runtime
# then, on the device (carry [".device"], timeout ~540 s; it needs ~8 minutes):
#   bash benchmarks/gpu/all.sh   # results in $OUT/gpu-all.tgz (one file, so it comes back)
# Steps: the profiler checks (benchmarks/gpu/run.sh: link check, Python eager vs runtime for resnet50
# and shufflenet_v2_x0_5, two back-to-back profiles, OOM row, tune) and the serving check
# (benchmarks/gpu/serve.sh: batch-1 vs adaptive at 100/500/2000 req/s, using the fresh profile).
set -uo pipefail
R=${RESULTS:-/tmp/greenbatch-gpu-all}
mkdir -p "$R/profile" "$R/serve"
export BIN=${BIN:-.device/greenbatch-runtime}
OUT="$R/profile" timeout 420 bash benchmarks/gpu/run.sh 2>&1 | tee "$R/profile/run.log"
PROFILE="$R/profile/rust1-resnet50.json"
[ -f "$PROFILE" ] || PROFILE=benchmarks/results/h200-20261126/rust1-resnet50.json
OUT="$R/serve" PROFILE="$PROFILE" DURATION=${DURATION:-6} timeout 150 bash benchmarks/gpu/serve.sh 2>&1 | tee "$R/serve/run.log"
if [ -n "${OUT:-}" ]; then tar czf "$OUT/gpu-all.tgz" -C "$R" .; fi
