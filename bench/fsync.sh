#!/usr/bin/env bash
# fsync latency side by side: ext4 on a loop image, AegisFS with its intent
# log, and AegisFS with the log off (-o nolog: a txg commit per fsync).
#   - 4 KiB appends, each followed by fsync: p50 / p99 latency (fsynclat.py)
#   - fio random 4 KiB writes with fsync after each write: IOPS
# Usage (as root): AEGISFS_BIN=target/release/aegisfs bench/fsync.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AEGISFS_BIN=$(realpath "${AEGISFS_BIN:?set AEGISFS_BIN to the aegisfs executable}")
BENCH_DIR=${BENCH_DIR:-/tmp/aegis-fsync}
COUNT=${COUNT:-2000}
FIO_SECS=${FIO_SECS:-15}
command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq fio >/dev/null; }
command -v fusermount3 >/dev/null || { apt-get update -qq && apt-get install -y -qq fuse3 >/dev/null; }
unmount() { fusermount3 -u "$1" 2>/dev/null || umount "$1"; }
rm -rf "$BENCH_DIR"; mkdir -p "$BENCH_DIR"/{ext4,log,nolog}
PIDS=()
cleanup() {
  for m in "$BENCH_DIR"/log "$BENCH_DIR"/nolog; do mountpoint -q "$m" && unmount "$m" || true; done
  # A mount that did not come up, or did not go, must not keep us waiting.
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  mountpoint -q "$BENCH_DIR/ext4" && umount "$BENCH_DIR/ext4" || true
  rm -rf "$BENCH_DIR"
}
trap cleanup EXIT
truncate -s 2G "$BENCH_DIR/ext4.img"
mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$BENCH_DIR/ext4.img"
mount -o loop "$BENCH_DIR/ext4.img" "$BENCH_DIR/ext4"
for v in log nolog; do
  "$AEGISFS_BIN" mkfs --size 2G "$BENCH_DIR/$v.img" >/dev/null
  opts=allow_other; [[ $v == nolog ]] && opts=allow_other,nolog
  "$AEGISFS_BIN" mount --foreground -o "$opts" "$BENCH_DIR/$v.img" "$BENCH_DIR/$v" & PIDS+=($!)
  for _ in $(seq 300); do mountpoint -q "$BENCH_DIR/$v" && break; sleep 0.1; done
  mountpoint -q "$BENCH_DIR/$v" || { echo "AegisFS ($v) did not mount" >&2; exit 1; }
done
printf '| target | p50 fsync (µs) | p99 fsync (µs) | appends+fsync/s | fio randwrite 4K + fsync (IOPS) |\n|---|---:|---:|---:|---:|\n'
for t in ext4 log nolog; do
  d="$BENCH_DIR/$t"
  python3 "$HERE/fsynclat.py" "$d" --count 100 >/dev/null   # warm up (the first fsync arms the log)
  lat=$(python3 "$HERE/fsynclat.py" "$d" --count "$COUNT")
  iops=$(fio --name=w --directory="$d" --rw=randwrite --bs=4k --size=64M --fsync=1 --ioengine=psync \
         --runtime="$FIO_SECS" --time_based --fallocate=none --output-format=json 2>/dev/null \
         | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))')
  name=$t; [[ $t == log ]] && name="AegisFS (intent log)"; [[ $t == nolog ]] && name="AegisFS (-o nolog: commit per fsync)"
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print("| %s | %s | %s | %s | %s |" % (sys.argv[2], r["p50_us"], r["p99_us"], r["ops_s"], sys.argv[3]))' "$lat" "$name" "$iops"
done
# The device's floor for one durable log write: 8 KiB pwritev2(RWF_DSYNC)
# into an already written region of a file on the same disk.
python3 - "$BENCH_DIR/raw" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o644)
os.write(fd, b"\0" * (1 << 20)); os.fsync(fd)
buf = os.urandom(8192); lat = []
for i in range(1000):
    t = time.perf_counter(); os.pwritev(fd, [buf], (i % 128) * 8192, os.RWF_DSYNC); lat.append(time.perf_counter() - t)
lat.sort(); os.close(fd)
print("| device floor: 8 KiB pwritev2(RWF_DSYNC), no FUSE | %.1f | %.1f | | |" % (lat[500] * 1e6, lat[990] * 1e6))
PY
for v in log nolog; do unmount "$BENCH_DIR/$v"; done
for p in "${PIDS[@]}"; do wait "$p"; done; PIDS=()
for v in log nolog; do "$AEGISFS_BIN" fsck "$BENCH_DIR/$v.img" >/dev/null || { echo "fsck of $v failed" >&2; exit 1; }; done
