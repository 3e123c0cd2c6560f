#!/usr/bin/env python3
"""ferrotel vs rotel, OTLP gRPC -> batch -> OTLP gRPC pass-through, in one run.

Same load generator (ferrotel-loadgen send), same counting sink (ferrotel-loadgen sink), same
load, one collector at a time. Reads CPU time and RSS of the collector process from /proc (peak
RSS sampled every 50 ms while the load runs). Per collector: idle, a steady 10,000 items/s,
saturation, and (with --slow-sink-ms) flat out into a sink that answers each export that late,
where only a bound on what queues hold keeps memory in check. Every item a collector accepted
must reach the sink; the table says whether it did. Prints a Markdown table for BENCHMARKS.md.

    cargo build --release --bins
    pip install rotel==0.0.1a15
    python3 benches/compare.py [--rotel PATH] [--seconds 15] [--signal traces|logs|metrics]
        [--compression gzip|none] [--config benches/decodepath.yaml] [--slow-sink-ms 200]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / TICK


def rss_mib(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * PAGE / (1 << 20)


def wait_port(port, timeout=20.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.05).close()
            return time.monotonic() - t0
        except OSError:
            time.sleep(0.002)
    raise RuntimeError("port %d not open after %.0fs" % (port, timeout))


SIGNAL = "traces"
CONFIG = os.path.join(ROOT, "benches", "passthrough.yaml")
SINK_KEY = {"traces": "total_spans", "logs": "total_logs", "metrics": "total_points"}


class PeakRss:
    """Samples a process's RSS every 50 ms while in a `with` block; `peak` is the highest."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_mib(self.pid))
            except OSError:
                return
            self._stop.wait(0.05)

    def __enter__(self):
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()


def loadgen(endpoint, seconds, rate=0, concurrency=8, spans=100, attrs=10):
    out = subprocess.run(
        [os.path.join(REL, "ferrotel-loadgen"), "send", "--signal", SIGNAL, "--endpoint", endpoint, "--rate", str(rate),
         "--concurrency", str(concurrency), "--spans-per-request", str(spans), "--attrs-per-span", str(attrs),
         "--duration", str(seconds)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


COMPRESSION = "gzip"


def start_ferrotel(grpc, sink, tmp, binary=None):
    env = dict(os.environ, BENCH_GRPC="127.0.0.1:%d" % grpc, BENCH_SINK="127.0.0.1:%d" % sink, RUST_LOG="warn",
               BENCH_COMPRESSION=COMPRESSION)
    return subprocess.Popen([binary or os.path.join(REL, "ferrotel"), "--config", CONFIG],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "ferrotel.log"), "w"))


def start_rotel(binary, grpc, sink, tmp):
    http = free_port()
    return subprocess.Popen(
        [binary, "start", "--otlp-grpc-endpoint", "127.0.0.1:%d" % grpc, "--otlp-http-endpoint", "127.0.0.1:%d" % http,
         "--exporter", "otlp", "--otlp-exporter-endpoint", "http://127.0.0.1:%d" % sink,
         "--otlp-exporter-protocol", "grpc", "--otlp-exporter-compression", COMPRESSION,
         "--batch-max-size", "8192", "--batch-timeout", "200ms",
         "--pid-file", os.path.join(tmp, "rotel.pid"), "--log-file", os.path.join(tmp, "rotel.log")],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "rotel.err"), "w"))


def sink_total(tmp):
    with open(os.path.join(tmp, "sink.log")) as f:
        lines = [l for l in f.read().splitlines() if l.startswith("{")]
    return json.loads(lines[-1])[SINK_KEY[SIGNAL]] if lines else 0


def wait_drained(tmp, accepted, timeout=180):
    """Waits until the sink has every accepted item; returns (items at the sink, seconds)."""
    t0 = time.monotonic()
    got = 0
    while time.monotonic() - t0 < timeout:
        got = sink_total(tmp)
        if got >= accepted:
            break
        time.sleep(0.5)
    return got, time.monotonic() - t0


