#!/usr/bin/env bash
# Side-by-side file system benchmark: ext4 on a loop image, libfuse's
# passthrough_ll over that ext4, and (when AEGISFS_BIN is set) AegisFS.
# Same workloads on each; a Markdown table at the end. See bench/README.md.
#
# Usage (as root):
#   bench/compare.sh [--out results.json] [--size 4G]
#   AEGISFS_BIN=target/release/aegisfs bench/compare.sh --out results.json
#
# Environment (defaults in brackets):
#   AEGISFS_BIN    AegisFS executable; the AegisFS column is measured only if set
#   BENCH_DIR      scratch dir for images and mounts [/tmp/aegis-bench]
#   SIZE           size of each file system image, sparse [4G]
#   FIO_SIZE       size of the sequential/random test file [1G]
#   RANDREAD_SECS  duration of the 4 KiB random read test [20]
#   META_FILES     files for create/stat/unlink [20000]
#   META_BATCH     caches dropped (untimed) every this many files; 0 = never [5000]
#   TREE_FILES     files in the tarball [5000]; TREE_DIRS dirs in it [250]
#   MOUNT_TIMEOUT  seconds to wait for a FUSE mount to appear [60]
#   STEP_TIMEOUT   seconds before one workload step is killed [1800]
#   PYTHON         python interpreter [python3]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AEGISFS_BIN=${AEGISFS_BIN:-}
BENCH_DIR=${BENCH_DIR:-/tmp/aegis-bench}
SIZE=${SIZE:-4G}
FIO_SIZE=${FIO_SIZE:-1G}
RANDREAD_SECS=${RANDREAD_SECS:-20}
META_FILES=${META_FILES:-20000}
META_BATCH=${META_BATCH:-5000}
TREE_FILES=${TREE_FILES:-5000}
TREE_DIRS=${TREE_DIRS:-250}
MOUNT_TIMEOUT=${MOUNT_TIMEOUT:-60}
STEP_TIMEOUT=${STEP_TIMEOUT:-1800}
PYTHON=${PYTHON:-python3}
EXAMPLES=/usr/share/doc/libfuse3-dev/examples
OUT=""

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }

