#!/usr/bin/env bash
# What deploy/Dockerfile installs, checked without a container engine: the locked dependencies
# (--no-deps, so nothing unlisted can slip in) in a fresh venv, the project's wheel built with
# the pinned backend on top, then the image's entry point run from outside the source tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip_quiet=(--quiet --disable-pip-version-check --no-cache-dir --no-deps)

"$PYTHON" -m venv "$work/app"
"$work/app/bin/pip" install "${pip_quiet[@]}" -r deploy/requirements.txt
"$PYTHON" -m venv "$work/build"
"$work/build/bin/pip" install "${pip_quiet[@]}" -r deploy/build-requirements.txt
"$work/build/bin/pip" wheel "${pip_quiet[@]}" --no-build-isolation --wheel-dir "$work/wheels" .
"$work/app/bin/pip" install "${pip_quiet[@]}" "$work/wheels"/*.whl

cd "$work"
export PATH="$work/app/bin:/usr/bin:/bin"
entrypoint=("$repo/deploy/entrypoint.sh")
clean_env=(env -i "PATH=$PATH" "HOME=$work" "STUDIO_EXPORTER_WEB_LISTEN_ADDRESS=127.0.0.1:0")

studio-exporter --help > /dev/null
# Every module imports with the locked set alone (grpc and the OTLP protobufs load lazily).
python - <<'PY'
import importlib
import pkgutil

import accounts_client
import studio_client
import studio_exporter

for package in (studio_exporter, studio_client, accounts_client):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
import grpc  # noqa: F401  (OTEL_EXPORTER_OTLP_PROTOCOL=grpc)
print("every module imports")
PY

# No command and credentials: the real exporter (a bad SID proves it is `run`: exit 2).
set +e
"${clean_env[@]}" TWILIO_ACCOUNT_SID=AC-not-a-sid TWILIO_AUTH_TOKEN=x sh "${entrypoint[@]}" \
  > run.out 2>&1
code=$?
set -e
grep -q "not an Account SID" run.out && [ "$code" -eq 2 ] \
  || { echo "entry point with credentials did not run the exporter (exit $code):"; cat run.out; exit 1; }
echo "with credentials: run (exit 2 on a bad SID, as expected)"

# No command, no credentials: the demo; SIGTERM after a few seconds stops it cleanly.
set +e
"${clean_env[@]}" timeout --preserve-status -s TERM 8 sh "${entrypoint[@]}" > demo.out 2>&1
code=$?
set -e
grep -q "demo on the built-in Studio simulator" demo.out && grep -q "stopped." demo.out \
  && [ "$code" -eq 0 ] \
  || { echo "entry point without credentials did not run the demo (exit $code):"; cat demo.out; exit 1; }
echo "without credentials: demo, stopped by SIGTERM with exit 0"
