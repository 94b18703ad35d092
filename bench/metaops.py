#!/usr/bin/env python3
"""Create, stat and unlink N empty files in one directory; time each phase.

Usage: metaops.py DIR [--files 20000] [--batch 5000] [--drop-caches]
                   [--phases create,stat,unlink]

DIR must not exist yet; it is created, filled, emptied and removed.
Each phase is one tight loop of one syscall kind, timed alone:
  create: os.open(O_CREAT|O_EXCL|O_WRONLY) + os.close
  stat:   os.stat
  rename: os.rename(DIR/fNNNNNN, DIR/rNNNNNN), same directory
  restat: os.stat of every file --passes times over, caches warm: one
          untimed pass first, no drops, no batches (the kernel holds every
          inode, so --files must stay below a FUSE server's descriptor
          budget); what the kernel's attribute and entry timeouts decide
  unlink: os.unlink
--phases names the timed phases (any of create,stat,rename,unlink; default
create,stat,unlink). create and unlink always run, so DIR ends empty: when
they are not named they run untimed (with the same batches and drops).
With --drop-caches, `sync` and `echo 3 > /proc/sys/vm/drop_caches` run
(untimed) before each batch of --batch files in every phase, so each batch
starts with cold dentry and inode caches and nothing dirty; the phase's time
is the sum of its batches' times. Batching bounds how many inodes the kernel
holds at once: a FUSE server that keeps a descriptor per known inode (like
libfuse's passthrough_ll) needs one open file per cached inode, and the hard
open-file limit may be as low as 20,000. --batch 0 means one batch.
Prints one JSON line: {"files", "batch", and "<phase>_ops", "<phase>_s"
for each timed phase}.
"""
import argparse
import json
import os
import sys
import time


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as fh:
        fh.write("3\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--phases", default="create,stat,unlink")
    ap.add_argument("--passes", type=int, default=3)
    a = ap.parse_args()
    timed = [p for p in a.phases.split(",") if p]
    bad = [p for p in timed if p not in ("create", "stat", "rename", "unlink", "restat")]
    if bad:
        ap.error(f"unknown phase(s): {','.join(bad)}")

    os.mkdir(a.dir)
    paths = [os.path.join(a.dir, f"f{i:06d}") for i in range(a.files)]
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    res = {"files": a.files, "batch": a.batch}

    step = a.batch if a.batch > 0 else max(a.files, 1)
    batches = [paths[i:i + step] for i in range(0, len(paths), step)]

    def phase(name, fn):
        dt = 0.0
        for batch in batches:
            if a.drop_caches:
                drop_caches()
            t0 = time.perf_counter()
            for p in batch:
                fn(p)
            dt += time.perf_counter() - t0
        if name in timed:
            res[f"{name}_s"] = dt
            res[f"{name}_ops"] = a.files / dt if dt > 0 else float("inf")

    def renamed(p):
        d, b = os.path.split(p)
        return os.path.join(d, "r" + b[1:])

    phase("create", lambda p: os.close(os.open(p, flags, 0o644)))
    if "stat" in timed:
        phase("stat", os.stat)
    if "restat" in timed:
        for p in paths:  # untimed: every entry and inode cached
            os.stat(p)
        t0 = time.perf_counter()
        for _ in range(a.passes):
            for p in paths:
                os.stat(p)
        dt = time.perf_counter() - t0
        res["restat_s"] = dt
        res["restat_ops"] = a.files * a.passes / dt if dt > 0 else float("inf")
    if "rename" in timed:
        phase("rename", lambda p: os.rename(p, renamed(p)))
        phase("unlink", lambda p: os.unlink(renamed(p)))
    else:
        phase("unlink", os.unlink)
    os.rmdir(a.dir)
    json.dump(res, sys.stdout)
    print()


if __name__ == "__main__":
    main()
