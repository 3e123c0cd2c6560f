#!/usr/bin/env bash
# Smoke test of the release binary (what the image contains): both shipped configs validate;
# the gateway config starts, reports ready on its health port and serves its self-metrics; it
# stops cleanly on SIGTERM. Ports are free ones on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ferrotel
[ -x "$bin" ] || { echo "no $bin: run scripts/build-release.sh" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$bin" --version
for cfg in pipelines/agent.yaml pipelines/gateway.yaml; do
  "$bin" validate --config "$cfg"
done

log=$(mktemp)
health=$(free_port); metrics=$(free_port)
FERROTEL_GRPC_ENDPOINT=127.0.0.1:$(free_port) FERROTEL_HTTP_ENDPOINT=127.0.0.1:$(free_port) \
FERROTEL_HEALTH_ENDPOINT=127.0.0.1:$health FERROTEL_METRICS_ENDPOINT=127.0.0.1:$metrics \
  "$bin" --config pipelines/gateway.yaml 2>"$log" &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$health/" >/dev/null 2>&1; then break; fi
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$health/" >/dev/null || { cat "$log"; echo "not ready" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$metrics/metrics" | grep -q '^otelcol_process_uptime' \
  || { cat "$log"; echo "no self-metrics" >&2; exit 1; }
kill -TERM "$pid"
wait "$pid" || { cat "$log"; echo "did not stop cleanly" >&2; exit 1; }
echo "release binary: ok ($(du -h "$bin" | cut -f1))"
