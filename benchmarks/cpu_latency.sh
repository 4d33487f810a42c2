#!/usr/bin/env bash
# CPU benchmark, side by side in one run: per-batch latency of greenbatch-runtime (Rust, tch) vs
# Python torch eager on the same model (torchvision resnet18, random weights, traced to TorchScript
# for the runtime; also the runtime's native tch::vision build), same threads and input, batch 1..64.
# The runtime runs the TorchScript as it serves it by default on the CPU (frozen +
# optimize_for_inference, `--graph auto`) and once more as saved (`--graph none`), to show what the
# graph preparation is worth. Order A B B B A (python, rust x3, python): this machine's speed drifts
# over minutes.
# Also reports the profile's wall time and per-row spread. Writes results under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
build_runtime_release
PY="$GREENBATCH_VENV/bin/python"
OUT=${OUT:-benchmarks/results/cpu-$(date +%Y%m%d-%H%M)}
THREADS=${THREADS:-2}
MODEL=${MODEL:-resnet18}
BATCHES=${BATCHES:-1,2,4,8,16,32,64}
mkdir -p "$OUT"
"$PY" benchmarks/python_eager_sweep.py --model "$MODEL" --trace-to "$OUT/$MODEL.pt"
common=(--windows 5 --window-seconds 0.5 --warmup-seconds 1)
py() { "$PY" benchmarks/python_eager_sweep.py --model "$MODEL" --device cpu --meter none --threads "$THREADS" \
        --batches "$BATCHES" "${common[@]}" --out "$1" 2>/dev/null; }
rs() { echo "$(basename "$2" .json):" >>"$OUT/time.txt"
      GREENBATCH_LOG=warn /usr/bin/time -f "%e s wall" "$BIN" profile --model "$1" --device cpu --meter none --threads "$THREADS" \
        --graph "$3" --candidates "$BATCHES" "${common[@]}" --json "$2" >/dev/null 2>>"$OUT/time.txt"; }
log "python eager (A)"; py "$OUT/py-a.json"
log "rust TorchScript, frozen + optimized (B)"; rs "$OUT/$MODEL.pt" "$OUT/rust-ts-b.json" auto
log "rust TorchScript as saved (B)"; rs "$OUT/$MODEL.pt" "$OUT/rust-ts-none-b.json" none
log "rust native tch::vision (B)"; rs "builtin:$MODEL" "$OUT/rust-native-b.json" auto
log "python eager (A)"; py "$OUT/py-a2.json"
lscpu | grep -E 'Model name|^CPU\(s\)' > "$OUT/host.txt"
{
  "$PY" benchmarks/compare.py --title "$MODEL CPU x$THREADS threads, runtime (TorchScript frozen + optimized, the default) vs python (first run)" --python "$OUT/py-a.json" --rust "$OUT/rust-ts-b.json"
  "$PY" benchmarks/compare.py --title "$MODEL CPU x$THREADS threads, runtime (TorchScript frozen + optimized, the default) vs python (second run)" --python "$OUT/py-a2.json" --rust "$OUT/rust-ts-b.json"
  "$PY" benchmarks/compare.py --title "$MODEL CPU x$THREADS threads, runtime (TorchScript as saved, --graph none) vs python (second run)" --python "$OUT/py-a2.json" --rust "$OUT/rust-ts-none-b.json"
  "$PY" benchmarks/compare.py --title "$MODEL CPU x$THREADS threads, native tch::vision in the runtime vs python (second run)" --python "$OUT/py-a2.json" --rust "$OUT/rust-native-b.json"
  echo; echo "profile wall times (rust, ${BATCHES}):"; cat "$OUT/time.txt"
} | tee "$OUT/compare.md"
