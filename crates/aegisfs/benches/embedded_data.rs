//! Data speed of the embedded VFS over a disk image: sequential reads of
//! a file not in the data cache (read-ahead on and off), of a file in it,
//! and random 4 KiB reads that hit the cache (1, 2 and 4 threads) or find
//! it off. The MelloOS targets are 2.5 GB/s cached sequential and 300,000
//! cached random 4 KiB reads per second on one thread.
//!
//! `cargo bench -p aegisfs --bench embedded_data` (256 MiB file; set
//! BENCH_FILE_MIB to change it, BENCH_DIR for the scratch directory).
//! Prints a Markdown table. "Cold" reopens the pool, so the engine's
//! cache is empty; the kernel's page cache still holds the image unless
//! the machine drops it (root only: it is dropped when it can be).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_block::{DeviceRef, FileDevice, OpenMode};
use aegis_diskfs::{DiskFs, MountOptions};
use aegis_vfs::{Creds, FileSystem, Process, Vfs};

const RANDOM_SECS: u64 = 2;

fn file_bytes() -> u64 {
    std::env::var("BENCH_FILE_MIB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(256)
        << 20
}

fn drop_caches() {
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

fn open(img: &Path, cache_bytes: u64, read_ahead: u32) -> (Arc<DiskFs>, Process) {
    let dev = FileDevice::open(img, OpenMode::ReadWrite).expect("open image");
    let mut opts = MountOptions::default();
    opts.store.data_cache_bytes = cache_bytes;
    opts.store.read_ahead_records = read_ahead;
    let fs = aegis_diskfs::open(vec![Arc::new(dev) as DeviceRef], &opts).expect("mount");
    let vfs = Vfs::new(fs.clone() as Arc<dyn FileSystem>);
    (fs, vfs.process(Creds::root()))
}

fn make_image(scratch: &Path) -> PathBuf {
    let img = scratch.join("bench-data.img");
    let fs = aegis_testkit::image_fs(&img, file_bytes() * 2 + (256 << 20));
    let p = Vfs::new(fs.clone() as Arc<dyn FileSystem>).process(Creds::root());
    let fd = p
        .open(b"/f", libc::O_CREAT | libc::O_WRONLY, 0o644)
        .unwrap();
    let chunk = aegis_testkit::noise(1 << 20, 7);
    for _ in 0..file_bytes() >> 20 {
        p.write(fd, &chunk).unwrap();
    }
    p.close(fd).unwrap();
    fs.unmount().expect("unmount");
    img
}

/// Read the whole file in `bs`-byte reads; bytes per second.
fn seq(p: &Process, bs: usize) -> f64 {
    let fd = p.open(b"/f", libc::O_RDONLY, 0).unwrap();
    let t = Instant::now();
    let mut n = 0u64;
    loop {
        let b = p.read(fd, bs).unwrap();
        if b.is_empty() {
            break;
        }
        n += b.len() as u64;
    }
    let d = t.elapsed();
    p.close(fd).unwrap();
    assert_eq!(n, file_bytes(), "short read");
    n as f64 / d.as_secs_f64()
}

/// Random 4 KiB preads for RANDOM_SECS on `threads` threads; reads per second.
fn random(p: &Process, threads: usize) -> f64 {
    let pages = file_bytes() / 4096;
    let deadline = Duration::from_secs(RANDOM_SECS);
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || {
                    let fd = p.open(b"/f", libc::O_RDONLY, 0).unwrap();
                    let mut x = 0x2545_f491_4f6c_dd1du64 + i as u64;
                    let (t, mut n) = (Instant::now(), 0u64);
                    while t.elapsed() < deadline {
                        for _ in 0..256 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let b = p.pread(fd, 4096, (x % pages) * 4096).unwrap();
                            assert_eq!(b.len(), 4096);
                            n += 1;
                        }
                    }
                    p.close(fd).unwrap();
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / RANDOM_SECS as f64
}

/// This process's peak resident size (VmHWM), bytes.
fn peak_rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn gbs(v: f64) -> String {
    format!("{:.2} GB/s", v / 1e9)
}

fn main() {
    let scratch = std::env::var("BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    let img = make_image(&scratch);
    let cache = file_bytes() * 2;
    let mut rows: Vec<(String, String)> = Vec::new();
    for ra in [0u32, 32] {
        drop_caches();
        let (fs, p) = open(&img, cache, ra);
        rows.push((
            format!("sequential 1 MiB, cold, read-ahead {ra}"),
            gbs(seq(&p, 1 << 20)),
        ));
        if ra == 32 {
            rows.push(("sequential 1 MiB, cached".into(), gbs(seq(&p, 1 << 20))));
            rows.push(("sequential 128 KiB, cached".into(), gbs(seq(&p, 128 << 10))));
            for t in [1, 2, 4] {
                let v = random(&p, t);
                rows.push((
                    format!("random 4 KiB, cached, {t} thread(s)"),
                    format!("{v:.0}/s"),
                ));
            }
            let st = fs.store().data_cache_stats();
            rows.push((
                "cache hits / misses".into(),
                format!("{} / {}", st.hits, st.misses),
            ));
        }
        fs.unmount().unwrap();
    }
    let (fs, p) = open(&img, 0, 0);
    let v = random(&p, 1);
    rows.push((
        "random 4 KiB, cache off, 1 thread".into(),
        format!("{v:.0}/s"),
    ));
    fs.unmount().unwrap();
    let _ = std::fs::remove_file(&img);
    let limits = cache + aegis_fs::StoreOptions::default().dirty_limit;
    rows.push((
        "peak RSS (cache + dirty limit)".into(),
        format!("{} MiB ({} MiB)", peak_rss_bytes() >> 20, limits >> 20),
    ));
    println!("| embedded, {} MiB file | AegisFS |", file_bytes() >> 20);
    println!("|---|---:|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
}
