#!/usr/bin/env bash
# `cp` of a large file (issue 13, item 6), one run, as root: AegisFS
# shares the file's records through copy_file_range, ext4 on a loop
# image (no reflinks) copies the bytes, XFS on a loop image reflinks
# them. Rows: the time of `cp` plus an fsync of the copy, and the space
# the copy took (free space before and after, from df). The disk here is
# virtual and its speed moves between runs: compare the rows of one run.
#
# Usage: AEGISFS_BIN=target/release/aegisfs bench/reflink.sh
# Environment: BENCH_DIR [/tmp/aegis-reflink], SIZE_MIB [1024]
set -euo pipefail
BIN=${AEGISFS_BIN:?set AEGISFS_BIN to the aegisfs binary}
BIN=$(realpath "$BIN")
DIR=${BENCH_DIR:-/tmp/aegis-reflink}
SIZE_MIB=${SIZE_MIB:-1024}
IMG_MIB=$((SIZE_MIB * 3 + 1024))
mkdir -p "$DIR/mnt"
free_kib() { df --output=avail -k "$DIR/mnt" | tail -1; }
one() {
    local name=$1
    dd if=/dev/urandom of="$DIR/mnt/a" bs=1M count="$SIZE_MIB" conv=fsync status=none
    sync -f "$DIR/mnt/a"
    local before t0 t1 after
    before=$(free_kib)
    t0=$(date +%s.%N)
    cp "$DIR/mnt/a" "$DIR/mnt/b"
    python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$DIR/mnt/b"
    t1=$(date +%s.%N)
    after=$(free_kib)
    cmp "$DIR/mnt/a" "$DIR/mnt/b"
    printf "| %s | %.3f | %d |\n" "$name" "$(echo "$t1 - $t0" | bc)" $(((before - after) / 1024))
}
echo "| filesystem | cp + fsync (s) | space the copy took (MiB) |"
echo "|---|---:|---:|"
rm -f "$DIR/aegis.img"
"$BIN" mkfs --size "${IMG_MIB}M" "$DIR/aegis.img" >/dev/null
"$BIN" mount "$DIR/aegis.img" "$DIR/mnt"
one AegisFS
umount "$DIR/mnt"
for fs in ext4 xfs; do
    command -v "mkfs.$fs" >/dev/null || { echo "| $fs | (mkfs.$fs missing: apt-get install xfsprogs) | |"; continue; }
    rm -f "$DIR/$fs.img"
    truncate -s "${IMG_MIB}M" "$DIR/$fs.img"
    if [ $fs = ext4 ]; then mkfs.ext4 -q -F "$DIR/$fs.img"; else mkfs.xfs -q -f -m reflink=1 "$DIR/$fs.img"; fi
    mount -o loop "$DIR/$fs.img" "$DIR/mnt"
    one "$fs (loop)"
    umount "$DIR/mnt"
done
