#!/usr/bin/env python3
"""Overload without collapse: ten times a slow backend's capacity for a minute, with memory_limiter.

Runs the release binaries (`cargo build --release --bins`). The backend is `ferrotel-loadgen sink
--delay-ms 100`; the exporter has 2 consumers and batches of 1000 spans, so the backend takes at
most 20,000 spans/s. Phases, each with `ferrotel-loadgen send` (OTLP/gRPC, 8 connections):
  1. unloaded: offered at the capacity (20,000 spans/s) for 10 s: the unloaded maximum;
  2. overload: offered at 10x (200,000 spans/s) for --seconds (60);
  3. recovery: offered at the capacity again, in 1 s steps, until a step has no refusal.
Prints one JSON line with the accepted rates, the peak RSS (VmHWM) against limit_mib, the
refusals, the recovery time, and whether the sink got every acknowledged span.

    python3 benches/overload.py [--seconds 60]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
LIMIT_MIB = 96
CAPACITY = 20000


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def loadgen(endpoint, seconds, rate):
    out = subprocess.run([os.path.join(REL, "ferrotel-loadgen"), "send", "--endpoint", endpoint, "--rate", str(rate),
                          "--concurrency", "8", "--duration", str(seconds)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    sink_port, grpc, metrics = free_port(), free_port(), free_port()
    sink = subprocess.Popen([os.path.join(REL, "ferrotel-loadgen"), "sink", "--listen", "127.0.0.1:%d" % sink_port,
                             "--delay-ms", "100"], stdout=subprocess.PIPE, text=True)
    total = [0]

    def read():
        for line in sink.stdout:
            try:
                total[0] = json.loads(line)["total_spans"]
            except (ValueError, KeyError):
                pass
    threading.Thread(target=read, daemon=True).start()
    cfg = f"""
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:{grpc}" }} }} }}
processors:
  memory_limiter: {{ check_interval: 100ms, limit_mib: {LIMIT_MIB}, spike_limit_mib: 24 }}
  batch: {{ send_batch_size: 1000, send_batch_max_size: 1000, timeout: 100ms }}
exporters:
  otlp_grpc:
    endpoint: "127.0.0.1:{sink_port}"
    tls: {{ insecure: true }}
    compression: none
    sending_queue: {{ num_consumers: 2, queue_size: 40 }}
    retry_on_failure: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 0s }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:{metrics}" }} }}
  pipelines:
    traces: {{ receivers: [otlp], processors: [memory_limiter, batch], exporters: [otlp_grpc] }}
"""
    d = tempfile.mkdtemp()
    path = os.path.join(d, "overload.yaml")
    open(path, "w").write(cfg)
    col = subprocess.Popen([os.path.join(REL, "ferrotel"), "--config", path], stderr=subprocess.DEVNULL)
    time.sleep(1)
    ep = "127.0.0.1:%d" % grpc
    try:
        unloaded = loadgen(ep, 10, CAPACITY)
        time.sleep(3)
        over = loadgen(ep, a.seconds, 10 * CAPACITY)
        t0 = time.time()
        steps = []
        while time.time() - t0 < 60:
            r = loadgen(ep, 1, CAPACITY)
            steps.append(r)
            if r["refused_requests"] == 0:
                break
        recovered_s = round(time.time() - t0, 1)
        status = open("/proc/%d/status" % col.pid).read()
        hwm = int([line for line in status.splitlines() if line.startswith("VmHWM:")][0].split()[1]) // 1024
        accepted = unloaded["accepted_spans"] + over["accepted_spans"] + sum(s["accepted_spans"] for s in steps)
        deadline = time.time() + 120
        while total[0] < accepted and time.time() < deadline:
            time.sleep(0.5)
        print(json.dumps({
            "unloaded_spans_per_sec": unloaded["spans_per_sec"],
            "overload_offered_spans_per_sec": 10 * CAPACITY,
            "overload_accepted_spans_per_sec": over["spans_per_sec"],
            "accepted_ratio": round(over["spans_per_sec"] / max(unloaded["spans_per_sec"], 1), 3),
            "overload_refused_requests": over["refused_requests"],
            "overload_errors": over["errors"],
            "peak_rss_mib": hwm,
            "limit_mib": LIMIT_MIB,
            "recovered_after_s": recovered_s,
            "acknowledged": accepted,
            "delivered": total[0],
        }))
    finally:
        col.terminate()
        col.wait()
        sink.terminate()


if __name__ == "__main__":
    sys.exit(main())
