#!/usr/bin/env bash
# Installs a real S3 API for the runtime's s3:// tests: moto's server (PyPI `moto[s3,server]`),
# in a venv of its own so its dependencies never meet torch's. Request authentication is turned
# on by the test's store (tests/fixtures/s3_store.py): moto then checks SigV4 signatures
# with botocore's signer, so a wrong key is refused as AWS refuses it.
# Prints the path of an env file exporting GREENBATCH_S3_PYTHON. Cached under $GREENBATCH_CACHE.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
VENV="$GREENBATCH_CACHE/s3-venv"
ENV_FILE="$GREENBATCH_CACHE/s3-test.env"
if ! "$VENV/bin/python" -c 'import moto.server, boto3' 2>/dev/null; then
  log "installing moto[s3,server] (an S3 API for the s3:// tests) into $VENV"
  rm -rf "$VENV"
  python3 -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check --cache-dir "$GREENBATCH_CACHE/pip" 'moto[s3,server]==5.*' >&2
fi
cat >"$ENV_FILE" <<ENV
export GREENBATCH_S3_PYTHON="$VENV/bin/python"
ENV
echo "$ENV_FILE"