def measure(name, start, seconds, slow_ms=0):
    tmp = tempfile.mkdtemp(prefix="bench-%s-" % name.replace(" ", "-"))
    sink_port, grpc = free_port(), free_port()
    sink = subprocess.Popen([os.path.join(REL, "ferrotel-loadgen"), "sink", "--listen", "127.0.0.1:%d" % sink_port],
                            stdout=open(os.path.join(tmp, "sink.log"), "w"))
    wait_port(sink_port)
    t0 = time.monotonic()
    proc = start(grpc, sink_port, tmp)
    wait_port(grpc)
    r = {"name": name, "startup_ms": (time.monotonic() - t0) * 1000}
    time.sleep(2)
    r["idle_rss_mib"] = rss_mib(proc.pid)
    # Steady 10,000 items/s.
    c0 = cpu_seconds(proc.pid)
    with PeakRss(proc.pid) as peak:
        steady = loadgen("127.0.0.1:%d" % grpc, 10, rate=10000, concurrency=2)
    r["steady_rss_mib"] = rss_mib(proc.pid)
    r["steady_peak_rss_mib"] = peak.peak
    r["steady_cpu_pct"] = (cpu_seconds(proc.pid) - c0) / steady["seconds"] * 100
    # Saturation.
    time.sleep(1)
    c0 = cpu_seconds(proc.pid)
    with PeakRss(proc.pid) as peak:
        sat = loadgen("127.0.0.1:%d" % grpc, seconds)
    cpu = cpu_seconds(proc.pid) - c0
    r["sat_per_sec"] = sat["spans_per_sec"]
    r["sat_refused"] = sat["refused_requests"]
    r["sat_errors"] = sat["errors"]
    r["cpu_s_per_million"] = cpu / (max(sat["accepted_spans"], 1) / 1e6)
    r["per_cpu_s"] = sat["accepted_spans"] / max(cpu, 1e-9)
    r["sat_peak_rss_mib"] = peak.peak
    # Everything accepted must reach the sink: wait for the queues to drain (and say how long).
    r["accepted_total"] = steady["accepted_spans"] + sat["accepted_spans"]
    r["sink_total"], r["drain_s"] = wait_drained(tmp, r["accepted_total"])
    proc.terminate()
    proc.wait(timeout=30)
    sink.terminate()
    sink.wait()
    if slow_ms:
        slow(r, name, start, seconds, slow_ms, tmp)
    shutil.rmtree(tmp, ignore_errors=True)
    return r


def slow(r, name, start, seconds, slow_ms, tmp):
    """Flat out into a sink that answers every export after `slow_ms`: peak RSS and delivery."""
    os.remove(os.path.join(tmp, "sink.log"))
    sink_port, grpc = free_port(), free_port()
    sink = subprocess.Popen([os.path.join(REL, "ferrotel-loadgen"), "sink", "--listen", "127.0.0.1:%d" % sink_port,
                             "--delay-ms", str(slow_ms)], stdout=open(os.path.join(tmp, "sink.log"), "w"))
    wait_port(sink_port)
    proc = start(grpc, sink_port, tmp)
    wait_port(grpc)
    time.sleep(1)
    with PeakRss(proc.pid) as peak:
        run = loadgen("127.0.0.1:%d" % grpc, seconds)
        # The queues drain after the load: memory may still grow while they do.
        r["slow_sink_total"], r["slow_drain_s"] = wait_drained(tmp, run["accepted_spans"], timeout=300)
    r["slow_peak_rss_mib"] = peak.peak
    r["slow_accepted"] = run["accepted_spans"]
    r["slow_refused"] = run["refused_requests"]
    r["slow_errors"] = run["errors"]
    proc.terminate()
    proc.wait(timeout=60)
    sink.terminate()
    sink.wait()


