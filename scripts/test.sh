#!/usr/bin/env bash
# Runs the whole test suite. Sets up what the tests need first (a Python venv with the
# OpenTelemetry SDK in .venv), so it works on a fresh checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http" 2>/dev/null \
  || [ ! -x .venv/bin/kubernetes-validate ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
export FERROTEL_TEST_PYTHON="$PWD/.venv/bin/python"

# A real Prometheus server for the remote-write test (Debian's package; the test starts it).
if ! command -v prometheus >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "warning: prometheus is not installed (apt-get install prometheus); the remote-write test will fail" >&2
  fi
fi

# kubectl renders the Kubernetes manifests in tests/deploy.rs (Debian's kubernetes-client).
if ! command -v kubectl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null \
      || echo "warning: kubectl could not be installed; the deploy test will fail" >&2
  else
    echo "warning: kubectl is not installed; the deploy test will fail" >&2
  fi
fi

cargo test --all-targets "$@"
