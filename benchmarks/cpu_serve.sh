#!/usr/bin/env bash
# SLO attainment while serving at fixed request rates, batch-1 serving vs the adaptive policy, on the
# CPU: the CPU counterpart of benchmarks/gpu/serve.sh (which it runs), for a machine without a GPU.
# torchvision resnet18 traced to TorchScript (random weights), 2 threads; the adaptive policy decides
# from a profile measured first with the same binary and threads. No energy meter here (no RAPL on
# this machine), so J/request is not reported — the comparison is latency and SLO attainment.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
build_runtime_release
OUT=${OUT:-benchmarks/results/cpu-serve-$(date +%Y%m%d-%H%M)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
"$GREENBATCH_VENV/bin/python" benchmarks/python_eager_sweep.py --model resnet18 --trace-to "$OUT/resnet18.pt" >/dev/null
"$BIN" profile --model "$OUT/resnet18.pt" --device cpu --threads 2 --meter none --candidates 1,2,4,8,16 \
  --windows 5 --window-seconds 0.5 --json "$OUT/profile.json" | tee "$OUT/profile.txt"
PATH="$GREENBATCH_VENV/bin:$PATH" BIN="$BIN" OUT="$OUT" MODEL="$OUT/resnet18.pt" NAME=resnet18 \
  RATES="${RATES:-10 30 45}" DURATION="${DURATION:-15}" SLO_MS="${SLO_MS:-500}" PROFILE="$OUT/profile.json" \
  EXTRA="--device cpu --threads 2 --meter none" bash benchmarks/gpu/serve.sh | tee "$OUT/serve.md"
lscpu | grep -E 'Model name|^CPU\(s\)' >"$OUT/host.txt"
