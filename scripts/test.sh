#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine, then runs every check:
# rustfmt, clippy (warnings are errors), rustdoc (the same), the CRD drift check, and all tests — unit, property,
# runtime tests on real libtorch (CPU), and integration tests against a real kube-apiserver + etcd.
# Downloads and builds are cached under $GREENBATCH_CACHE (default ~/.cache/greenbatch).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
started=$(date +%s)

# prometheus: for promtool, which checks the runtime's /metrics exposition in the serve tests.
apt_install build-essential pkg-config ca-certificates openssl curl python3 python3-venv prometheus
if ! command -v cargo >/dev/null; then die "cargo not found: install a Rust toolchain (rustup) first"; fi
for c in rustfmt clippy; do
  cargo "$( [ $c = rustfmt ] && echo fmt || echo clippy )" --version >/dev/null 2>&1 || rustup component add "$c"
done

. "$(bash scripts/setup-libtorch.sh)"
. "$(bash scripts/setup-test-cluster.sh)"
. "$(bash scripts/setup-v2-clients.sh)"
. "$(bash scripts/setup-s3-test.sh)"
# The runtime tests skip checks whose tools are missing on a developer's machine; CI must not.
export GREENBATCH_REQUIRE_PROMTOOL=1 GREENBATCH_REQUIRE_V2_CLIENTS=1 GREENBATCH_REQUIRE_KUBERNETES_VALIDATE=1
export GREENBATCH_REQUIRE_S3_STORE=1
log "libtorch: $LIBTORCH"
log "test cluster: $GREENBATCH_KUBE_APISERVER"

# One target dir for every checkout, so a second run (CI on a fresh clone) reuses the build.
own_target="$GREENBATCH_CACHE/target"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$own_target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Our own target dir only grows (stale test binaries of every past change, incremental state): past
# GREENBATCH_TARGET_MAX_GB (default 30) its build products are cleared, and a full rebuild follows,
# so a long-lived CI cache cannot fill the disk. A target dir set by the user is never touched.
# CI skips incremental state, the largest part and of little use to a fresh clone.
max_gb="${GREENBATCH_TARGET_MAX_GB:-30}"
if [ "$CARGO_TARGET_DIR" = "$own_target" ] && [ -f "$own_target/CACHEDIR.TAG" ]; then
  used_gb=$(( $(du -sk "$own_target" | cut -f1) / 1024 / 1024 ))
  if [ "$used_gb" -gt "$max_gb" ]; then
    log "target dir $own_target holds ${used_gb} GB (> ${max_gb}): clearing its build products"
    rm -rf "$own_target/debug" "$own_target/release"
  fi
fi
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The API docs (ours only) build without warnings: a broken intra-doc link is a regression too.
log "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --locked --quiet
log "CRD YAML matches the generator"
cargo run --quiet --locked -p greenbatch-crds --bin crdgen -- --check
log "Dockerfiles lint clean (the images are not built here: no container engine)"
"$GREENBATCH_HADOLINT" images/*.Dockerfile
log "cargo test"
cargo test --workspace --locked -- --test-threads="${GREENBATCH_TEST_THREADS:-2}"
log "all checks passed in $(( $(date +%s) - started )) s"
