#!/usr/bin/env python3
"""ferrotel vs rotel, OTLP gRPC -> batch -> OTLP gRPC pass-through, in one run.

Same load generator (ferrotel-loadgen send), same counting sink (ferrotel-loadgen sink), same
load, one collector at a time. Reads CPU time and RSS of the collector process from /proc.
Prints a Markdown table for BENCHMARKS.md.

    cargo build --release --bins
    pip install rotel==0.0.1a15
    python3 benches/compare.py [--rotel PATH] [--seconds 15]
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
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


def loadgen(endpoint, seconds, rate=0, concurrency=8, spans=100, attrs=10):
    out = subprocess.run(
        [os.path.join(REL, "ferrotel-loadgen"), "send", "--endpoint", endpoint, "--rate", str(rate),
         "--concurrency", str(concurrency), "--spans-per-request", str(spans), "--attrs-per-span", str(attrs),
         "--duration", str(seconds)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


COMPRESSION = "gzip"


def start_ferrotel(grpc, sink, tmp, binary=None):
    env = dict(os.environ, BENCH_GRPC="127.0.0.1:%d" % grpc, BENCH_SINK="127.0.0.1:%d" % sink, RUST_LOG="warn",
               BENCH_COMPRESSION=COMPRESSION)
    return subprocess.Popen([binary or os.path.join(REL, "ferrotel"), "--config", os.path.join(ROOT, "benches", "passthrough.yaml")],
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


def measure(name, start, seconds):
    tmp = tempfile.mkdtemp(prefix="bench-%s-" % name)
    sink_port, grpc = free_port(), free_port()
    sink = subprocess.Popen([os.path.join(REL, "ferrotel-loadgen"), "sink", "--listen", "127.0.0.1:%d" % sink_port],
                            stdout=open(os.path.join(tmp, "sink.log"), "w"))
    wait_port(sink_port)
    t0 = time.monotonic()
    proc = start(grpc, sink_port, tmp)
    startup = wait_port(grpc)
    r = {"name": name, "startup_ms": (time.monotonic() - t0) * 1000}
    time.sleep(2)
    r["idle_rss_mib"] = rss_mib(proc.pid)
    # Steady 10,000 spans/s.
    c0 = cpu_seconds(proc.pid)
    steady = loadgen("127.0.0.1:%d" % grpc, 10, rate=10000, concurrency=2)
    r["steady_rss_mib"] = rss_mib(proc.pid)
    r["steady_cpu_pct"] = (cpu_seconds(proc.pid) - c0) / steady["seconds"] * 100
    r["steady_accepted"] = steady["spans_per_sec"]
    # Saturation.
    time.sleep(1)
    c0 = cpu_seconds(proc.pid)
    sat = loadgen("127.0.0.1:%d" % grpc, seconds)
    cpu = cpu_seconds(proc.pid) - c0
    r["sat_spans_per_sec"] = sat["spans_per_sec"]
    r["sat_refused"] = sat["refused_requests"]
    r["sat_errors"] = sat["errors"]
    r["cpu_s_per_million"] = cpu / (sat["accepted_spans"] / 1e6)
    r["spans_per_cpu_s"] = sat["accepted_spans"] / cpu
    r["sat_peak_rss_mib"] = rss_mib(proc.pid)
    # Everything accepted must reach the sink: wait for the queues to drain (and say how long).
    r["accepted_total"] = steady["accepted_spans"] + sat["accepted_spans"]
    t_drain = time.monotonic()
    r["sink_total"] = 0
    while time.monotonic() - t_drain < 120:
        with open(os.path.join(tmp, "sink.log")) as f:
            lines = [l for l in f.read().splitlines() if l.startswith("{")]
        r["sink_total"] = json.loads(lines[-1])["total_spans"] if lines else 0
        if r["sink_total"] >= r["accepted_total"]:
            break
        time.sleep(0.5)
    r["drain_s"] = time.monotonic() - t_drain
    proc.terminate()
    proc.wait(timeout=30)
    sink.terminate()
    sink.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    return r


def main():
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
    a = ap.parse_args()
    global COMPRESSION
    COMPRESSION = a.compression
    results = [measure("ferrotel", start_ferrotel, a.seconds)]
    if a.baseline:
        results.append(measure("ferrotel baseline", lambda g, s, t: start_ferrotel(g, s, t, a.baseline), a.seconds))
    if a.rotel:
        results.append(measure("rotel", lambda g, s, t: start_rotel(a.rotel, g, s, t), a.seconds))
    else:
        print("rotel not found: pip install rotel==0.0.1a15", file=sys.stderr)
    keys = [("sat_spans_per_sec", "spans/s at saturation", "%.0f"), ("spans_per_cpu_s", "spans per CPU-second", "%.0f"),
            ("cpu_s_per_million", "CPU-seconds per million spans", "%.2f"), ("steady_cpu_pct", "CPU at 10k spans/s (%)", "%.1f"),
            ("steady_rss_mib", "RSS at 10k spans/s (MiB)", "%.1f"), ("sat_peak_rss_mib", "RSS after saturation (MiB)", "%.1f"),
            ("idle_rss_mib", "idle RSS (MiB)", "%.1f"), ("startup_ms", "startup to listening (ms)", "%.0f"),
            ("accepted_total", "spans accepted (total)", "%d"), ("sink_total", "spans at the sink (total)", "%d"),
            ("drain_s", "seconds until the sink had them all", "%.1f"),
            ("sat_refused", "refused requests at saturation", "%d"), ("sat_errors", "errors at saturation", "%d")]
    rotel = results[-1] if results[-1]["name"] == "rotel" else None
    print("| metric | " + " | ".join(r["name"] for r in results) + (" | ratio ferrotel/rotel |" if rotel else " |"))
    print("|---|" + "---|" * len(results) + ("---|" if rotel else ""))
    for k, label, fmt in keys:
        row = "| %s | " % label + " | ".join(fmt % r[k] for r in results)
        if rotel:
            row += " | %.2f" % (results[0][k] / rotel[k]) if rotel[k] else " | –"
        print(row + " |")
    print(json.dumps(results), file=sys.stderr)


if __name__ == "__main__":
    main()
