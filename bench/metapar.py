#!/usr/bin/env python3
"""Create, stat and unlink files from several processes at once, each in a
directory of its own; time each phase across all of them.

Usage: metapar.py DIR [--procs 4] [--files 10000] [--drop-caches]

DIR must not exist yet. It gets one subdirectory per process (p0, p1, ...);
--files is the total, split evenly. The phases are those of metaops.py:
  create: os.open(O_CREAT|O_EXCL|O_WRONLY) + os.close
  stat:   os.stat
  unlink: os.unlink
Before each phase (untimed) the parent runs `sync` and drops the caches
(with --drop-caches), then starts every process on the phase at the same
moment (a barrier). A phase's time is from the earliest start to the
latest end (CLOCK_MONOTONIC, shared by all processes); its rate is the
total number of files over that time: the aggregate ops/s. The kernel holds
every file's inode during a phase (no batches here), so --files must stay
below the FUSE server's descriptor budget (see compare.sh).
Prints one JSON line: {"procs", "files", "create_ops", "stat_ops",
"unlink_ops", "create_s", "stat_s", "unlink_s", "slowest_share"} where
slowest_share gives, per phase, the slowest process's time over the
phase's time (1.0 = it alone set the pace).
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time

PHASES = ("create", "stat", "unlink")


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")


def worker(idx, paths, barrier, results):
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    ops = {
        "create": lambda p: os.close(os.open(p, flags, 0o644)),
        "stat": os.stat,
        "unlink": os.unlink,
    }
    try:
        for name in PHASES:
            fn = ops[name]
            barrier.wait()
            t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
            for p in paths:
                fn(p)
            t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
            results.put((idx, name, t0, t1, None))
    except Exception as e:  # reported by the parent, which then fails
        results.put((idx, "error", 0.0, 0.0, f"{type(e).__name__}: {e}"))
        barrier.abort()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--drop-caches", action="store_true")
    a = ap.parse_args()
    if a.procs < 1 or a.files < a.procs:
        ap.error("need --procs >= 1 and --files >= --procs")

    os.mkdir(a.dir)
    per = a.files // a.procs
    total = per * a.procs
    dirs = [os.path.join(a.dir, f"p{i}") for i in range(a.procs)]
    for d in dirs:
        os.mkdir(d)
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(a.procs + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=worker,
                         args=(i, [os.path.join(d, f"f{j:06d}") for j in range(per)], barrier, results))
             for i, d in enumerate(dirs)]
    for p in procs:
        p.start()

    res = {"procs": a.procs, "files": total, "slowest_share": {}}
    failed = None
    for name in PHASES:
        if a.drop_caches:
            drop_caches()
        try:
            barrier.wait()
        except Exception:
            failed = failed or "a worker aborted"
            break
        spans = []
        for _ in procs:
            idx, got, t0, t1, err = results.get()
            if err:
                failed = f"process {idx}: {err}"
                break
            assert got == name
            spans.append((t0, t1))
        if failed:
            break
        dt = max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans)
        res[f"{name}_s"] = dt
        res[f"{name}_ops"] = total / dt if dt > 0 else float("inf")
        res["slowest_share"][name] = round(max(t1 - t0 for t0, t1 in spans) / dt, 3) if dt > 0 else 1.0
    for p in procs:
        p.join(timeout=60)
    if failed:
        print(f"metapar.py: {failed}", file=sys.stderr)
        sys.exit(1)
    for d in dirs:
        os.rmdir(d)
    os.rmdir(a.dir)
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    main()
