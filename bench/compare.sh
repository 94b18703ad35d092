#!/usr/bin/env bash
# Side-by-side file system benchmark: ext4 on a loop image, libfuse's
# passthrough_ll over that ext4, and (when AEGISFS_BIN is set) AegisFS.
# Same workloads on each; a Markdown table at the end. See bench/README.md.
# Cold-cache data rows (sequential and random read) drop the kernel's
# caches and also restart the AegisFS daemon, whose own caches
# drop_caches does not reach.
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
#   RANDWRITE_SIZE file for the 4 KiB random writes [256M]
#   RANDWRITE_SECS duration of each random write test [10]
#   RENAME_FILES   files renamed (same batches as META_BATCH) [20000]
#   RESTAT_FILES   files stat'ed again with warm caches [10000], RESTAT_PASSES times [3]
#   REALTREE_FILES regular files in the real source tarball, at least [6000]
#   PAR_PROCS      processes of the concurrent metadata run [4]
#   PAR_FILES      files of that run in all (split over the processes) [10000]
#   AEGISFS_OPTS   extra -o options for every AegisFS mount [none]
#   PT_OPTS        extra -o options for passthrough_ll, e.g. xattr: without
#                  it passthrough_ll answers getxattr with ENOSYS, so the
#                  kernel stops asking it security.capability before each
#                  write, a round trip AegisFS (with xattrs) pays [none]
#   AEGISFS_VARIANTS  ';'-separated AegisFS configurations, one column each:
#                  words VAR=VAL (upper case) are environment for the daemon,
#                  other words -o options; '' or 'default' = as is [one: default]
#   TARGETS        which of ext4 passthrough_ll aegisfs to run [all three]
#   WORKLOADS      which steps, by name (see run_workloads) [all]
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
RANDWRITE_SIZE=${RANDWRITE_SIZE:-256M}
RANDWRITE_SECS=${RANDWRITE_SECS:-10}
RENAME_FILES=${RENAME_FILES:-20000}
RESTAT_FILES=${RESTAT_FILES:-10000}
RESTAT_PASSES=${RESTAT_PASSES:-3}
REALTREE_FILES=${REALTREE_FILES:-6000}
PAR_PROCS=${PAR_PROCS:-4}
PAR_FILES=${PAR_FILES:-10000}
AEGISFS_OPTS=${AEGISFS_OPTS:-}
AEGISFS_VARIANTS=${AEGISFS_VARIANTS:-default}
TARGETS=${TARGETS:-ext4 passthrough_ll aegisfs}
ALL_WORKLOADS="seq_write seq_read warm_read rand_read rand_write rand_write_fsync meta restat rename meta_par tar realtree"
WORKLOADS=${WORKLOADS:-$ALL_WORKLOADS}
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
#   aegisfs mount IMG DIR [OPTS]  mount in the foreground until unmounted
#                           (exec'd, so when started with & the PID is the
#                           daemon's); OPTS, if any, go to -o
#   aegisfs fsck IMG        check the image after unmount (exit 0 = clean)
aegisfs() {
  case $1 in
    mkfs)  "$AEGISFS_BIN" mkfs --size "$SIZE" "$2" ;;
    mount) if [[ -n ${4:-} ]]; then exec "$AEGISFS_BIN" mount --foreground -o "$4" "$2" "$3"
           else exec "$AEGISFS_BIN" mount --foreground "$2" "$3"; fi ;;
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
((META_BATCH > 0 || held >= RENAME_FILES)) || held=$RENAME_FILES
((held >= TREE_FILES + TREE_DIRS)) || held=$((TREE_FILES + TREE_DIRS))
((held >= PAR_FILES + PAR_PROCS)) || held=$((PAR_FILES + PAR_PROCS))
((held >= RESTAT_FILES)) || held=$RESTAT_FILES
# the real tree: about 1 directory per 5 files
((held >= REALTREE_FILES * 13 / 10)) || held=$((REALTREE_FILES * 13 / 10))
(($(ulimit -Sn) >= held + 1000)) \
  || die "open-file limit $(ulimit -Sn) is too low: passthrough_ll needs one descriptor per cached inode (META_BATCH=$META_BATCH, TREE_FILES=$TREE_FILES, PAR_FILES=$PAR_FILES, REALTREE_FILES=$REALTREE_FILES); lower them or raise ulimit -n"
