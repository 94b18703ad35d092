//! Memory stays bounded: a mount with a small data cache and dirty limit
//! (`cache_size=64M,dirty_max=64M`) writes, rewrites and reads back many
//! times both, and the daemon's peak resident size (`VmHWM`) stays within
//! the two limits plus a fixed overhead: the tree node cache (16,384
//! nodes of 4 KiB by default), the binary, the FUSE request buffers and
//! the read-ahead queue. The data read back is checked, and `finish` runs
//! fsck.

use super::*;

const MIB: u64 = 1 << 20;
const CACHE_BYTES: u64 = 64 * MIB;
const DIRTY_BYTES: u64 = 64 * MIB;
/// What the daemon holds beyond the two limits: the peak was 248-255
/// MiB in the first runs, so about 125 MiB (the node cache is up to 64 MiB
/// of it). The bound leaves some room, not room for anything that grows
/// with the data: the workload moves 12 times the cache.
const OVERHEAD_BYTES: u64 = 160 * MIB;
const FILE_BYTES: u64 = 768 * MIB;

/// The peak resident size of process `pid`, from /proc.
fn vm_hwm_bytes(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

/// One MiB of the file at `index`: incompressible, and different for
/// every MiB and every `round`, so nothing reads back by accident.
fn chunk(index: u64, round: u64) -> Vec<u8> {
    noise(MIB as usize, index * 131 + round)
}

#[test]
fn peak_memory_stays_within_the_cache_and_dirty_limits() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("2G");
    m.unmount();
    m.mount_with("allow_other,cache_size=64M,dirty_max=64M");
    let pid = m.daemon_pid().expect("mounted");
    let path = m.p("big");
    let mut f = File::create(&path).unwrap();
    for i in 0..FILE_BYTES / MIB {
        f.write_all(&chunk(i, 0)).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    // Small rewrites all over it: each dirties a whole record.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    for i in 0..4096u64 {
        let off = (i * 7919 % (FILE_BYTES / 4096)) * 4096;
        f.write_all_at(&i.to_le_bytes(), off).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    // Two sequential reads of the whole file: 12 times the cache.
    for _ in 0..2 {
        let mut r = File::open(&path).unwrap();
        let mut buf = vec![0u8; MIB as usize];
        for i in 0..FILE_BYTES / MIB {
            r.read_exact(&mut buf).unwrap();
            let mut want = chunk(i, 0);
            for j in 0..4096u64 {
                let off = (j * 7919 % (FILE_BYTES / 4096)) * 4096;
                if off / MIB == i {
                    let at = (off % MIB) as usize;
                    want[at..at + 8].copy_from_slice(&j.to_le_bytes());
                }
            }
            assert!(buf == want, "MiB {i} read back wrong");
        }
    }
    let hwm = vm_hwm_bytes(pid);
    let bound = CACHE_BYTES + DIRTY_BYTES + OVERHEAD_BYTES;
    eprintln!(
        "daemon peak RSS {} MiB, bound {} MiB",
        hwm / MIB,
        bound / MIB
    );
    assert!(
        hwm <= bound,
        "daemon peak RSS {} MiB over cache {} + dirty {} + overhead {} MiB",
        hwm / MIB,
        CACHE_BYTES / MIB,
        DIRTY_BYTES / MIB,
        OVERHEAD_BYTES / MIB
    );
    m.finish();
}
