//! The cost of quotas on the write path, without a disk in the way: the
//! same workloads on an in-memory pool without quotas and with a user
//! quota far above what they write (usage kept, every change checked),
//! rounds alternating, the best round of each (the least disturbed by
//! the rest of the machine) and the ratio. Workloads: 4 KiB writes at
//! random offsets of a 64 MiB file (one inode write each), 128 KiB
//! sequential writes, and creates of empty files (two inode writes
//! each), all as that user, with commits as the dirty limit asks.
//!
//! `cargo bench -p aegisfs --bench embedded_quota` (ROUNDS, default 5;
//! QUOTA_ONLY=on|off: one mode once, to count its instructions).
//! Prints a Markdown table.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Instant;

use aegis_diskfs::DiskFs;
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::posix::quota::QuotaId;
use aegis_testkit::Kit;
use aegis_vfs::{FileSystem, Request, SetAttr, ROOT_INO};

const USER: u32 = 1000;
const FILE_BYTES: u64 = 64 << 20;

fn user() -> Request {
    Request {
        uid: USER,
        gid: USER,
        ..Default::default()
    }
}

fn fresh(quota: bool) -> Arc<DiskFs> {
    let kit = Kit::default().size(1 << 30);
    let fs = kit.mount(kit.fresh() as aegis_block::DeviceRef).unwrap();
    let open = SetAttr {
        mode: Some(0o1777),
        ..Default::default()
    };
    fs.setattr(&Request::root(), ROOT_INO, &open, None).unwrap();
    if quota {
        fs.store()
            .set_quota(ROOT_DATASET, QuotaId::user(USER), 1 << 40, 0)
            .unwrap();
    }
    fs
}

/// Operations per second of `n` writes of `bs` bytes, at random offsets
/// or in order.
fn writes(quota: bool, bs: usize, n: u64, random: bool) -> f64 {
    let fs = fresh(quota);
    let (a, fh) = fs
        .create(&user(), ROOT_INO, OsStr::new("f"), 0o644, libc::O_RDWR)
        .unwrap();
    let data = aegis_testkit::noise(bs, 3);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let slots = FILE_BYTES / bs as u64;
    let t = Instant::now();
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = if random { x % slots } else { i % slots };
        fs.write(a.ino, fh, slot * bs as u64, &data).unwrap();
    }
    let ops = n as f64 / t.elapsed().as_secs_f64();
    fs.release(a.ino, fh).unwrap();
    fs.unmount().unwrap();
    ops
}

/// Creates of empty files per second.
fn creates(quota: bool, n: u64) -> f64 {
    let fs = fresh(quota);
    let t = Instant::now();
    for i in 0..n {
        let name = format!("f{i}");
        let (a, fh) = fs
            .create(&user(), ROOT_INO, OsStr::new(&name), 0o644, libc::O_RDWR)
            .unwrap();
        fs.release(a.ino, fh).unwrap();
    }
    let ops = n as f64 / t.elapsed().as_secs_f64();
    fs.unmount().unwrap();
    ops
}

fn best(v: Vec<f64>) -> f64 {
    v.into_iter().fold(0.0, f64::max)
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    type Work = (&'static str, fn(bool) -> f64);
    let work: [Work; 3] = [
        ("4 KiB random writes/s", |q| writes(q, 4096, 200_000, true)),
        ("128 KiB sequential writes/s", |q| {
            writes(q, 128 << 10, 8_000, false)
        }),
        ("creates/s", |q| creates(q, 50_000)),
    ];
    // QUOTA_ONLY=on|off runs each workload once in that mode, for
    // counting instructions (`perf stat -e instructions:u`), which the
    // machine's noise does not move.
    if let Ok(mode) = std::env::var("QUOTA_ONLY") {
        for (name, f) in work {
            println!("{name}: {:.0}", f(mode == "on"));
        }
        return;
    }
    println!("| workload | no quota | quota | ratio |");
    println!("|---|---:|---:|---:|");
    for (name, f) in work {
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            off.push(f(false));
            on.push(f(true));
        }
        let (a, b) = (best(off), best(on));
        println!("| {name} | {a:.0} | {b:.0} | {:.3} |", b / a);
    }
}