for w in $WORKLOADS; do
  [[ " $ALL_WORKLOADS " == *" $w "* ]] || die "WORKLOADS: unknown step '$w' (known: $ALL_WORKLOADS)"
done
for t in $TARGETS; do
  [[ $t == ext4 || $t == passthrough_ll || $t == aegisfs ]] || die "TARGETS: unknown target '$t' (ext4 passthrough_ll aegisfs)"
done

drop_caches() {
  sync
  echo 3 > /proc/sys/vm/drop_caches
}
drop_caches 2>/dev/null || die "cannot write /proc/sys/vm/drop_caches (needed for cold-cache numbers)"

mkdir -p "$BENCH_DIR"
BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
fio_bytes=$(numfmt --from=iec "$FIO_SIZE")
avail=$(df --output=avail -B1 "$BENCH_DIR" | tail -n 1 | tr -d ' ')
need=$((fio_bytes + $(numfmt --from=iec "$RANDWRITE_SIZE") + 1536 * 1024 * 1024))
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
  # AegisFS as root mounts its image as fuseblk through a loop device that
  # detaches itself (autoclear); one left behind by a killed daemon goes here.
  local dev
  for dev in $(losetup -j "$RUN/aegisfs.img" 2>/dev/null | cut -d: -f1); do losetup -d "$dev" || true; done
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
  [[ $1 == aegis_mount ]] && shown="${2:+env $2 }$AEGISFS_BIN mount --foreground ${5:+-o $5 }$3 $4"
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
    TREE_FILES=$TREE_FILES REALTREE_INFO=${REALTREE_INFO:-null} RANDWRITE_SIZE=$RANDWRITE_SIZE \
    RANDWRITE_SECS=$RANDWRITE_SECS RENAME_FILES=$RENAME_FILES RESTAT_FILES=$RESTAT_FILES RESTAT_PASSES=$RESTAT_PASSES PAR_PROCS=$PAR_PROCS PAR_FILES=$PAR_FILES \
    AEGISFS_OPTS=$AEGISFS_OPTS AEGISFS_VARIANTS=$AEGISFS_VARIANTS TARGETS=$TARGETS WORKLOADS=$WORKLOADS \
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
    "realtree": json.loads(e["REALTREE_INFO"]),
    "realtree_files": (json.loads(e["REALTREE_INFO"]) or {}).get("files"),
    "randwrite_size": e["RANDWRITE_SIZE"], "randwrite_secs": int(e["RANDWRITE_SECS"]),
    "rename_files": int(e["RENAME_FILES"]), "par_procs": int(e["PAR_PROCS"]),
    "restat_files": int(e["RESTAT_FILES"]), "restat_passes": int(e["RESTAT_PASSES"]),
    "par_files": int(e["PAR_FILES"]) // int(e["PAR_PROCS"]) * int(e["PAR_PROCS"]),
    "aegisfs_opts": e["AEGISFS_OPTS"] or None, "aegisfs_variants": e["AEGISFS_VARIANTS"],
    "targets": e["TARGETS"].split(), "workloads": e["WORKLOADS"].split(),
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
  local out=$RUN/${t//[^A-Za-z0-9._=-]/_}-$name.json
  # FIO_FILE / FIO_FILE_SIZE: another file than the 1 GiB one (the random writes)
  timeout -k 30 "$STEP_TIMEOUT" fio --name="$name" --filename="$d/${FIO_FILE:-fio.dat}" --size="${FIO_FILE_SIZE:-$FIO_SIZE}" \
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

w_warm_read() {  # the same file again, its pages left in the cache: read once untimed, then timed
  local out v
  cat "$2/fio.dat" > /dev/null
  out=$(run_fio "$1" "$2" warmread --rw=read --bs=1M)
  v=$(json_get "$out" 'round(j["jobs"][0]["read"]["bw_bytes"] / 1048576, 2)')
  record "$1" warm_read_mib_s "$v"; log "$1: warm re-read $v MiB/s"
}

w_rand_read() {
  local out v
  drop_caches
  out=$(run_fio "$1" "$2" randread --rw=randread --bs=4k --runtime="${RANDREAD_SECS}s" --time_based)
  v=$(json_get "$out" 'round(j["jobs"][0]["read"]["iops"], 1)')
  record "$1" rand_read_iops "$v"; log "$1: rand read 4K $v IOPS"
}

randw_layout() {  # the random-write file, written once sequentially and synced (untimed)
  [[ -f $2/randw.dat ]] && return 0
  FIO_FILE=randw.dat FIO_FILE_SIZE=$RANDWRITE_SIZE run_fio "$1" "$2" randwlayout --rw=write --bs=1M --end_fsync=1 > /dev/null
}

w_rand_write() {  # buffered 4 KiB random overwrites of an existing file, IOPS while writing
  local out v
  randw_layout "$1" "$2"
  drop_caches
  out=$(FIO_FILE=randw.dat FIO_FILE_SIZE=$RANDWRITE_SIZE run_fio "$1" "$2" randwrite \
    --rw=randwrite --bs=4k --runtime="${RANDWRITE_SECS}s" --time_based)
  v=$(json_get "$out" 'round(j["jobs"][0]["write"]["iops"], 1)')
  record "$1" rand_write_iops "$v"; log "$1: rand write 4K $v IOPS"
}

w_rand_write_fsync() {  # the same with an fsync after every write
  local out v
  randw_layout "$1" "$2"
  drop_caches
  out=$(FIO_FILE=randw.dat FIO_FILE_SIZE=$RANDWRITE_SIZE run_fio "$1" "$2" randwritefsync \
    --rw=randwrite --bs=4k --fsync=1 --runtime="${RANDWRITE_SECS}s" --time_based)
  v=$(json_get "$out" 'round(j["jobs"][0]["write"]["iops"], 1)')
  record "$1" rand_write_fsync_iops "$v"; log "$1: rand write 4K + fsync $v IOPS"
  rm -f "$2/randw.dat"
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

w_rename() {  # rename of RENAME_FILES files in one directory (create and unlink untimed)
  local out r
  drop_caches
  out=$(timeout -k 30 "$STEP_TIMEOUT" "$PYTHON" "$HERE/metaops.py" "$2/ren" --files "$RENAME_FILES" \
    --batch "$META_BATCH" --drop-caches --phases rename)
  r=$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["rename_ops"], 1))')
  record "$1" rename_ops_s "$r"; log "$1: rename $r/s"
}

