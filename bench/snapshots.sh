#!/usr/bin/env bash
# Snapshot benchmarks (issue 13, item 13), one run, as root:
#   1. snapshot create time on an empty dataset and on one of FILES files;
#   2. fio sequential write (1 GiB) and 4 KiB random writes (256 MiB file,
#      SECS seconds) with 0 snapshots and with SNAPS snapshots present,
#      each taken after rewriting part of a file, so dead lists exist;
#   3. the time to delete a snapshot that alone holds a 1 GiB file.
# The disk here is virtual and its speed moves between runs: compare the
# rows of one run, and repeat.
#
# Usage: AEGISFS_BIN=target/release/aegisfs bench/snapshots.sh
# Environment: BENCH_DIR [/tmp/aegis-snapbench], FILES [100000],
#   SNAPS [100], SECS [10]
set -euo pipefail
BIN=${AEGISFS_BIN:?set AEGISFS_BIN to the aegisfs binary}
BIN=$(realpath "$BIN")
DIR=${BENCH_DIR:-/tmp/aegis-snapbench}
FILES=${FILES:-100000}
SNAPS=${SNAPS:-100}
SECS=${SECS:-10}
IMG=$DIR/pool.img
MNT=$DIR/mnt
mkdir -p "$DIR" "$MNT"

mount_it() { "$BIN" mount "$IMG" "$MNT"; }
unmount_it() {
    for _ in $(seq 50); do umount "$MNT" 2>/dev/null && break; sleep 0.2; done
    # The daemon lets go of the image lock when it has closed the pool.
    for _ in $(seq 100); do flock -n "$IMG" true 2>/dev/null && return; sleep 0.1; done
}
fresh() { rm -f "$IMG"; "$BIN" mkfs --size 8G "$IMG" >/dev/null; }
create_ms() { "$BIN" snapshot create "$IMG@$1" | sed -n 's/.* in \([0-9.]*\) ms$/\1/p'; }

fio_seq() {
    fio --name=seq --filename="$MNT/seq" --rw=write --bs=1M --size=1G \
        --end_fsync=1 --output-format=json | python3 -c \
        'import json,sys; j=json.load(sys.stdin); print(round(j["jobs"][0]["write"]["bw"]/1024))'
    rm -f "$MNT/seq"
}
fio_rand() {
    fio --name=rand --filename="$MNT/rand" --rw=randwrite --bs=4k --size=256M \
        --time_based --runtime="$SECS" --output-format=json | python3 -c \
        'import json,sys; j=json.load(sys.stdin); print(round(j["jobs"][0]["write"]["iops"]))'
    rm -f "$MNT/rand"
}

echo "## snapshot create"
fresh
empty=$(create_ms empty)
mount_it
python3 - "$MNT" "$FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in range(n // 1000 + 1):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
for i in range(n):
    fd = os.open(f"{root}/d{i // 1000}/f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"x" * 100)
    os.close(fd)
EOF
unmount_it
full=$(create_ms full)
echo "| dataset | create (ms) |"
echo "|---|---:|"
echo "| empty | $empty |"
echo "| $FILES files | $full |"

echo "## writes with 0 and $SNAPS snapshots"
fresh
mount_it
seq0=$(fio_seq); rand0=$(fio_rand)
head -c 64M /dev/urandom > "$MNT/churn"
unmount_it
for i in $(seq "$SNAPS"); do
    mount_it
    dd if=/dev/urandom of="$MNT/churn" bs=1M count=1 seek=$((i % 64)) conv=notrunc status=none
    unmount_it
    "$BIN" snapshot create "$IMG@s$i" >/dev/null
done
mount_it
seqn=$(fio_seq); randn=$(fio_rand)
unmount_it
echo "| snapshots | seq write (MiB/s) | 4K random write (IOPS) |"
echo "|---:|---:|---:|"
echo "| 0 | $seq0 | $rand0 |"
echo "| $SNAPS | $seqn | $randn |"

echo "## delete a snapshot that alone holds 1 GiB"
fresh
mount_it
head -c 1G /dev/urandom > "$MNT/big"
unmount_it
"$BIN" snapshot create "$IMG@big" >/dev/null
mount_it; rm "$MNT/big"; unmount_it
start=$(date +%s.%N)
"$BIN" snapshot delete "$IMG@big" >/dev/null
end=$(date +%s.%N)
echo "| delete of a 1 GiB snapshot | $(python3 -c "print(round(($end - $start) * 1000))") ms (CLI, open and close included) |"
"$BIN" fsck "$IMG" >/dev/null && echo "fsck clean"
rm -f "$IMG"
