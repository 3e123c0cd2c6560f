#!/usr/bin/env bash
# Runs the whole test suite. Sets up what the tests need first (a Python venv with the
# OpenTelemetry SDK in .venv), so it works on a fresh checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, opentelemetry.exporter.zipkin.json, rotel, prometheus_client, jwt, cryptography, py_zipkin, fluent.sender" 2>/dev/null \
  || [ ! -x .venv/bin/kubernetes-validate ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
# py_zipkin 0.20 writes Zipkin v1 Thrift (later releases dropped it): kept apart from the
# current py_zipkin, on the PYTHONPATH of the one test client that uses it.
if [ ! -d .venv/py_zipkin_thrift/thriftpy2 ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check --target .venv/py_zipkin_thrift \
    py_zipkin==0.20.2 thriftpy2==0.7.1
fi
# The legacy Jaeger clients (the OpenTelemetry Jaeger exporters 1.21 need the SDK of their time
# and protobuf 3): a venv of their own.
if [ ! -x .venv-jaeger/bin/python ]; then
  python3 -m venv .venv-jaeger
fi
if ! .venv-jaeger/bin/python -c "import jaeger_client, opentelemetry.exporter.jaeger.thrift, opentelemetry.exporter.jaeger.proto.grpc" 2>/dev/null; then
  .venv-jaeger/bin/pip install --quiet --disable-pip-version-check -r tests/requirements-jaeger.txt
fi
export FERROTEL_TEST_JAEGER_PYTHON="$PWD/.venv-jaeger/bin/python"
export FERROTEL_TEST_PYTHON="$PWD/.venv/bin/python"

# Real peers the tests start on 127.0.0.1, from Debian packages: Prometheus (remote-write
# target), kubectl (renders the manifests), prometheus-node-exporter (a scrape target) and
# util-linux's logger (a syslog client, in bsdutils), openssl (a TLS syslog client), dnsmasq
# (a DNS server with SRV records), procps' ps, util-linux's lscpu and iproute2's ip
# (independent readers of processes, the CPU and the interfaces), systemd's journalctl.
need() { # need <command> <debian package>
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null \
      || echo "warning: $2 could not be installed; the tests that need $1 will fail" >&2
  else
    echo "warning: $1 is not installed (apt-get install $2); the tests that need it will fail" >&2
  fi
}
need prometheus prometheus
need kubectl kubernetes-client
need prometheus-node-exporter prometheus-node-exporter
need logger bsdutils
need openssl openssl
need dnsmasq dnsmasq-base
need ps procps
need lscpu util-linux
need ip iproute2
# journalctl (systemd) reads the journals tests/journald.rs writes with systemd-journal-remote.
need journalctl systemd
if [ ! -x /lib/systemd/systemd-journal-remote ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd-journal-remote >/dev/null \
      || echo "warning: systemd-journal-remote could not be installed; tests/journald.rs will fail" >&2
  else
    echo "warning: systemd-journal-remote is not installed; tests/journald.rs will fail" >&2
  fi
fi

# pprof-format (npm), Datadog's pure-JavaScript pprof decoder: an independent reader of the CPU
# profiles the pprof extension writes (tests/pprof.rs).
need node nodejs
need npm npm
if [ ! -f .npm-test/node_modules/pprof-format/package.json ]; then
  npm install --silent --no-audit --no-fund --prefix .npm-test pprof-format@2.3.2 >/dev/null \
    || echo "warning: pprof-format could not be installed; tests/pprof.rs will fail" >&2
fi

cargo test --all-targets "$@"
