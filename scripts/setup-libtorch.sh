#!/usr/bin/env bash
# Provisions libtorch 2.11.0 for tch 0.24 from the PyPI torch wheel (the PyTorch download site is not
# reachable): a Python venv with torch 2.11.0 (+ its nvidia-* runtime wheels, which libtorch_cpu.so itself
# needs to load) and torchvision 0.26.0 (for fixtures and the Python baseline in the benchmarks).
# Cached under $GREENBATCH_CACHE/venv. Prints the path of an env file to source on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

VENV="$GREENBATCH_CACHE/venv"
ENV_FILE="$GREENBATCH_CACHE/libtorch.env"
TORCH_VERSION=2.11.0
TORCHVISION_VERSION=0.26.0

if ! "$VENV/bin/python" -c "import torch, torchvision; assert torch.__version__.startswith('$TORCH_VERSION')" 2>/dev/null; then
  command -v python3 >/dev/null || apt_install python3
  python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv  # Debian: venv without ensurepip fails
  log "creating $VENV with torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (~2.5 GB download, once)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --cache-dir "$GREENBATCH_CACHE/pip" \
    "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" numpy >&2
fi
TORCH_DIR="$("$VENV/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
[ -f "$TORCH_DIR/lib/libtorch_cpu.so" ] || die "no libtorch_cpu.so under $TORCH_DIR/lib"
# CUDA graph capture (runtime/cpp/script_module.cpp) compiles against the CUDA runtime headers. The
# wheels ship cuda_runtime_api.h but not crt/host_config.h, which is in nvidia-cuda-crt (headers only,
# ~170 kB): install the release matching the CUDA runtime wheel. Without it the runtime still builds,
# without --cuda-graphs.
if [ -f "$TORCH_DIR/lib/libtorch_cuda.so" ] && ! ls "$TORCH_DIR"/../nvidia/*/include/crt/host_config.h >/dev/null 2>&1; then
  CUDART="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(".".join(m.version("nvidia-cuda-runtime").split(".")[:2]))' 2>/dev/null || true)"
  if [ -n "$CUDART" ]; then
    log "installing nvidia-cuda-crt==$CUDART.* (CUDA headers for --cuda-graphs)"
    "$VENV/bin/pip" install -q --disable-pip-version-check --cache-dir "$GREENBATCH_CACHE/pip" "nvidia-cuda-crt==$CUDART.*" >&2 \
      || log "warning: nvidia-cuda-crt not installed; the runtime builds without --cuda-graphs"
  fi
fi
cat > "$ENV_FILE" <<ENV
export GREENBATCH_VENV="$VENV"
export LIBTORCH="$TORCH_DIR"
export LD_LIBRARY_PATH="$TORCH_DIR/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
ENV
log "libtorch ready: $TORCH_DIR"
echo "$ENV_FILE"