def main():
    global COMPRESSION, SIGNAL, CONFIG
    ap = argparse.ArgumentParser()
    default_rotel = shutil.which("rotel-agent") or ""
    try:
        import rotel  # noqa: F401

        default_rotel = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
    except ImportError:
        pass
    ap.add_argument("--rotel", default=default_rotel)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--compression", choices=["gzip", "none"], default="gzip", help="exporter compression, both collectors")
    ap.add_argument("--baseline", default="", help="another ferrotel binary (an earlier commit's build) measured in the same run")
    ap.add_argument("--signal", choices=["traces", "logs", "metrics"], default="traces")
    ap.add_argument("--config", default=os.path.join(ROOT, "benches", "passthrough.yaml"), help="ferrotel's config (rotel always runs its pass-through)")
    ap.add_argument("--slow-sink-ms", type=int, default=0, help="also run flat out into a sink this slow per export")
    ap.add_argument("--no-rotel", action="store_true")
    a = ap.parse_args()
    COMPRESSION, SIGNAL, CONFIG = a.compression, a.signal, os.path.abspath(a.config)
    results = [measure("ferrotel", start_ferrotel, a.seconds, a.slow_sink_ms)]
    if a.baseline:
        results.append(measure("ferrotel baseline", lambda g, s, t: start_ferrotel(g, s, t, a.baseline), a.seconds,
                               a.slow_sink_ms))
    if a.rotel and not a.no_rotel:
        results.append(measure("rotel", lambda g, s, t: start_rotel(a.rotel, g, s, t), a.seconds, a.slow_sink_ms))
    elif not a.no_rotel:
        print("rotel not found: pip install rotel==0.0.1a15", file=sys.stderr)
    item = {"traces": "spans", "logs": "log records", "metrics": "data points"}[SIGNAL]
    keys = [("sat_per_sec", "%s/s at saturation" % item, "%.0f"), ("per_cpu_s", "%s per CPU-second" % item, "%.0f"),
            ("cpu_s_per_million", "CPU-seconds per million %s" % item, "%.2f"),
            ("steady_cpu_pct", "CPU at 10k %s/s (%%)" % item, "%.1f"),
            ("steady_rss_mib", "RSS at 10k %s/s (MiB)" % item, "%.1f"),
            ("steady_peak_rss_mib", "peak RSS at 10k %s/s (MiB)" % item, "%.1f"),
            ("sat_peak_rss_mib", "peak RSS at saturation (MiB)", "%.1f"),
            ("idle_rss_mib", "idle RSS (MiB)", "%.1f"), ("startup_ms", "start to listening (ms)", "%.0f"),
            ("accepted_total", "%s accepted (total)" % item, "%d"), ("sink_total", "%s at the sink (total)" % item, "%d"),
            ("drain_s", "seconds until the sink had them all", "%.1f"),
            ("sat_refused", "refused requests at saturation", "%d"), ("sat_errors", "errors at saturation", "%d")]
    if a.slow_sink_ms:
        keys += [("slow_peak_rss_mib", "slow sink (%d ms): peak RSS (MiB)" % a.slow_sink_ms, "%.1f"),
                 ("slow_accepted", "slow sink: %s accepted" % item, "%d"),
                 ("slow_sink_total", "slow sink: %s at the sink" % item, "%d"),
                 ("slow_drain_s", "slow sink: seconds until the sink had them all", "%.1f"),
                 ("slow_refused", "slow sink: refused requests", "%d"), ("slow_errors", "slow sink: errors", "%d")]
    rotel = results[-1] if results[-1]["name"] == "rotel" else None
    print("| metric | " + " | ".join(r["name"] for r in results) + (" | ratio ferrotel/rotel |" if rotel else " |"))
    print("|---|" + "---|" * len(results) + ("---|" if rotel else ""))
    for k, label, fmt in keys:
        row = "| %s | " % label + " | ".join(fmt % r[k] for r in results)
        if rotel:
            row += " | %.2f" % (results[0][k] / rotel[k]) if rotel[k] else " | –"
        print(row + " |")
    print(json.dumps(results), file=sys.stderr)
    lost = [r["name"] for r in results
            if r["sink_total"] < r["accepted_total"] or r.get("slow_sink_total", 0) < r.get("slow_accepted", 0)]
    if lost:
        print("NOT DELIVERED: %s lost accepted items" % ", ".join(lost), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
