#!/usr/bin/env bash
# The main job on the local default: set up libtorch, build the runtime, and let it measure a model
# and choose its batch size for a latency SLO. Uses the GPU where there is one (NVML energy), the CPU
# otherwise (energy only where RAPL is readable; otherwise the choice rests on latency and says so).
#   scripts/tune.sh                       # resnet18 (random weights), p99 <= 200 ms
#   scripts/tune.sh --model builtin:resnet50 --slo-ms 50 --percentile 95 --rate 500
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_install build-essential pkg-config ca-certificates python3 python3-venv
log "building greenbatch-runtime (release)"
build_runtime_release
if [ $# -eq 0 ]; then
  set -- --model builtin:resnet18 --slo-ms 200 --candidates 1,2,4,8,16,32 --plot greenbatch-tune.svg --json greenbatch-profile.json
fi
exec "$BIN" tune "$@"
