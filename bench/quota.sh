#!/usr/bin/env bash
# Write throughput with and without quotas (issue 13, item 11: enforcing
# a quota must not slow writes measurably below it), one run, as root.
# Two images, the same but for a user quota far above what the run
# writes (the dataset keeps usage and checks every change); each is
# mounted in turn and written as that user by fio: 4 KiB random writes
# (the path where the per-inode usage update weighs most) and 1 MiB
# sequential writes, ROUNDS times alternately. The rows are the median
# IOPS and MiB/s of each, and the ratio with/without. The disk here is
# virtual and its speed moves between runs: compare within one run.
#
# Usage: AEGISFS_BIN=target/release/aegisfs bench/quota.sh
# Environment: BENCH_DIR [/tmp/aegis-quota], ROUNDS [3], SECS [10]
set -euo pipefail
BIN=${AEGISFS_BIN:?set AEGISFS_BIN to the aegisfs binary}
BIN=$(realpath "$BIN")
DIR=${BENCH_DIR:-/tmp/aegis-quota}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
USER_ID=65534
mkdir -p "$DIR/mnt" "$DIR/out"
chmod 1777 "$DIR/out"
chmod 755 "$DIR"
unmount_it() {
    for _ in $(seq 50); do umount "$DIR/mnt" 2>/dev/null && break; sleep 0.2; done
    for _ in $(seq 100); do flock -n "$1" true 2>/dev/null && return; sleep 0.1; done
}
for v in plain quota; do
    rm -f "$DIR/$v.img"
    "$BIN" mkfs --size 4G "$DIR/$v.img" >/dev/null
done
"$BIN" quota set "$DIR/quota.img" --user "$USER_ID" --bytes 1T >/dev/null
# One fio job as the user: prints IOPS (randwrite) or MiB/s (write).
run_fio() {
    local img=$1 rw=$2 bs=$3
    "$BIN" mount "$img" "$DIR/mnt" -o allow_other
    chmod 1777 "$DIR/mnt"
    setpriv --reuid="$USER_ID" --regid="$USER_ID" --clear-groups \
        fio --name=q --filename="$DIR/mnt/f" --rw="$rw" --bs="$bs" --size=512M \
        --time_based --runtime="$SECS" --end_fsync=1 --output-format=json \
        --output="$DIR/out/fio.json" >/dev/null
    unmount_it "$img"
    python3 -c '
import json, sys
w = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print(round(w["iops"]) if sys.argv[2] == "randwrite" else round(w["bw"] / 1024))
' "$DIR/out/fio.json" "$rw"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A got
for r in $(seq "$ROUNDS"); do
    for v in plain quota; do
        got[$v-rand]+="$(run_fio "$DIR/$v.img" randwrite 4k) "
        got[$v-seq]+="$(run_fio "$DIR/$v.img" write 1M) "
    done
done
echo "| workload | no quota | quota | ratio |"
echo "|---|---:|---:|---:|"
for w in rand seq; do
    a=$(tr ' ' '\n' <<<"${got[plain-$w]}" | grep . | median)
    b=$(tr ' ' '\n' <<<"${got[quota-$w]}" | grep . | median)
    unit=$([ $w = rand ] && echo "IOPS 4K randwrite" || echo "MiB/s 1M write")
    echo "| $unit | $a | $b | $(python3 -c "print(f'{$b/$a:.3f}')") |"
done
"$BIN" fsck "$DIR/quota.img" >/dev/null && echo "fsck clean (usage recomputed)"