while (($#)); do
  case $1 in
    --out) OUT=${2:?--out needs a file}; shift 2 ;;
    --out=*) OUT=${1#--out=}; shift ;;
    --size) SIZE=${2:?--size needs a value}; shift 2 ;;
    --size=*) SIZE=${1#--size=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done
if [[ -n $OUT && $OUT != /* ]]; then OUT="$PWD/$OUT"; fi

log()  { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
warn() { printf '\n*** bench: WARNING: %s\n\n' "$*" >&2; }
die()  { printf '\n*** bench: ERROR: %s\n\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# AegisFS command line: the only place that knows it. Adapt here if the
# mkfs/mount/fsck flags change.
#   aegisfs mkfs IMG        format a new image of $SIZE
#   aegisfs mount IMG DIR   mount in the foreground until unmounted (exec'd,
#                           so when started with & the PID is the daemon's)
#   aegisfs fsck IMG        check the image after unmount (exit 0 = clean)
aegisfs() {
  case $1 in
    mkfs)  "$AEGISFS_BIN" mkfs --size "$SIZE" "$2" ;;
    mount) exec "$AEGISFS_BIN" mount --foreground "$2" "$3" ;;
    fsck)  "$AEGISFS_BIN" fsck "$2" ;;
    *) die "aegisfs(): unknown verb $1" ;;
  esac
}
# ---------------------------------------------------------------------------

# ---- preflight -------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "must run as root (mount, losetup, drop_caches)"
[[ -c /dev/fuse ]] || die "/dev/fuse is missing: no FUSE support in this kernel/container"
if [[ -n $AEGISFS_BIN ]]; then
  [[ -x $AEGISFS_BIN ]] || die "AEGISFS_BIN=$AEGISFS_BIN is not an executable file"
  AEGISFS_BIN=$(cd "$(dirname "$AEGISFS_BIN")" && pwd)/$(basename "$AEGISFS_BIN")
fi

need_install=0
for c in fio fusermount3 pkg-config gcc mkfs.ext4 mountpoint losetup findmnt tar timeout; do
  command -v "$c" >/dev/null 2>&1 || need_install=1
done
[[ -f $EXAMPLES/passthrough_ll.c ]] || need_install=1
pkg-config --exists fuse3 2>/dev/null || need_install=1
if ((need_install)); then
  log "installing missing packages (libfuse3-dev fuse3 fio pkg-config gcc e2fsprogs)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq libfuse3-dev fuse3 fio pkg-config gcc e2fsprogs util-linux tar coreutils; } >&2 \
    || die "apt-get install failed; install libfuse3-dev fuse3 fio pkg-config gcc by hand"
fi
[[ -f $EXAMPLES/passthrough_ll.c ]] || die "$EXAMPLES/passthrough_ll.c not found even after installing libfuse3-dev"
command -v "$PYTHON" >/dev/null || die "python interpreter '$PYTHON' not found (set PYTHON=...)"

# passthrough_ll keeps an O_PATH descriptor open for every inode the kernel
# holds; past the open-file limit its flush fails with EBADF. Raise the limit
# where allowed (needs CAP_SYS_RESOURCE; some sandboxes cap it at 20,000);
# metaops.py drops the caches every META_BATCH files so that the inodes held
# at once stay well below it. Same limit and batches for every target.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
held=$META_BATCH
((held > 0 && held <= META_FILES)) || held=$META_FILES
((held >= TREE_FILES + TREE_DIRS)) || held=$((TREE_FILES + TREE_DIRS))
(($(ulimit -Sn) >= held + 1000)) \
  || die "open-file limit $(ulimit -Sn) is too low: passthrough_ll needs one descriptor per cached inode (META_BATCH=$META_BATCH, TREE_FILES=$TREE_FILES); lower META_BATCH or raise ulimit -n"

drop_caches() {
  sync
  echo 3 > /proc/sys/vm/drop_caches
}
drop_caches 2>/dev/null || die "cannot write /proc/sys/vm/drop_caches (needed for cold-cache numbers)"

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
fio_bytes=$(numfmt --from=iec "$FIO_SIZE")
avail=$(df --output=avail -B1 "$BENCH_DIR" | tail -n 1 | tr -d ' ')
need=$((fio_bytes + 1536 * 1024 * 1024))
((avail >= need)) || die "$BENCH_DIR has $((avail >> 20)) MiB free; need about $((need >> 20)) MiB (the $FIO_SIZE test file takes real space). Set BENCH_DIR to a roomier disk."
log "scratch: $BENCH_DIR ($((avail >> 30)) GiB free), image size $SIZE, test file $FIO_SIZE"

RUN=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
RES=$RUN/results.tsv
: > "$RES"
FAILED=0
REPORTED=0

# ---- cleanup -----------------------------------------------------------------
declare -A FUSE_PID=()   # mountpoint -> daemon pid
EXT4_IMG=$RUN/ext4.img
EXT4_MNT=$RUN/mnt/ext4

STOP_RC=0
stop_fuse() {  # stop_fuse MNT: unmount, then wait for the daemon to exit; its status in STOP_RC
  local mnt=$1 pid=${FUSE_PID[$1]:-} i rc=0
  if mountpoint -q "$mnt" 2>/dev/null; then
    fusermount3 -u "$mnt" 2>/dev/null || { sleep 1; fusermount3 -u "$mnt" 2>/dev/null; } || {
      warn "fusermount3 -u $mnt failed (busy or hung); killing the daemon and detaching lazily"
      [[ -n $pid ]] && kill "$pid" 2>/dev/null
      sleep 1
      fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    }
  fi
  if [[ -n $pid ]]; then
    for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      warn "FUSE daemon $pid for $mnt still running 30 s after unmount; killing it"
      kill "$pid" 2>/dev/null; sleep 2; kill -9 "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || rc=$?
    unset "FUSE_PID[$mnt]"
  fi
  STOP_RC=$rc
}

teardown_ext4() {
  if mountpoint -q "$EXT4_MNT" 2>/dev/null; then
    umount "$EXT4_MNT" 2>/dev/null || { sleep 1; umount "$EXT4_MNT"; } || {
      warn "umount $EXT4_MNT failed; detaching lazily"; umount -l "$EXT4_MNT" || true; }
  fi
  local dev
  for dev in $(losetup -j "$EXT4_IMG" 2>/dev/null | cut -d: -f1); do losetup -d "$dev" || true; done
  rm -f "$EXT4_IMG"
}

cleanup() {
  local rc=$? m
  set +e
  trap - EXIT INT TERM
  if ((rc != 0 && !REPORTED)) && [[ -s $RES ]]; then
    write_meta 2>/dev/null
    { echo; echo "Partial results before the error:"; "$PYTHON" "$HERE/report.py" "$RES" "$RUN/meta.json"; } >&2
  fi
  for m in "${!FUSE_PID[@]}"; do stop_fuse "$m"; done
  teardown_ext4
  for m in $(findmnt -rn -o TARGET | grep -F "$RUN/" | sort -r); do
    warn "still mounted: $m; unmounting lazily"; umount -l "$m"
  done
  if findmnt -rn -o TARGET | grep -qF "$RUN/"; then
    warn "mounts remain under $RUN; not removing it"
  else
    rm -rf "$RUN"
    rmdir "$BENCH_DIR" 2>/dev/null
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- mounts -------------------------------------------------------------------
setup_ext4() {  # fresh ext4 on a sparse loop image, mounted on $EXT4_MNT
  teardown_ext4
  truncate -s "$SIZE" "$EXT4_IMG"
  # No lazy init: otherwise ext4lazyinit zeroes inode tables in the
  # background during the first minutes and skews the numbers.
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$EXT4_IMG" \
    || die "mkfs.ext4 on $EXT4_IMG failed"
  mkdir -p "$EXT4_MNT"
  mount -o loop "$EXT4_IMG" "$EXT4_MNT" \
    || die "mount -o loop $EXT4_IMG $EXT4_MNT failed (loop devices available? try: losetup -f)"
  [[ $(findmnt -n -o FSTYPE -M "$EXT4_MNT") == ext4 ]] \
    || die "$EXT4_MNT is not an ext4 mount after mount -o loop"
}

start_fuse() {  # start_fuse NAME MNT LOG CMD...: run CMD in the background, wait for the mount
  local name=$1 mnt=$2 logf=$3 pid rc i shown
  shift 3
  shown="$*"
  [[ $1 == aegisfs ]] && shown="$AEGISFS_BIN ${*:2}"
  mkdir -p "$mnt"
  mountpoint -q "$mnt" && die "$mnt is already a mount point"
  "$@" > "$logf" 2>&1 &
  pid=$!
  FUSE_PID[$mnt]=$pid
  for ((i = 0; i < MOUNT_TIMEOUT * 10; i++)); do
    if mountpoint -q "$mnt"; then
      local fst
      fst=$(findmnt -n -o FSTYPE -M "$mnt")
      [[ $fst == fuse* ]] || die "$name: $mnt got mounted, but as '$fst', not FUSE"
      log "$name mounted on $mnt (pid $pid, $fst)"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      rc=0; wait "$pid" || rc=$?
      unset "FUSE_PID[$mnt]"
      die "$name MOUNT FAILED: the daemon exited with status $rc before $mnt was mounted.
  command: $shown
  its output ($logf):
$(tail -n 40 "$logf" | sed 's/^/    /')"
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  die "$name MOUNT FAILED: $mnt not mounted within $MOUNT_TIMEOUT s (daemon pid $pid still running).
  command: $shown
  its output ($logf):
$(tail -n 40 "$logf" | sed 's/^/    /')"
}

write_meta() {  # run facts for the JSON and the table labels, in $RUN/meta.json
  LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
  export LOAD_END
  LOAD_START=${LOAD_START:-$LOAD_END} TREE_INFO=${TREE_INFO:-null} SIZE=$SIZE \
    FIO_SIZE=$FIO_SIZE RANDREAD_SECS=$RANDREAD_SECS META_FILES=$META_FILES META_BATCH=$META_BATCH \
    TREE_FILES=$TREE_FILES \
    BENCH_DIR=$BENCH_DIR AEGISFS_BIN=$AEGISFS_BIN \
    "$PYTHON" - "$RUN/meta.json" <<'EOF'
import json, os, platform, subprocess, sys, time
e = os.environ
def cmd(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), None)
mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), None)
meta = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "kernel": platform.release(), "cpu": cpu, "cpus": os.cpu_count(), "mem_mib": mem,
    "fio": cmd("fio", "--version"), "libfuse": cmd("pkg-config", "--modversion", "fuse3"),
    "image_size": e["SIZE"], "fio_size": e["FIO_SIZE"], "randread_secs": int(e["RANDREAD_SECS"]),
    "meta_files": int(e["META_FILES"]), "meta_batch": int(e["META_BATCH"]),
    "tree_files": int(e["TREE_FILES"]), "nofile_limit": int(subprocess.run(["sh", "-c", "ulimit -n"], capture_output=True, text=True).stdout),
    "tarball": json.loads(e["TREE_INFO"]), "bench_dir": e["BENCH_DIR"],
    "aegisfs_bin": e.get("AEGISFS_BIN") or None,
    "loadavg_start": e["LOAD_START"], "loadavg_end": e["LOAD_END"],
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
}

# ---- workloads -----------------------------------------------------------------
record() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RES"; }

json_get() {  # json_get FILE EXPR: print a python expression over the parsed JSON `j`
  "$PYTHON" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

run_fio() {  # run_fio TARGET DIR NAME ARGS...: common fio options; output JSON in $RUN
  local t=$1 d=$2 name=$3
  shift 3
  local out=$RUN/$t-$name.json
  timeout -k 30 "$STEP_TIMEOUT" fio --name="$name" --filename="$d/fio.dat" --size="$FIO_SIZE" \
    --ioengine=psync --numjobs=1 --fallocate=none --output-format=json --output="$out" "$@" >&2
  [[ $(json_get "$out" 'j["jobs"][0]["error"]') == 0 ]] || { echo "fio $name reported an error: $(cat "$out")" >&2; return 1; }
  echo "$out"
}

w_seq_write() {
  local out v
  drop_caches
  out=$(run_fio "$1" "$2" seqwrite --rw=write --bs=1M --end_fsync=1)
  v=$(json_get "$out" 'round(j["jobs"][0]["write"]["bw_bytes"] / 1048576, 2)')
  record "$1" seq_write_mib_s "$v"; log "$1: seq write $v MiB/s"
}

w_seq_read() {
  local out v
  drop_caches
  out=$(run_fio "$1" "$2" seqread --rw=read --bs=1M)
  v=$(json_get "$out" 'round(j["jobs"][0]["read"]["bw_bytes"] / 1048576, 2)')
  record "$1" seq_read_mib_s "$v"; log "$1: seq read $v MiB/s"
}

w_rand_read() {
  local out v
  drop_caches
  out=$(run_fio "$1" "$2" randread --rw=randread --bs=4k --runtime="${RANDREAD_SECS}s" --time_based)
  v=$(json_get "$out" 'round(j["jobs"][0]["read"]["iops"], 1)')
  record "$1" rand_read_iops "$v"; log "$1: rand read 4K $v IOPS"
}

w_meta() {
  local out
  rm -f "$2/fio.dat"
  drop_caches
  out=$(timeout -k 30 "$STEP_TIMEOUT" "$PYTHON" "$HERE/metaops.py" "$2/meta" --files "$META_FILES" --batch "$META_BATCH" --drop-caches)
  local c s u
  c=$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["create_ops"], 1))')
  s=$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["stat_ops"], 1))')
  u=$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["unlink_ops"], 1))')
  record "$1" create_ops_s "$c"; record "$1" stat_ops_s "$s"; record "$1" unlink_ops_s "$u"
  log "$1: create $c/s, stat $s/s, unlink $u/s"
}

w_tar() {
  local d=$2/tree t0 t1 secs fps n
  rm -rf "$d"; mkdir -p "$d"
  drop_caches
  cat "$TARBALL" > /dev/null   # the source is read from memory; only the target's writes count
  t0=$(date +%s%N)
  timeout -k 30 "$STEP_TIMEOUT" tar -xf "$TARBALL" -C "$d"
  sync
  t1=$(date +%s%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
  fps=$(awk -v n="$TREE_FILES" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
  record "$1" tar_extract_s "$secs"; record "$1" tar_extract_files_s "$fps"
  log "$1: tar -xf + sync ${secs}s, $fps files/s"
  # Untimed correctness check: every file present with the archive's content, mode and mtime.
  n=$(find "$d" -type f | wc -l)
  [[ $n -eq $TREE_FILES ]] || { echo "$1: extracted $n regular files, expected $TREE_FILES" >&2; return 1; }
  tar -df "$TARBALL" -C "$d" >&2 || { echo "$1: extracted tree differs from the archive (tar -d)" >&2; return 1; }
  rm -rf "$d"
}

run_step() {  # run_step TARGET DIR FUNC KEYS...: a failed step is recorded as FAIL, the run goes on
  local t=$1 d=$2 f=$3 rc k
  shift 3
  set +e
  (set -e; "$f" "$t" "$d")
  rc=$?
  set -e
  if ((rc != 0)); then
    FAILED=1
    warn "$t: workload $f FAILED (exit $rc); recorded as FAIL"
    for k in "$@"; do record "$t" "$k" FAIL; done
  fi
}

run_workloads() {  # run_workloads TARGET DIR
  local t=$1 d=$2
  mkdir -p "$d"
  log "== $t: workloads in $d (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  run_step "$t" "$d" w_seq_write seq_write_mib_s
  run_step "$t" "$d" w_seq_read seq_read_mib_s
  run_step "$t" "$d" w_rand_read rand_read_iops
  run_step "$t" "$d" w_meta create_ops_s stat_ops_s unlink_ops_s
  run_step "$t" "$d" w_tar tar_extract_s tar_extract_files_s
  rm -rf "$d" || true
}

# ---- inputs ----------------------------------------------------------------------
log "building the tarball ($TREE_FILES files, $TREE_DIRS dirs, seeded)"
TARBALL=$RUN/srctree.tar
TREE_INFO=$("$PYTHON" "$HERE/mktree.py" "$TARBALL" --files "$TREE_FILES" --dirs "$TREE_DIRS")
log "tarball: $TREE_INFO"

log "building passthrough_ll from $EXAMPLES"
mkdir -p "$RUN/build"
cp "$EXAMPLES"/passthrough_ll.c "$EXAMPLES"/*.h "$RUN/build/"
# shellcheck disable=SC2046
gcc -O2 -Wall "$RUN/build/passthrough_ll.c" $(pkg-config fuse3 --cflags --libs) -o "$RUN/build/passthrough_ll" \
  || die "building passthrough_ll failed"
PT_BIN=$RUN/build/passthrough_ll

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- targets ---------------------------------------------------------------------
# 1. ext4 on a loop image
setup_ext4
run_workloads ext4 "$EXT4_MNT/work"
teardown_ext4

# 2. passthrough_ll over a fresh ext4 (default cache mode: cache=auto, timeout 1 s)
setup_ext4
mkdir -p "$EXT4_MNT/ptsrc"
PT_MNT=$RUN/mnt/passthrough
start_fuse passthrough_ll "$PT_MNT" "$RUN/passthrough_ll.log" \
  "$PT_BIN" -f -o source="$EXT4_MNT/ptsrc" "$PT_MNT"
run_workloads passthrough_ll "$PT_MNT/work"
stop_fuse "$PT_MNT"
((STOP_RC == 0)) || { FAILED=1; warn "passthrough_ll exited with status $STOP_RC after unmount"; }
teardown_ext4

# 3. AegisFS (optional)
if [[ -n $AEGISFS_BIN ]]; then
  AEGIS_IMG=$RUN/aegisfs.img
  AEGIS_MNT=$RUN/mnt/aegisfs
  aegisfs mkfs "$AEGIS_IMG" >&2 || die "AegisFS mkfs failed: $AEGISFS_BIN mkfs --size $SIZE $AEGIS_IMG"
  start_fuse AegisFS "$AEGIS_MNT" "$RUN/aegisfs.log" aegisfs mount "$AEGIS_IMG" "$AEGIS_MNT"
  run_workloads aegisfs "$AEGIS_MNT/work"
  stop_fuse "$AEGIS_MNT"
  ((STOP_RC == 0)) || { FAILED=1; warn "AegisFS exited with status $STOP_RC after unmount; its log:
$(tail -n 40 "$RUN/aegisfs.log" | sed 's/^/    /')"; }
  if aegisfs fsck "$AEGIS_IMG" >&2; then log "AegisFS fsck after the run: clean"
  else FAILED=1; warn "AegisFS fsck after the run did not report clean (see above)"; fi
  rm -f "$AEGIS_IMG"
else
  log "AEGISFS_BIN not set: AegisFS column skipped"
fi

# ---- report -----------------------------------------------------------------------
write_meta
REPORTED=1

echo
if [[ -n $OUT ]]; then
  "$PYTHON" "$HERE/report.py" "$RES" "$RUN/meta.json" --out "$OUT"
else
  "$PYTHON" "$HERE/report.py" "$RES" "$RUN/meta.json"
fi
echo
echo "load average at start: $LOAD_START, at end: $LOAD_END ($(nproc) CPUs)"
((FAILED == 0)) || die "some workloads failed or a daemon exited badly (see the warnings above); their cells read FAIL"