w_restat() {  # warm stats: RESTAT_FILES files, RESTAT_PASSES passes after an untimed one
  local out r
  drop_caches
  out=$(timeout -k 30 "$STEP_TIMEOUT" "$PYTHON" "$HERE/metaops.py" "$2/restat" --files "$RESTAT_FILES" \
    --batch 0 --phases restat --passes "$RESTAT_PASSES")
  r=$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["restat_ops"], 1))')
  record "$1" restat_ops_s "$r"; log "$1: warm stat $r/s"
}

w_meta_par() {  # create/stat/unlink from PAR_PROCS processes at once, one directory each
  local out c s u
  drop_caches
  out=$(timeout -k 30 "$STEP_TIMEOUT" "$PYTHON" "$HERE/metapar.py" "$2/par" --procs "$PAR_PROCS" \
    --files "$PAR_FILES" --drop-caches)
  c=$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["create_ops"], 1))')
  s=$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["stat_ops"], 1))')
  u=$(printf '%s' "$out" | "$PYTHON" -c 'import json,sys; print(round(json.load(sys.stdin)["unlink_ops"], 1))')
  record "$1" par_create_ops_s "$c"; record "$1" par_stat_ops_s "$s"; record "$1" par_unlink_ops_s "$u"
  log "$1: $PAR_PROCS processes: create $c/s, stat $s/s, unlink $u/s ($out)"
}

