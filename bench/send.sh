#!/usr/bin/env bash
# Send and receive benchmarks (issue 13, item 13), one run, as root:
#   1. a dataset of SIZE_MIB MiB of incompressible files (1 MiB writes
#      through a FUSE mount), read back sequentially through a fresh
#      mount (cold cache): the reference;
#   2. `send` of its snapshot to /dev/null (a full stream), and to a file,
#      then `receive` of that file into a second image;
#   3. CHANGE_PCT percent of it rewritten in 1 MiB pieces at random
#      places, a second snapshot, and `send -i` of the change, whose time
#      should follow the change, not the dataset.
# The disk here is virtual and its speed moves between runs: compare the
# rows of one run, and repeat.
#
# Usage: AEGISFS_BIN=target/release/aegisfs bench/send.sh
# Environment: BENCH_DIR [/tmp/aegis-sendbench], SIZE_MIB [1024], CHANGE_PCT [1]
set -euo pipefail
BIN=${AEGISFS_BIN:?set AEGISFS_BIN to the aegisfs binary}
BIN=$(realpath "$BIN")
DIR=${BENCH_DIR:-/tmp/aegis-sendbench}
SIZE_MIB=${SIZE_MIB:-1024}
CHANGE_PCT=${CHANGE_PCT:-1}
IMG=$DIR/a.img
DST=$DIR/b.img
MNT=$DIR/mnt
mkdir -p "$DIR" "$MNT"

mount_it() { "$BIN" mount "$IMG" "$MNT"; }
unmount_it() {
    for _ in $(seq 50); do umount "$MNT" 2>/dev/null && break; sleep 0.2; done
    for _ in $(seq 100); do flock -n "$IMG" true 2>/dev/null && return; sleep 0.1; done
}
secs() { python3 -c 'import sys,time; t=time.monotonic(); import subprocess; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL if sys.argv[1] != "sh" else None); print(f"{time.monotonic()-t:.3f}")' "$@"; }
rate() { python3 -c "print(f'{$1 / $2:.0f}')"; }

rm -f "$IMG" "$DST" "$DIR"/*.stream
"$BIN" mkfs --size $((SIZE_MIB * 3 + 1024))M "$IMG" >/dev/null
"$BIN" mkfs --size $((SIZE_MIB * 3 + 1024))M "$DST" >/dev/null
mount_it
FILES=$((SIZE_MIB / 64))
for i in $(seq 1 "$FILES"); do
    head -c $((64 << 20)) /dev/urandom > "$MNT/f$i"
done
unmount_it
"$BIN" snapshot create "$IMG@one" >/dev/null
mount_it
sync; echo 3 > /proc/sys/vm/drop_caches
read_s=$(secs sh -c "cat $MNT/f* > /dev/null")
unmount_it
echo 3 > /proc/sys/vm/drop_caches
send_null_s=$(secs sh -c "$BIN send $IMG@one > /dev/null 2>/dev/null")
send_file_s=$(secs "$BIN" send "$IMG@one" -o "$DIR/full.stream")
stream_mib=$(( $(stat -c %s "$DIR/full.stream") >> 20 ))
recv_s=$(secs "$BIN" receive "$DST/copy" -i "$DIR/full.stream")
mount_it
python3 - "$MNT" "$FILES" "$SIZE_MIB" "$CHANGE_PCT" <<'PY'
import os, random, sys
root, files, size_mib, pct = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
random.seed(1)
pieces = max(1, int(size_mib * pct / 100))
for _ in range(pieces):
    f = f"{root}/f{random.randint(1, files)}"
    with open(f, "r+b") as fh:
        fh.seek(random.randrange(0, 64) << 20)
        fh.write(os.urandom(1 << 20))
        os.fsync(fh.fileno())
PY
unmount_it
"$BIN" snapshot create "$IMG@two" >/dev/null
inc_s=$(secs "$BIN" send "$IMG@two" -i @one -o "$DIR/inc.stream")
inc_mib=$(( $(stat -c %s "$DIR/inc.stream") >> 20 ))
inc_recv_s=$(secs "$BIN" receive "$DST/copy" -i "$DIR/inc.stream")
"$BIN" fsck "$DST" >/dev/null

echo "| measure | seconds | MiB/s |"
echo "|---|---:|---:|"
echo "| sequential read through FUSE, cold ($SIZE_MIB MiB) | $read_s | $(rate "$SIZE_MIB" "$read_s") |"
echo "| full send to /dev/null | $send_null_s | $(rate "$SIZE_MIB" "$send_null_s") |"
echo "| full send to a file ($stream_mib MiB stream) | $send_file_s | $(rate "$SIZE_MIB" "$send_file_s") |"
echo "| full receive from that file | $recv_s | $(rate "$SIZE_MIB" "$recv_s") |"
echo "| incremental send of $CHANGE_PCT% ($inc_mib MiB stream) | $inc_s | |"
echo "| incremental receive | $inc_recv_s | |"
echo "full send / sequential read: $(python3 -c "print(f'{$read_s / $send_null_s:.2f}')")x the rate"
echo "incremental / full send time: $(python3 -c "print(f'{$inc_s / $send_file_s:.3f}')")"
