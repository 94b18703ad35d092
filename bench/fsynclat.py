#!/usr/bin/env python3
"""fsync latency of 4 KiB appends: open a new file, then N times append
4 KiB and fsync (or fdatasync), timing each fsync. Prints one JSON line:
{"n", "p50_us", "p99_us", "mean_us", "ops_s"}.

Usage: fsynclat.py DIR [--count 2000] [--datasync]
"""
import argparse
import json
import os
import time

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--count", type=int, default=2000)
ap.add_argument("--datasync", action="store_true")
a = ap.parse_args()
path = os.path.join(a.dir, "fsynclat.dat")
fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_APPEND, 0o644)
buf = os.urandom(4096)
sync = os.fdatasync if a.datasync else os.fsync
lat = []
t0 = time.perf_counter()
for _ in range(a.count):
    os.write(fd, buf)
    s = time.perf_counter()
    sync(fd)
    lat.append(time.perf_counter() - s)
total = time.perf_counter() - t0
os.close(fd)
os.unlink(path)
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e6
print(json.dumps({"n": a.count, "p50_us": round(pct(0.50), 1), "p99_us": round(pct(0.99), 1),
                  "mean_us": round(sum(lat) / len(lat) * 1e6, 1), "ops_s": round(a.count / total, 1)}))
