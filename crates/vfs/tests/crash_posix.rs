//! Crash consistency of the filesystem: POSIX workloads on a recording
//! device, with the patterns that found crash bugs in kernel filesystems
//! (rename after fsync, append + fsync + rename, a hardlink and an fsync of
//! one of its names, fsync of a directory after a create in it, overwrite
//! of a file by rename, truncate and punch-hole before an fsync).
//!
//! `fsync` writes the intent log (or commits a txg when the log has no
//! chain yet or cannot take it); either way the whole tree after each
//! fsync is what the test remembers, because every change before an fsync
//! is durable after it. Crash images are built from every flush point and
//! from random subsets and orders of the writes between two flushes. Each
//! must mount (log replayed, orphans freed), show exactly the tree of one
//! remembered fsync — the newest acknowledged one or a later one whose log
//! block or commit landed — and pass fsck, POSIX checks included.
//!
//! `AEGIS_CRASH_ROUNDS` and `AEGIS_CRASH_SUBSETS` scale it.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use aegis_block::{DeviceRef, MemDevice, RecordingDevice};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::posix::{format, FormatOptions};
use aegis_fs::{Store, StoreOptions};
use aegis_pool::{CreateOptions, OpenOptions};
use aegis_vfs::*;

mod common;
use common::dump;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

