#!/usr/bin/env python3
"""Turn compare.sh's raw results into a Markdown table and a JSON file.

Usage: report.py RESULTS.tsv META.json [--out FILE.json]

RESULTS.tsv: lines "target<TAB>key<TAB>value" (value may be FAIL).
META.json: run facts (machine, sizes, tarball) that go into the JSON as "meta".
"""
import argparse
import json
import sys

TARGETS = [("ext4", "ext4"), ("passthrough_ll", "passthrough_ll"), ("aegisfs", "AegisFS")]
# Further AegisFS configurations (AEGISFS_VARIANTS) come as "aegisfs[...]",
# labelled "AegisFS ...", after these, in the order measured.

# key, label template, unit, decimals, higher is better
ROWS = [
    ("seq_write_mib_s", "sequential write {fio_size} (bs 1M, end_fsync)", "MiB/s", 1, True),
    ("seq_read_mib_s", "sequential read {fio_size} (bs 1M, cold cache)", "MiB/s", 1, True),
    ("warm_read_mib_s", "warm re-read {fio_size} (bs 1M, cached)", "MiB/s", 1, True),
    ("rand_read_iops", "random read 4K, {randread_secs} s (cold cache)", "IOPS", 0, True),
    ("rand_write_iops", "random write 4K, {randwrite_size} file, {randwrite_secs} s (buffered)", "IOPS", 0, True),
    ("rand_write_fsync_iops", "random write 4K + fsync each, {randwrite_secs} s", "IOPS", 0, True),
    ("create_ops_s", "create {meta_files} files, one dir", "ops/s", 0, True),
    ("stat_ops_s", "stat {meta_files} files (cold cache)", "ops/s", 0, True),
    ("unlink_ops_s", "unlink {meta_files} files (cold cache)", "ops/s", 0, True),
    ("restat_ops_s", "stat {restat_files} files again, {restat_passes} passes (warm)", "ops/s", 0, True),
    ("rename_ops_s", "rename {rename_files} files, one dir (cold cache)", "ops/s", 0, True),
    ("par_create_ops_s", "{par_procs} processes: create {par_files} files, a dir each", "ops/s", 0, True),
    ("par_stat_ops_s", "{par_procs} processes: stat {par_files} files (cold cache)", "ops/s", 0, True),
    ("par_unlink_ops_s", "{par_procs} processes: unlink {par_files} files (cold cache)", "ops/s", 0, True),
    ("tar_extract_s", "tar -xf {tree_files} files + sync", "s", 2, False),
    ("tar_extract_files_s", "tar -xf {tree_files} files + sync", "files/s", 0, True),
    ("realtree_extract_s", "tar -xf real tree, {realtree_files} files + sync", "s", 2, False),
    ("realtree_extract_files_s", "tar -xf real tree, {realtree_files} files + sync", "files/s", 0, True),
    ("peak_rss_mib", "daemon peak RSS (VmHWM) over the suite", "MiB", 1, False),
]
LABEL_KEYS = ("fio_size", "randread_secs", "meta_files", "tree_files", "randwrite_size",
              "randwrite_secs", "rename_files", "restat_files", "restat_passes", "par_procs", "par_files", "realtree_files")


def fmt(v, dec):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    return f"{v:,.{dec}f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("meta")
    ap.add_argument("--out")
    a = ap.parse_args()

    try:
        with open(a.meta) as fh:
            meta = json.load(fh)
    except (OSError, ValueError) as e:
        print(f"report.py: no run facts ({e}); labels incomplete", file=sys.stderr)
        meta = {}
    res = {}
    with open(a.results) as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            target, key, value = line.split("\t")
            try:
                v = float(value)
            except ValueError:
                v = value
            res.setdefault(target, {})[key] = v

    present = [(t, name) for t, name in TARGETS if t in res]
    present += [(t, "AegisFS " + t[len("aegisfs["):-1]) for t in res
                if t.startswith("aegisfs[") and t.endswith("]")]
    aegis = [(t, name) for t, name in present if t.startswith("aegisfs")]
    ratio = bool(aegis) and "passthrough_ll" in res

    head = ["workload", "unit"] + [name for _, name in present]
    if ratio:
        if len(aegis) == 1:
            head.append("AegisFS / passthrough_ll")
        else:
            head += [f"{name} / passthrough_ll" for _, name in aegis]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    labels = {k: meta.get(k, "?") for k in LABEL_KEYS}
    for key, label, unit, dec, _higher in ROWS:
        if not any(key in res[t] for t, _ in present):
            continue  # a step left out (WORKLOADS) or a row no target has
        cells = [label.format(**labels), unit]
        for t, _ in present:
            cells.append(fmt(res[t].get(key), dec))
        if ratio:
            for t, _ in aegis:
                x, y = res[t].get(key), res["passthrough_ll"].get(key)
                if isinstance(x, float) and isinstance(y, float) and y > 0:
                    cells.append(f"{x / y:.2f}")
                else:
                    cells.append("–")
        lines.append("| " + " | ".join(cells) + " |")
    print("\n".join(lines))
    if ratio:
        print("\nRatio = AegisFS value / passthrough_ll value: above 1 is better "
              "for every row except seconds and MiB of memory, where below 1 is better.")

    if a.out:
        out = {
            "meta": meta,
            "units": {key: unit for key, _, unit, _, _ in ROWS},
            "higher_is_better": {key: hib for key, _, _, _, hib in ROWS},
            "results": {t: res[t] for t, _ in present},
            "peak_rss_mib": {
                "aegisfs_max": max((res[t]["peak_rss_mib"] for t, _ in aegis
                                    if isinstance(res[t].get("peak_rss_mib"), float)), default=None),
                "passthrough_ll": res.get("passthrough_ll", {}).get("peak_rss_mib"),
            },
        }
        with open(a.out, "w") as fh:
            json.dump(out, fh, indent=2)
            fh.write("\n")
        print(f"\nJSON written to {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
