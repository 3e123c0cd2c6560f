#!/usr/bin/env python3
"""Agent receivers: log lines per CPU-second from files to an OTLP sink, and syslog messages.

Runs the release binaries (`cargo build --release --bins`): `ferrotel-loadgen sink` counts what
arrives; ferrotel reads the input and exports with OTLP/gRPC (compression off, so the figure is
the receiver and the pipeline, not gzip). Reads ferrotel's CPU time from /proc/<pid>/stat and
stops the clock when the sink has every record.

    python3 benches/agent_receivers.py [--lines 2000000]

Prints a Markdown table for BENCHMARKS.md.
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare import cpu_seconds, free_port, wait_port  # noqa: E402  (shared bench helpers)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")


class Sink:
    def __init__(self):
        self.port = free_port()
        self.p = subprocess.Popen(
            [os.path.join(REL, "ferrotel-loadgen"), "sink", "--listen", "127.0.0.1:%d" % self.port],
            stdout=subprocess.PIPE, text=True)
        self.total = 0
        threading.Thread(target=self._read, daemon=True).start()
        wait_port(self.port)

    def _read(self):
        for line in self.p.stdout:
            try:
                self.total = json.loads(line)["total_logs"]
            except (ValueError, KeyError):
                pass

    def stop(self):
        self.p.kill()
        self.p.wait()


def run_collector(cfg_text, env, want, sink, feed=None):
    """Starts ferrotel on cfg_text, runs feed() if given, waits until the sink has `want`."""
    d = tempfile.mkdtemp()
    cfg = os.path.join(d, "cfg.yaml")
    with open(cfg, "w") as f:
        f.write(cfg_text)
    e = dict(os.environ, **env, BENCH_SINK="127.0.0.1:%d" % sink.port)
    base = sink.total
    p = subprocess.Popen([os.path.join(REL, "ferrotel"), "--config", cfg], env=e,
                         stderr=open(os.path.join(d, "log"), "w"))
    t0 = time.monotonic()
    c0 = 0.0
    if feed:
        feed()
    deadline = t0 + 600
    while sink.total - base < want:
        if time.monotonic() > deadline or p.poll() is not None:
            raise SystemExit("only %d of %d arrived; see %s/log" % (sink.total - base, want, d))
        time.sleep(0.02)
    wall = time.monotonic() - t0
    cpu = cpu_seconds(p.pid) - c0
    p.terminate()
    p.wait()
    return wall, cpu


def cri_line(i, pad):
    # containerd's CRI format, as under /var/log/pods.
    return "2024-05-01T10:00:%02d.%09dZ stdout F GET /api/v1/items/%d 200 %s\n" % (i % 60, i, i, pad)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=2_000_000)
    args = ap.parse_args()
    n = args.lines
    sink = Sink()
    rows = []
    d = tempfile.mkdtemp()

    # 1. Plain lines (~100 bytes), no operators.
    plain = os.path.join(d, "plain.log")
    with open(plain, "w") as f:
        pad = "x" * 60
        for i in range(n):
            f.write("2024-05-01 10:00:00.000 INFO [main] request %08d served %s\n" % (i, pad))
    size = os.path.getsize(plain)
    cfg = """
receivers:
  filelog:
    include: ["%s"]
    start_at: beginning
%s
exporters:
  otlp_grpc: {endpoint: "${env:BENCH_SINK}", tls: {insecure: true}, compression: none}
service:
  telemetry: {metrics: {level: none}}
  pipelines: {logs: {receivers: [filelog], exporters: [otlp_grpc]}}
"""
    wall, cpu = run_collector(cfg % (plain, ""), {}, n, sink)
    rows.append(("filelog, plain lines, no operators", n, size, wall, cpu))

    # 2. Container logs (CRI) through the container operator, as the agent runs.
    pods = os.path.join(d, "shop_cart-1_0b6c2f6e-1111-2222-3333-444455556666", "server")
    os.makedirs(pods)
    cri = os.path.join(pods, "0.log")
    with open(cri, "w") as f:
        pad = "y" * 30
        for i in range(n):
            f.write(cri_line(i, pad))
    size = os.path.getsize(cri)
    ops = "    include_file_path: true\n    operators:\n      - type: container\n"
    wall, cpu = run_collector(cfg % (os.path.join(d, "*", "*", "*.log"), ops), {}, n, sink)
    rows.append(("filelog, CRI container logs, container operator", n, size, wall, cpu))

    # 3. Syslog RFC 5424 over one TCP connection, newline framed.
    port = free_port()
    msg = '<165>1 2024-05-01T10:00:00.000Z host-%d app 1234 ID47 [ex@32473 k="v"] message number %d\n'
    payload = "".join(msg % (i % 100, i) for i in range(n)).encode()

    def feed():
        wait_port(port)
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(payload)
        s.close()

    with open(os.path.join(ROOT, "benches", "syslog.yaml")) as f:
        scfg = f.read()
    wall, cpu = run_collector(scfg, {"BENCH_SYSLOG": "127.0.0.1:%d" % port}, n, sink, feed)
    rows.append(("syslog RFC 5424, TCP", n, len(payload), wall, cpu))
    sink.stop()

    print("| input | records | MiB | wall s | ferrotel CPU s | records/s (wall) | records per CPU-second | MiB per CPU-second |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n, size, wall, cpu in rows:
        mib = size / (1 << 20)
        print("| %s | %d | %.1f | %.2f | %.2f | %.0f | %.0f | %.1f |" % (
            name, n, mib, wall, cpu, n / wall, n / cpu, mib / cpu))


if __name__ == "__main__":
    main()
