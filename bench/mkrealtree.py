#!/usr/bin/env python3
"""Write a tarball of a real source tree: the Python standard library and
crates from the Cargo registry, real text and binaries, no generated files.

Usage: mkrealtree.py OUT.tar [--files 6000] [--python DIR]
                     [--manifest Cargo.toml | --crates DIR]

Contents, in this order until at least --files regular files are in:
  python/   the standard library (default: the newest /usr/lib/python3.N),
            every file except __pycache__ directories and *.pyc
  crates/   whole crates, in name order, one crate at a time. With
            --manifest (what compare.sh passes: this repository's
            Cargo.toml), the registry crates that its Cargo.lock pins for
            the host platform, as `cargo metadata --locked` lists them;
            cargo downloads any that are missing, so a fresh machine gets
            the same set. With --crates DIR instead, every crate directory
            in DIR (e.g. ~/.cargo/registry/src/*), whatever is there.
Entries are sorted, owned by root (uid/gid 0, no names), with their real
modes and mtimes; symlinks are kept as symlinks, hard links stored as
separate files; no compression. So the tarball is the same on machines
with the same Python and the same Cargo.lock, and not elsewhere: its
sha256, file count and size are printed and go into the benchmark's JSON.
Prints one JSON line: {"files", "dirs", "symlinks", "bytes", "sha256",
"python", "crates_dir", "crates", "crate_names"}.
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import tarfile


def python_stdlib():
    cands = [d for d in glob.glob("/usr/lib/python3.*") if os.path.isdir(d)]
    def ver(d):
        try:
            return int(d.rsplit(".", 1)[1])
        except ValueError:
            return -1
    return max(cands, key=ver) if cands else None


def registry_src():
    cands = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*")))
    return cands[0] if cands else None


def locked_crates(manifest):
    """Directories of the registry crates the lockfile pins for this host."""
    host = next(l.split(":", 1)[1].strip()
                for l in subprocess.run(["rustc", "-vV"], capture_output=True, text=True,
                                        check=True).stdout.splitlines()
                if l.startswith("host:"))
    out = subprocess.run(["cargo", "metadata", "--locked", "--format-version", "1",
                          "--manifest-path", manifest, "--filter-platform", host],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"mkrealtree.py: cargo metadata failed:\n{out.stderr}")
    pkgs = [p for p in json.loads(out.stdout)["packages"]
            if (p.get("source") or "").startswith("registry+")]
    dirs = sorted({os.path.dirname(p["manifest_path"]) for p in pkgs}, key=os.path.basename)
    return dirs


def walk(root, arc_prefix):
    """(path, arcname) of everything under root, sorted, pycache left out."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        rel = os.path.relpath(d, root)
        arc_d = arc_prefix if rel == "." else f"{arc_prefix}/{rel}"
        out.append((d, arc_d))
        # os.walk lists symlinks to directories among dirs: keep them as links.
        for x in sorted(files + [y for y in os.listdir(d)
                                 if os.path.islink(os.path.join(d, y)) and os.path.isdir(os.path.join(d, y))]):
            if x.endswith(".pyc"):
                continue
            out.append((os.path.join(d, x), f"{arc_d}/{x}"))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=6000)
    ap.add_argument("--python", default=python_stdlib())
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--manifest", help="Cargo.toml whose Cargo.lock names the crates")
    src.add_argument("--crates", help="a directory of crate directories")
    a = ap.parse_args()
    if a.manifest:
        crate_dirs = locked_crates(a.manifest)
        a.crates = os.path.dirname(crate_dirs[0]) if crate_dirs else None
    else:
        a.crates = a.crates or registry_src()
        crate_dirs = ([os.path.join(a.crates, c) for c in sorted(os.listdir(a.crates))]
                      if a.crates and os.path.isdir(a.crates) else [])

    entries, sources = [], []
    nfiles = 0

    def count(es):
        return sum(1 for p, _ in es if os.path.isfile(p) and not os.path.islink(p))

    if a.python and os.path.isdir(a.python):
        es = walk(a.python, "tree/python")
        entries += es
        nfiles += count(es)
        sources.append(a.python)
    crate_names = []
    if crate_dirs:
        for p in crate_dirs:
            if nfiles >= a.files:
                break
            c = os.path.basename(p)
            if not os.path.isdir(p) or os.path.islink(p):
                continue
            es = walk(p, f"tree/crates/{c}")
            entries += es
            nfiles += count(es)
            sources.append(c)
            crate_names.append(c)
    if nfiles < a.files:
        print(f"mkrealtree.py: only {nfiles} files found (python={a.python}, crates={a.crates}); "
              f"wanted {a.files}", file=sys.stderr)
        sys.exit(1)

    def clean(ti):
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    files = dirs = links = size = 0
    tmp = a.out + ".part"
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
        for path, arc in entries:
            ti = clean(tar.gettarinfo(path, arcname=arc))
            if ti.islnk():
                # A second name of a file already stored: store it again as
                # a file of its own, so every regular file is one file.
                ti.type, ti.linkname, ti.size = tarfile.REGTYPE, "", os.stat(path).st_size
            if ti.isreg():
                files += 1
                size += ti.size
                with open(path, "rb") as fh:
                    tar.addfile(ti, fh)
            else:
                if ti.isdir():
                    dirs += 1
                elif ti.issym():
                    links += 1
                tar.addfile(ti)
    h = hashlib.sha256()
    with open(tmp, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    os.replace(tmp, a.out)
    info = {"files": files, "dirs": dirs, "symlinks": links, "bytes": size,
            "sha256": h.hexdigest(), "python": a.python, "crates_dir": a.crates,
            "crates": len(crate_names), "crate_names": crate_names}
    print(json.dumps(info))


if __name__ == "__main__":
    main()
