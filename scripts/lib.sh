# Shared helpers for the setup scripts. Sourced, never executed.
# Everything downloaded or built is cached under one fixed directory so a second run is fast.
GREENBATCH_CACHE="${GREENBATCH_CACHE:-$HOME/.cache/greenbatch}"
export GREENBATCH_CACHE
mkdir -p "$GREENBATCH_CACHE"

log() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# apt-get update at most once per script run, and only when a package is missing.
_apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "need Debian packages ${missing[*]} but apt-get is not available"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  local aptlog="$GREENBATCH_CACHE/apt.log"
  if [ $_apt_updated -eq 0 ]; then $sudo apt-get update -qq >>"$aptlog" 2>&1 || die "apt-get update failed (see $aptlog)"; _apt_updated=1; fi
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1 \
    || { tail -20 "$aptlog" >&2; die "apt-get install ${missing[*]} failed (full log: $aptlog)"; }
}

# Polls URL until it answers 2xx, for up to SECONDS (default 30); returns 1 if it never does.
wait_ready() {
  local url=$1 tries=$(( ${2:-30} * 4 ))
  for _ in $(seq 1 "$tries"); do curl -sf "$url" >/dev/null && return 0; sleep 0.25; done
  return 1
}

# Sets up libtorch, builds greenbatch-runtime in release mode in the shared target dir (so every
# checkout and CI reuse one build), and sets BIN to the binary. Needs the repository root as cwd.
# A TorchScript model that takes 3x224x224 float32 (a ResNet input, 602 KB) and only averages it:
# serving it measures the host path (transport, decoding, batching), not a model. Needs libtorch's
# venv (scripts/setup-libtorch.sh, which build_runtime_release sources).
mean_model() {
  "$GREENBATCH_VENV/bin/python" - "$1" <<'PY'
import sys, torch
class Mean(torch.nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))
torch.jit.trace(Mean(), torch.randn(1, 3, 224, 224)).save(sys.argv[1])
PY
}

build_runtime_release() {
  . "$(bash scripts/setup-libtorch.sh)"
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$GREENBATCH_CACHE/target}"
  cargo build --quiet --release --locked -p greenbatch-runtime
  BIN="$CARGO_TARGET_DIR/release/greenbatch-runtime"
}