fn opts() -> StoreOptions {
    StoreOptions {
        sync_interval: Duration::from_secs(3600),
        ..Default::default()
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Recorded {
    rec: Arc<RecordingDevice>,
    /// Per fsync, in order: the op index after its last flush (from there
    /// on it is acknowledged) and the tree at that moment.
    points: Vec<(usize, Vec<String>)>,
    /// How many fsyncs were a log write and how many a commit.
    logged: usize,
    committed: usize,
}

fn lookup(fs: &DiskFs, path: &str) -> Option<Ino> {
    let mut ino = ROOT_INO;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        let a = fs.lookup(ino, OsStr::new(c)).ok()?;
        fs.forget(a.ino, 1);
        ino = a.ino;
    }
    Some(ino)
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Run the seeded workload, fsyncing (= committing) often, and remember
/// the tree after every commit.
fn record(seed: u64, rounds: usize) -> Recorded {
    let rec = Arc::new(RecordingDevice::new(MemDevice::new(48 << 20)));
    let store = Store::create(
        vec![rec.clone() as DeviceRef],
        &CreateOptions::default(),
        opts(),
    )
    .unwrap();
    format(
        &store,
        ROOT_DATASET,
        &FormatOptions {
            record_size: 16 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    let fs = DiskFs::open(store.clone(), DiskFsOptions::default()).unwrap();
    let mut points = Vec::new();
    let (mut logged, mut committed) = (0, 0);
    let txg = |s: &Store| s.pool().last_uberblock().unwrap().txg;
    points.push((rec.len(), dump(&*fs)));
    let mut rng = StdRng::seed_from_u64(seed);
    let req = Request::root();
    let names = ["a", "b", "c", "d/x", "d/y", "e/f/g", "e/h"];
    let mut fsync = |fs: &DiskFs, rng: &mut StdRng, path: &str| {
        let before = txg(&store);
        // fsync, fdatasync or fsyncdir: each is a commit today.
        if let Some(ino) = lookup(fs, path) {
            let a = fs.getattr(ino).unwrap();
            if a.kind == FileType::Directory {
                let fh = fs.opendir(ino, 0).unwrap();
                fs.fsyncdir(ino, fh, false).unwrap();
                fs.releasedir(ino, fh).unwrap();
            } else if a.kind == FileType::RegularFile {
                let fh = fs.open(ino, libc::O_RDONLY).unwrap();
                fs.fsync(ino, fh, rng.gen_bool(0.5)).unwrap();
                fs.release(ino, fh).unwrap();
            } else {
                fs.sync().unwrap();
            }
        } else {
            fs.sync().unwrap();
        }
        if txg(&store) == before {
            logged += 1;
        } else {
            committed += 1;
        }
        points.push((rec.len(), dump(fs)));
    };
    for d in ["d", "e", "e/f"] {
        let (p, n) = split(d);
        fs.mkdir(&req, lookup(&fs, p).unwrap(), OsStr::new(n), 0o755)
            .ok();
    }
    for _round in 0..rounds {
        let path = names[rng.gen_range(0..names.len())];
        let other = names[rng.gen_range(0..names.len())];
        let (p, n) = split(path);
        let (op, on) = split(other);
        let dir = lookup(&fs, p).unwrap();
        let odir = lookup(&fs, op).unwrap();
        let data: Vec<u8> = (0..rng.gen_range(0..60_000))
            .map(|i| (i as u8) ^ rng.gen::<u8>())
            .collect();
        match rng.gen_range(0..9) {
            // create + write + fsync, then rename over another name
            0 => {
                if let Ok((a, fh)) = fs.create(
                    &req,
                    dir,
                    OsStr::new(n),
                    0o644,
                    libc::O_RDWR | libc::O_TRUNC,
                ) {
                    fs.forget(a.ino, 1);
                    fs.write(a.ino, fh, 0, &data).unwrap();
                    fs.release(a.ino, fh).unwrap();
                    fsync(&fs, &mut rng, path);
                    let _ = fs.rename(dir, OsStr::new(n), odir, OsStr::new(on), 0);
                }
            }
            // append, fsync, rename
            1 => {
                if let Some(ino) = lookup(&fs, path) {
                    if let Ok(fh) = fs.open(ino, libc::O_WRONLY | libc::O_APPEND) {
                        fs.write(ino, fh, 0, &data[..data.len().min(5000)]).unwrap();
                        fs.release(ino, fh).unwrap();
                        fsync(&fs, &mut rng, path);
                        let _ = fs.rename(dir, OsStr::new(n), odir, OsStr::new(on), 0);
                    }
                }
            }
            // hardlink, fsync one of the names
            2 => {
                if let Some(ino) = lookup(&fs, path) {
                    if fs.link(ino, odir, OsStr::new(on)).is_ok() {
                        fs.forget(ino, 1);
                        let which = if rng.gen_bool(0.5) { path } else { other };
                        fsync(&fs, &mut rng, which);
                    }
                }
            }
            // create in a directory, fsync the directory
            3 => {
                if let Ok(a) = fs.mknod(&req, dir, OsStr::new(n), libc::S_IFREG | 0o600, 0) {
                    fs.forget(a.ino, 1);
                    fsync(&fs, &mut rng, p);
                }
            }
            // unlink, maybe while open
            4 => {
                let held = lookup(&fs, path)
                    .and_then(|i| fs.open(i, libc::O_RDONLY).ok().map(|fh| (i, fh)));
                let _ = fs.unlink(dir, OsStr::new(n));
                if rng.gen_bool(0.5) {
                    fsync(&fs, &mut rng, p);
                }
                if let Some((i, fh)) = held {
                    fs.release(i, fh).unwrap();
                }
            }
            // truncate or punch, then fsync
            5 => {
                if let Some(ino) = lookup(&fs, path) {
                    if let Ok(fh) = fs.open(ino, libc::O_RDWR) {
                        if rng.gen_bool(0.5) {
                            let set = SetAttr {
                                size: Some(rng.gen_range(0..80_000)),
                                ..Default::default()
                            };
                            let _ = fs.setattr(&req, ino, &set, Some(fh));
                        } else {
                            let _ = fs.fallocate(
                                ino,
                                fh,
                                rng.gen_range(0..40_000),
                                rng.gen_range(1..40_000),
                                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                            );
                        }
                        fs.release(ino, fh).unwrap();
                        fsync(&fs, &mut rng, path);
                    }
                }
            }
            // overwrite in place without fsync, xattr, symlink
            6 => {
                if let Some(ino) = lookup(&fs, path) {
                    if let Ok(fh) = fs.open(ino, libc::O_WRONLY) {
                        fs.write(
                            ino,
                            fh,
                            rng.gen_range(0..30_000),
                            &data[..data.len().min(20_000)],
                        )
                        .unwrap();
                        fs.release(ino, fh).unwrap();
                    }
                    let _ = fs.setxattr(ino, OsStr::new("user.v"), &data[..data.len().min(900)], 0);
                }
            }
            7 => {
                if let Ok(a) = fs.symlink(&req, dir, OsStr::new(n), OsStr::new(other)) {
                    fs.forget(a.ino, 1);
                }
            }
            // a directory moved, then the whole thing synced
            _ => {
                let _ = fs.rename(dir, OsStr::new(n), odir, OsStr::new(on), RENAME_EXCHANGE);
                fsync(&fs, &mut rng, "");
            }
        }
    }
    drop(fsync);
    // Work after the last fsync is never acknowledged.
    Recorded {
        rec,
        points,
        logged,
        committed,
    }
}

/// Mount the crash image and return its txg and tree; fsck it after.
fn recover(img: MemDevice) -> std::result::Result<(u64, Vec<String>), String> {
    let dev = Arc::new(img);
    let store = Store::open(
        vec![dev.clone() as DeviceRef],
        &OpenOptions::default(),
        opts(),
    )
    .map_err(|e| e.to_string())?;
    let t = store.pool().last_uberblock().unwrap().txg;
    let fs = DiskFs::open(
        store,
        DiskFsOptions {
            atime: AtimeMode::Noatime,
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let tree = dump(&*fs);
    fs.unmount().map_err(|e| e.to_string())?;
    let store = Store::open(vec![dev as DeviceRef], &OpenOptions::default(), opts())
        .map_err(|e| e.to_string())?;
    let r = aegis_fs::fsck::fsck(&store, false, &mut |_, _| {}).map_err(|e| e.to_string())?;
    if r.uncorrected() > 0 {
        return Err(format!("fsck: {:?}", r.errors));
    }
    Ok((t, tree))
}

#[test]
fn every_crash_state_mounts_to_an_acknowledged_or_newer_commit() {
    let rounds = env("AEGIS_CRASH_ROUNDS", 800);
    let subsets = env("AEGIS_CRASH_SUBSETS", 10);
    let mut states_checked = 0usize;
    let newer = std::cell::Cell::new(0usize);
    let refused = std::cell::Cell::new(0usize);
    for seed in 1u64..=10 {
        let h = record(seed, rounds);
        let ops = h.rec.ops();
        let flushes = h.rec.flush_points();
        let mut rng = StdRng::seed_from_u64(seed ^ 0xC4A5);
        let check = |prefix: usize, extra: Vec<usize>| {
            // The newest fsync acknowledged before the crash point.
            let acked = h.points.iter().rposition(|(i, _)| *i <= prefix);
            let img = h.rec.image_with(prefix, &extra);
            match (recover(img), acked) {
                (Ok((_, tree)), Some(a)) => {
                    let at = h.points[a..].iter().position(|(_, t)| *t == tree).map(|k| a + k);
                    let Some(k) = at else {
                        panic!("seed {seed}, prefix {prefix} + {extra:?}: the tree is not the one of fsync {a} or any later one:\n{tree:#?}\nwanted:\n{:#?}", h.points[a].1)
                    };
                    if k > a {
                        newer.set(newer.get() + 1);
                    }
                }
                // Before the first acknowledged commit (mkfs incomplete) a refusal is right.
                (Err(_), None) => refused.set(refused.get() + 1),
                (Ok(_), None) => {}
                (Err(e), Some(a)) => panic!("seed {seed}, prefix {prefix}: txg {a} was acknowledged but the image fails: {e}"),
            }
        };
        let mut prev = 0;
        for &f in &flushes {
            check(f + 1, Vec::new());
            states_checked += 1;
            // Writes between the previous flush and this one: subsets.
            let gap: Vec<usize> = (prev..f)
                .filter(|&i| !matches!(ops[i], aegis_block::RecordedOp::Flush))
                .collect();
            for _ in 0..subsets.min(gap.len().max(1)) {
                if gap.is_empty() {
                    break;
                }
                let mut pick: Vec<usize> =
                    gap.iter().copied().filter(|_| rng.gen_bool(0.5)).collect();
                pick.shuffle(&mut rng);
                check(prev, pick);
                states_checked += 1;
            }
            prev = f + 1;
        }
        eprintln!(
            "seed {seed}: {} fsyncs ({} in the log, {} commits), {} flushes",
            h.points.len() - 1,
            h.logged,
            h.committed,
            flushes.len()
        );
        assert!(
            h.points.len() > 20,
            "the workload fsynced too rarely to test anything"
        );
        assert!(h.logged > h.committed, "fsync should mostly write the log");
    }
    eprintln!(
        "{states_checked} crash states checked: {} showed an fsync newer than the last acknowledged one, {} (an interrupted mkfs) refused",
        newer.get(),
        refused.get()
    );
    assert!(states_checked >= 10_000 || std::env::var("AEGIS_CRASH_ROUNDS").is_ok());
    assert!(newer.get() > 0, "no crash image caught an fsync in flight");
}
