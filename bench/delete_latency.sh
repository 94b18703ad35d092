#!/usr/bin/env bash
# Foreground latency during a background snapshot delete (issue 13,
# item 13), one run, as root. A mounted pool holds a snapshot that alone
# keeps SIZE_MIB MiB (the file was rewritten after it), so deleting it
# frees thousands of dead list entries in batches, one per sync round.
# fio writes 4 KiB blocks at random with an fsync after each, for SECS
# seconds, twice: with nothing else going on, and right after
# `snapshot delete MOUNTPOINT@old` started the background free. The rows
# are the write and fsync latencies (p50, p99, p99.9, max) and IOPS.
# The disk here is virtual and its speed moves between runs: compare the
# rows of one run, and repeat.
#
# Usage: AEGISFS_BIN=target/release/aegisfs bench/delete_latency.sh
# Environment: BENCH_DIR [/tmp/aegis-dellat], SIZE_MIB [2048], SECS [15]
set -euo pipefail
BIN=${AEGISFS_BIN:?set AEGISFS_BIN to the aegisfs binary}
BIN=$(realpath "$BIN")
DIR=${BENCH_DIR:-/tmp/aegis-dellat}
SIZE_MIB=${SIZE_MIB:-2048}
SECS=${SECS:-15}
IMG=$DIR/pool.img
MNT=$DIR/mnt
mkdir -p "$DIR" "$MNT"
unmount_it() {
    for _ in $(seq 50); do umount "$MNT" 2>/dev/null && break; sleep 0.2; done
    for _ in $(seq 100); do flock -n "$IMG" true 2>/dev/null && return; sleep 0.1; done
}
fio_lat() {
    fio --name=lat --filename="$MNT/lat" --rw=randwrite --bs=4k --size=64M \
        --fsync=1 --time_based --runtime="$SECS" --output-format=json \
        --output="$DIR/fio.json" >/dev/null
    python3 - "$DIR/fio.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
w, s = j["write"], j["sync"]["lat_ns"]
ms = lambda ns: f"{ns / 1e6:.2f}"
cols = []
for lat in (w["clat_ns"], s):
    p = lat["percentile"]
    cols += [ms(p["50.000000"]), ms(p["99.000000"]), ms(p["99.900000"]), ms(lat["max"])]
print(" | ".join(cols + [str(round(w["iops"]))]))
PY
}

rm -f "$IMG"
"$BIN" mkfs --size $((SIZE_MIB * 3 + 2048))M "$IMG" >/dev/null
"$BIN" mount "$IMG" "$MNT"
dd if=/dev/urandom of="$MNT/big" bs=1M count="$SIZE_MIB" conv=fsync status=none
"$BIN" snapshot create "$MNT@old" >/dev/null
dd if=/dev/urandom of="$MNT/big" bs=1M count="$SIZE_MIB" conv=fsync,notrunc status=none
sync -f "$MNT"
quiet=$(fio_lat)
start=$(date +%s.%N)
"$BIN" snapshot delete "$MNT@old" >/dev/null
during=$(fio_lat)
# How long the background free took (the snapshot leaves `list` when done).
for _ in $(seq 600); do
    "$BIN" snapshot list "$MNT" | grep -q '^old' || break
    sleep 0.5
done
freed=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
unmount_it
"$BIN" fsck "$IMG" >/dev/null
echo "| fio 4 KiB random write + fsync, $SECS s | write p50 ms | p99 | p99.9 | max | fsync p50 ms | p99 | p99.9 | max | IOPS |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
echo "| quiet | $quiet |"
echo "| during the delete of a snapshot holding $SIZE_MIB MiB | $during |"
echo "background free finished ${freed} s after the delete began"
