#!/usr/bin/env python3
"""hostmetrics' scrape cost next to prometheus-node-exporter's, on the same machine.

Runs the release binary (`cargo build --release --bins`) with the `hostmetrics` receiver (the
scrapers the chart's hostMetrics preset turns on, plus load, paging, processes and system) at a
1 s interval into the `prometheus` exporter, and Debian's `prometheus-node-exporter` with its
default collectors. Both are scraped over HTTP once a second for --seconds (60), as Prometheus
would; the CPU time (utime + stime from /proc/<pid>/stat) each process used over the run is
divided by the number of scrapes. Prints one JSON line: CPU ms per scrape, series per scrape,
RSS at the end and peak RSS (VmHWM) of each.

    python3 benches/hostmetrics.py [--seconds 60]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "target", "release")
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_ms(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / TICK


def rss_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def get(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        body = r.read().decode()
    return sum(1 for l in body.splitlines() if l and not l.startswith("#"))


def wait(port):
    for _ in range(200):
        try:
            get(port)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing answers on %d" % port)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=60)
    a = ap.parse_args()
    fp, ne_port, metrics = free_port(), free_port(), free_port()
    cfg = """
receivers:
  hostmetrics:
    collection_interval: 1s
    initial_delay: 0s
    scrapers: {cpu: , memory: , load: , filesystem: , network: , disk: , paging: , processes: , system: }
exporters:
  prometheus: {endpoint: "127.0.0.1:%d"}
service:
  telemetry: {metrics: {address: "127.0.0.1:%d"}}
  pipelines:
    metrics: {receivers: [hostmetrics], exporters: [prometheus]}
""" % (fp, metrics)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(cfg)
    fer = subprocess.Popen([os.path.join(REL, "ferrotel"), "--config", f.name],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ne = subprocess.Popen(["prometheus-node-exporter", "--web.listen-address=127.0.0.1:%d" % ne_port],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(fp)
        wait(ne_port)
        time.sleep(2)
        start = {p.pid: cpu_ms(p.pid) for p in (fer, ne)}
        series = {"ferrotel": 0, "node_exporter": 0}
        for _ in range(a.seconds):
            t = time.time()
            series["ferrotel"] = get(fp)
            series["node_exporter"] = get(ne_port)
            time.sleep(max(0.0, 1.0 - (time.time() - t)))
        out = {"seconds": a.seconds}
        for name, p in (("ferrotel", fer), ("node_exporter", ne)):
            out[name] = {
                "cpu_ms_per_scrape": round((cpu_ms(p.pid) - start[p.pid]) / a.seconds, 2),
                "series": series[name],
                "rss_mib": round(rss_kib(p.pid, "VmRSS") / 1024, 1),
                "peak_rss_mib": round(rss_kib(p.pid, "VmHWM") / 1024, 1),
            }
        print(json.dumps(out))
    finally:
        for p in (fer, ne):
            p.kill()
            p.wait()
        os.unlink(f.name)


if __name__ == "__main__":
    main()