extract() {  # extract TARGET DIR TARBALL NFILES KEY: timed tar -xf + sync, then checked
  local t=$1 d=$2/tree ball=$3 nfiles=$4 key=$5 t0 t1 secs fps n
  rm -rf "$d"; mkdir -p "$d"
  drop_caches
  cat "$ball" > /dev/null   # the source is read from memory; only the target's writes count
  t0=$(date +%s%N)
  timeout -k 30 "$STEP_TIMEOUT" tar -xf "$ball" -C "$d"
  sync
  t1=$(date +%s%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
  fps=$(awk -v n="$nfiles" -v s="$secs" 'BEGIN { printf "%.1f", n / s }')
  record "$t" "${key}_s" "$secs"; record "$t" "${key}_files_s" "$fps"
  log "$t: tar -xf $(basename "$ball") + sync ${secs}s, $fps files/s"
  # Untimed correctness check: every file present with the archive's content, mode and mtime.
  n=$(find "$d" -type f | wc -l)
  [[ $n -eq $nfiles ]] || { echo "$t: extracted $n regular files, expected $nfiles" >&2; return 1; }
  tar -df "$ball" -C "$d" >&2 || { echo "$t: extracted tree differs from the archive (tar -d)" >&2; return 1; }
  rm -rf "$d"
}

w_tar() { extract "$1" "$2" "$TARBALL" "$TREE_FILES" tar_extract; }

w_realtree() { extract "$1" "$2" "$REAL_TARBALL" "$REALTREE_NFILES" realtree_extract; }

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
  want() { [[ " $WORKLOADS " == *" $1 "* ]]; }
  want seq_write && run_step "$t" "$d" w_seq_write seq_write_mib_s
  # Restarts happen here, in the shell that owns the daemons: a step
  # runs in a subshell of its own.
  want seq_read && cold_caches "$t" && run_step "$t" "$d" w_seq_read seq_read_mib_s
  want warm_read && run_step "$t" "$d" w_warm_read warm_read_mib_s
  want rand_read && cold_caches "$t" && run_step "$t" "$d" w_rand_read rand_read_iops
  want rand_write && run_step "$t" "$d" w_rand_write rand_write_iops
  want rand_write_fsync && run_step "$t" "$d" w_rand_write_fsync rand_write_fsync_iops
  want meta && run_step "$t" "$d" w_meta create_ops_s stat_ops_s unlink_ops_s
  want restat && run_step "$t" "$d" w_restat restat_ops_s
  want rename && run_step "$t" "$d" w_rename rename_ops_s
  want meta_par && run_step "$t" "$d" w_meta_par par_create_ops_s par_stat_ops_s par_unlink_ops_s
  want tar && run_step "$t" "$d" w_tar tar_extract_s tar_extract_files_s
  want realtree && run_step "$t" "$d" w_realtree realtree_extract_s realtree_extract_files_s
  rm -rf "$d" || true
}

# ---- inputs ----------------------------------------------------------------------
log "building the tarball ($TREE_FILES files, $TREE_DIRS dirs, seeded)"
TARBALL=$RUN/srctree.tar
TREE_INFO=$("$PYTHON" "$HERE/mktree.py" "$TARBALL" --files "$TREE_FILES" --dirs "$TREE_DIRS")
log "tarball: $TREE_INFO"

