#!/usr/bin/env python3
"""Write a deterministic tarball of a synthetic source tree.

The same arguments give the same bytes on every machine (fixed seed, fixed
mtimes, owner root, sorted entries, no compression): N files of 0..MAX bytes
of pseudo-random text, spread over D nested directories.

Usage: mktree.py OUT.tar [--files 5000] [--dirs 250] [--max-size 16384] [--seed 42]
Prints one JSON line: {"files", "dirs", "bytes", "sha256"}.
"""
import argparse
import hashlib
import io
import json
import random
import sys
import tarfile

MTIME = 1_700_000_000
EXTS = [".c", ".h", ".rs", ".py", ".txt", ".md", ".toml", ".json"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--dirs", type=int, default=250)
    ap.add_argument("--max-size", type=int, default=16384)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()

    rng = random.Random(a.seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10)))
             for _ in range(2000)]

    # A 2 MiB pool of text; each file is a slice of it at a random offset.
    parts, n = [], 0
    while n < 2 * 1024 * 1024 + a.max_size:
        line = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12))) + "\n"
        parts.append(line)
        n += len(line)
    pool = "".join(parts).encode()

    # Nested directories: each new one goes under a random existing one
    # (the root included), at most 6 levels deep.
    dirs = [""]
    depth = {"": 0}
    root = "src"
    for i in range(a.dirs):
        while True:
            parent = rng.choice(dirs)
            if depth[parent] < 6:
                break
        d = f"{parent}/{rng.choice(vocab)}{i}" if parent else f"{rng.choice(vocab)}{i}"
        dirs.append(d)
        depth[d] = depth[parent] + 1

    files = {}
    for i in range(a.files):
        d = rng.choice(dirs[1:]) if len(dirs) > 1 else ""
        name = f"{rng.choice(vocab)}_{i}{rng.choice(EXTS)}"
        size = rng.randint(0, a.max_size)
        off = rng.randrange(0, len(pool) - a.max_size)
        files[f"{d}/{name}" if d else name] = pool[off:off + size]

    entries = [(f"{root}/{d}" if d else root, None) for d in dirs]
    entries += [(f"{root}/{p}", data) for p, data in files.items()]
    entries.sort(key=lambda e: e[0].split("/"))

    total = 0
    with open(a.out, "wb") as fh:
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for path, data in entries:
                ti = tarfile.TarInfo(path)
                ti.mtime = MTIME
                ti.uid = ti.gid = 0
                ti.uname = ti.gname = "root"
                if data is None:
                    ti.type = tarfile.DIRTYPE
                    ti.mode = 0o755
                    tar.addfile(ti)
                else:
                    ti.mode = 0o644
                    ti.size = len(data)
                    total += len(data)
                    tar.addfile(ti, io.BytesIO(data))

    h = hashlib.sha256()
    with open(a.out, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    json.dump({"files": len(files), "dirs": len(dirs), "bytes": total,
               "sha256": h.hexdigest()}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
