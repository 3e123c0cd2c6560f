#!/usr/bin/env bash
# Runs the whole test suite. Sets up what the tests need first (a Python venv with the
# OpenTelemetry SDK in .venv), so it works on a fresh checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http" 2>/dev/null; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
export FERROTEL_TEST_PYTHON="$PWD/.venv/bin/python"

cargo test --all-targets "$@"
