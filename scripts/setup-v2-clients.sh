#!/usr/bin/env bash
# Installs the standard KServe v2 clients the serve tests drive the runtime with:
#  - Triton's `tritonclient[http,grpc]` into the project venv (from PyPI);
#  - Triton's `perf_analyzer` (PyPI `perf-analyzer` 2.60.0). Its wheels are tagged manylinux_2_38 and
#    need glibc 2.38 / GLIBCXX_3.4.32, newer than Debian 12's: the wheel is unpacked with pip
#    --target, and Debian 13's libc6, libstdc++6 and libgcc-s1 are fetched with a *private* apt
#    configuration (the system's apt setup is untouched) and unpacked beside it; a wrapper runs the
#    binary through that loader.
# Prints the path of an env file exporting GREENBATCH_PERF_ANALYZER. Cached under $GREENBATCH_CACHE.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(bash "$(dirname "$0")/setup-libtorch.sh")"
DIR="$GREENBATCH_CACHE/v2-clients"
ENV_FILE="$GREENBATCH_CACHE/v2-clients.env"
mkdir -p "$DIR"

if ! "$GREENBATCH_VENV/bin/python" -c 'import tritonclient.http, tritonclient.grpc' 2>/dev/null; then
  log "installing tritonclient[http,grpc] into the venv"
  "$GREENBATCH_VENV/bin/pip" install -q --disable-pip-version-check --cache-dir "$GREENBATCH_CACHE/pip" 'tritonclient[http,grpc]==2.*' >&2
fi

PA="$DIR/pa/perf_analyzer/bin/perf_analyzer"
if [ ! -x "$PA" ]; then
  log "fetching perf_analyzer 2.60.0 (manylinux_2_38 wheel)"
  rm -rf "$DIR/pa"
  "$GREENBATCH_VENV/bin/pip" install -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_38_x86_64 --target "$DIR/pa" perf-analyzer==2.60.0 >&2
  chmod +x "$PA"
fi

SIDE="$DIR/glibc"
# Complete only once every package is unpacked (the stamp is written last): an interrupted
# unpack is done again, not trusted because the loader (libc6, unpacked first) is there.
if [ ! -e "$SIDE/.complete" ]; then
  log "fetching Debian 13 libc6/libstdc++6/libgcc-s1 with a private apt configuration"
  apt_install dpkg
  A="$DIR/apt"; rm -rf "$A"; mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/debs"
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' >"$A/trixie.sources"
  opts=(-o "Dir::Etc::sourcelist=$A/trixie.sources" -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$A/lists"
        -o "Dir::Cache=$A/cache" -o "APT::Architecture=amd64" -o "Debug::NoLocking=1")
  apt-get "${opts[@]}" update -qq >&2
  (cd "$A/debs" && apt-get "${opts[@]}" download libc6 libstdc++6 libgcc-s1 >&2)
  rm -rf "$SIDE" "$SIDE.tmp"; mkdir -p "$SIDE.tmp"
  for d in "$A"/debs/*.deb; do dpkg -x "$d" "$SIDE.tmp"; done
  touch "$SIDE.tmp/.complete"
  mv "$SIDE.tmp" "$SIDE"
fi
LOADER="$SIDE/usr/lib64/ld-linux-x86-64.so.2"; [ -e "$LOADER" ] || LOADER="$SIDE/lib64/ld-linux-x86-64.so.2"
cat >"$DIR/perf_analyzer" <<WRAP
#!/bin/sh
exec "$LOADER" --library-path "$SIDE/usr/lib/x86_64-linux-gnu:$SIDE/lib/x86_64-linux-gnu" "$PA" "\$@"
WRAP
chmod +x "$DIR/perf_analyzer"
# A perf_analyzer that cannot start fails here, naming itself, not ten minutes later in a test.
"$DIR/perf_analyzer" --help >/dev/null 2>&1 || "$DIR/perf_analyzer" --version >/dev/null 2>&1 \
  || die "perf_analyzer at $DIR/perf_analyzer does not run (remove $DIR to fetch it again)"
cat >"$ENV_FILE" <<ENV
export GREENBATCH_PERF_ANALYZER="$DIR/perf_analyzer"
ENV
log "v2 clients ready: tritonclient in $GREENBATCH_VENV, perf_analyzer at $DIR/perf_analyzer"
echo "$ENV_FILE"