# The real source tree: built once, kept in BENCH_DIR (outside the run
# directory) so that later runs extract the very same bytes.
# The crates are those this repository's Cargo.lock pins for the host
# (cargo downloads any that are missing), so the name carries the lockfile's
# hash and the Python version: a new lockfile or Python makes a new tarball.
REPO=$(cd "$HERE/.." && pwd)
command -v cargo >/dev/null || die "cargo not found: the real source tree takes its crates from Cargo.lock through cargo metadata"
real_key=$(cat "$REPO/Cargo.lock" <("$PYTHON" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-12)
REAL_TARBALL=$BENCH_DIR/realtree-$REALTREE_FILES-$real_key.tar
if [[ -s $REAL_TARBALL && -s $REAL_TARBALL.json ]]; then
  log "real source tarball: reusing $REAL_TARBALL"
else
  log "building the real source tarball (Python standard library + crates of Cargo.lock, >= $REALTREE_FILES files)"
  "$PYTHON" "$HERE/mkrealtree.py" "$REAL_TARBALL" --files "$REALTREE_FILES" --manifest "$REPO/Cargo.toml" \
    > "$REAL_TARBALL.json.part" \
    || die "mkrealtree.py failed (needs /usr/lib/python3.* and cargo metadata over $REPO/Cargo.toml; see above)"
  mv "$REAL_TARBALL.json.part" "$REAL_TARBALL.json"
fi
REALTREE_INFO=$(cat "$REAL_TARBALL.json")
REALTREE_NFILES=$(json_get "$REAL_TARBALL.json" 'j["files"]')
log "real tarball: $(json_get "$REAL_TARBALL.json" '{k: v for k, v in j.items() if k != "crate_names"}')"

log "building passthrough_ll from $EXAMPLES"
mkdir -p "$RUN/build"
cp "$EXAMPLES"/passthrough_ll.c "$EXAMPLES"/*.h "$RUN/build/"
# shellcheck disable=SC2046
gcc -O2 -Wall "$RUN/build/passthrough_ll.c" $(pkg-config fuse3 --cflags --libs) -o "$RUN/build/passthrough_ll" \
  || die "building passthrough_ll failed"
PT_BIN=$RUN/build/passthrough_ll

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# A FUSE daemon's peak resident set (VmHWM, MiB) over its whole mount; read
# just before the unmount, recorded as the target's peak_rss_mib.
declare -A PEAK_KB  # by mount point: the highest VmHWM of daemons restarted there

note_peak_rss() {  # note_peak_rss MNT: keep the daemon's VmHWM before it is restarted
  local pid=${FUSE_PID[$1]:-} kb
  [[ -n $pid ]] || return 0
  kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 0
  [[ -n $kb ]] && ((kb > ${PEAK_KB[$1]:-0})) && PEAK_KB[$1]=$kb
  return 0
}

record_peak_rss() {  # record_peak_rss TARGET MNT
  local pid=${FUSE_PID[$2]:-} kb
  [[ -n $pid ]] || return 0
  kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || kb=
  [[ -n $kb ]] && ((${PEAK_KB[$2]:-0} > kb)) && kb=${PEAK_KB[$2]}
  if [[ -n $kb ]]; then
    record "$1" peak_rss_mib "$(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }')"
    log "$1: daemon peak RSS (VmHWM) $((kb / 1024)) MiB"
  else
    record "$1" peak_rss_mib FAIL; warn "$1: could not read VmHWM of daemon $pid"
  fi
}

# set_read_ahead MNT ENV: with BDI_READ_AHEAD_KB=N among a variant's words,
# the FUSE mount's readahead (its backing device info: MAJ:MIN of the mount,
# "-fuseblk" added for fuseblk) is set to N KiB before the workloads; the
# kernel offers FUSE servers at most 128 KiB at INIT, so reads come in
# requests no larger than that unless this is raised.
set_read_ahead() {
  local kv kb="" dev bdi
  for kv in $2; do [[ $kv == BDI_READ_AHEAD_KB=* ]] && kb=${kv#*=}; done
  [[ -n $kb ]] || return 0
  dev=$(mountpoint -d "$1")
  bdi=/sys/class/bdi/$dev-fuseblk
  [[ -d $bdi ]] || bdi=/sys/class/bdi/$dev
  echo "$kb" > "$bdi/read_ahead_kb" || die "cannot set $bdi/read_ahead_kb"
  log "readahead of $1 ($bdi): $(cat "$bdi/read_ahead_kb") KiB"
}

# aegis_mount ENV IMG DIR OPTS: the daemon with ENV (VAR=VAL words) exported
aegis_mount() {
  local kv
  for kv in $1; do export "${kv?}"; done
  aegisfs mount "$2" "$3" "$4"
}

# cold_caches TARGET: before a cold-cache data row (called by run_workloads,
# not inside a step). drop_caches empties the
# kernel's caches, but an AegisFS daemon keeps its own (decoded data and
# tree nodes), so its mount is also stopped and started again (a clean
# unmount: everything is committed first); its peak RSS so far is kept.
AEGIS_RESTARTS=0
cold_caches() {
  if [[ $1 == aegisfs* && -n ${AEGIS_MNT:-} ]] && mountpoint -q "$AEGIS_MNT"; then
    note_peak_rss "$AEGIS_MNT"
    stop_fuse "$AEGIS_MNT"
    ((STOP_RC == 0)) || { FAILED=1; warn "AegisFS $key exited with status $STOP_RC at a cold-cache restart"; }
    AEGIS_RESTARTS=$((AEGIS_RESTARTS + 1))
    start_fuse "AegisFS $key" "$AEGIS_MNT" "$RUN/${key//[^A-Za-z0-9._=-]/_}.restart$AEGIS_RESTARTS.log" \
      aegis_mount "$v_env" "$AEGIS_IMG" "$AEGIS_MNT" "$v_opts"
    set_read_ahead "$AEGIS_MNT" "$v_env"
  fi
  drop_caches
}

want_target() { [[ " $TARGETS " == *" $1 "* ]]; }

# ---- targets ---------------------------------------------------------------------
# 1. ext4 on a loop image
if want_target ext4; then
  setup_ext4
  run_workloads ext4 "$EXT4_MNT/work"
  teardown_ext4
fi

# 2. passthrough_ll over a fresh ext4 (default cache mode: cache=auto, timeout 1 s)
if want_target passthrough_ll; then
  setup_ext4
  mkdir -p "$EXT4_MNT/ptsrc"
  PT_MNT=$RUN/mnt/passthrough
  start_fuse passthrough_ll "$PT_MNT" "$RUN/passthrough_ll.log" \
    "$PT_BIN" -f -o source="$EXT4_MNT/ptsrc"${PT_OPTS:+,$PT_OPTS} "$PT_MNT"
  run_workloads passthrough_ll "$PT_MNT/work"
  record_peak_rss passthrough_ll "$PT_MNT"
  stop_fuse "$PT_MNT"
  ((STOP_RC == 0)) || { FAILED=1; warn "passthrough_ll exited with status $STOP_RC after unmount"; }
  teardown_ext4
fi

# 3. AegisFS (optional), once per configuration in AEGISFS_VARIANTS
if [[ -n $AEGISFS_BIN ]] && want_target aegisfs; then
  IFS=';' read -r -a VARIANTS <<< "$AEGISFS_VARIANTS"
  ((${#VARIANTS[@]})) || VARIANTS=(default)
  AEGIS_IMG=$RUN/aegisfs.img
  AEGIS_MNT=$RUN/mnt/aegisfs
  for v in "${VARIANTS[@]}"; do
    v_env="" v_opts=$AEGISFS_OPTS
    for w in $v; do
      [[ $w == default ]] && continue
      if [[ $w =~ ^[A-Z_][A-Z0-9_]*= ]]; then v_env+="${v_env:+ }$w"
      else v_opts+="${v_opts:+,}$w"; fi
    done
    # The target key: plain "aegisfs" for the one default configuration.
    if ((${#VARIANTS[@]} == 1)) && [[ -z $v_env && -z $v_opts ]]; then key=aegisfs
    else key="aegisfs[$(echo "$v_env${v_env:+ }$v_opts" | sed 's/^ *//;s/ *$//')]"; [[ $key == 'aegisfs[]' ]] && key='aegisfs[default]'; fi
    rm -f "$AEGIS_IMG"
    aegisfs mkfs "$AEGIS_IMG" >&2 || die "AegisFS mkfs failed: $AEGISFS_BIN mkfs --size $SIZE $AEGIS_IMG"
    start_fuse "AegisFS $key" "$AEGIS_MNT" "$RUN/${key//[^A-Za-z0-9._=-]/_}.log" aegis_mount "$v_env" "$AEGIS_IMG" "$AEGIS_MNT" "$v_opts"
    set_read_ahead "$AEGIS_MNT" "$v_env"
    run_workloads "$key" "$AEGIS_MNT/work"
    record_peak_rss "$key" "$AEGIS_MNT"
    stop_fuse "$AEGIS_MNT"
    ((STOP_RC == 0)) || { FAILED=1; warn "AegisFS $key exited with status $STOP_RC after unmount; its log:
$(tail -n 40 "$RUN/${key//[^A-Za-z0-9._=-]/_}.log" | sed 's/^/    /')"; }
    if aegisfs fsck "$AEGIS_IMG" >&2; then log "AegisFS $key fsck after the run: clean"
    else FAILED=1; warn "AegisFS $key fsck after the run did not report clean (see above)"; fi
    rm -f "$AEGIS_IMG"
  done
else
  log "AEGISFS_BIN not set or aegisfs not in TARGETS: AegisFS column skipped"
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
