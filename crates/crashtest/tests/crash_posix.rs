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

use aegis_crashtest::{fsync_path, lookup, CrashReport, Recorder};
use aegis_diskfs::DiskFs;
use aegis_vfs::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Run the seeded workload on a recorder, fsyncing often.
fn record(seed: u64, rounds: usize) -> Recorder {
    let mut r = Recorder::new(16 << 10).unwrap();
    let fs = r.fs().clone();
    let mut rng = StdRng::seed_from_u64(seed);
    let req = Request::root();
    let names = ["a", "b", "c", "d/x", "d/y", "e/f/g", "e/h"];
    let mut fsync = |fs: &DiskFs, rng: &mut StdRng, path: &str| {
        // fsync or fdatasync of a file, fsyncdir of a directory; sync(2)
        // for anything else (symlinks, missing paths).
        if fsync_path(fs, path, rng.gen_bool(0.5)).is_err() {
            fs.sync().unwrap();
        }
        r.fsynced();
    };
    for d in ["d", "e", "e/f"] {
        let (p, n) = split(d);
        fs.mkdir(&req, lookup(&*fs, p).unwrap(), OsStr::new(n), 0o755)
            .ok();
    }
    for _round in 0..rounds {
        let path = names[rng.gen_range(0..names.len())];
        let other = names[rng.gen_range(0..names.len())];
        let (p, n) = split(path);
        let (op, on) = split(other);
        let dir = lookup(&*fs, p).unwrap();
        let odir = lookup(&*fs, op).unwrap();
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
                if let Some(ino) = lookup(&*fs, path) {
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
                if let Some(ino) = lookup(&*fs, path) {
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
                let held = lookup(&*fs, path)
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
                if let Some(ino) = lookup(&*fs, path) {
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
                if let Some(ino) = lookup(&*fs, path) {
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
                    let _ = fs.setxattr(
                        &Request::root(),
                        ino,
                        OsStr::new("user.v"),
                        &data[..data.len().min(900)],
                        0,
                    );
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
    r
}

#[test]
fn every_crash_state_mounts_to_an_acknowledged_or_newer_commit() {
    let rounds = env("AEGIS_CRASH_ROUNDS", 1100);
    let subsets = env("AEGIS_CRASH_SUBSETS", 10);
    let mut total = CrashReport::default();
    for seed in 1u64..=10 {
        let r = record(seed, rounds).check(subsets, seed ^ 0xC4A5);
        eprintln!(
            "seed {seed}: {} fsyncs ({} in the log, {} commits; {} log blocks, {} over the ring's end, {} ring full), {} flushes, {} states",
            r.fsyncs, r.logged, r.committed, r.log.blocks, r.log.wrapped, r.log.ring_full, r.flushes, r.states
        );
        assert!(r.failures.is_empty(), "seed {seed}: {:#?}", r.failures);
        assert!(
            r.fsyncs > 20,
            "the workload fsynced too rarely to test anything"
        );
        assert!(r.logged > r.committed, "fsync should mostly write the log");
        total.states += r.states;
        total.newer += r.newer;
        total.refused += r.refused;
        total.log.wrapped += r.log.wrapped;
    }
    eprintln!(
        "{} crash states checked: {} showed an fsync newer than the last acknowledged one, {} (an interrupted mkfs) refused",
        total.states, total.newer, total.refused
    );
    assert!(total.states >= 10_000 || std::env::var("AEGIS_CRASH_ROUNDS").is_ok());
    assert!(total.newer > 0, "no crash image caught an fsync in flight");
    assert!(
        total.log.wrapped > 0,
        "no log block went over the ring's end: the wrap was not tested"
    );
}

/// A shutdown (`FS_IOC_SHUTDOWN`) in the middle of the workload: every
/// later operation fails with EIO, not one write reaches the device after
/// it, and the image it leaves shows the newest acknowledged fsync (as do
/// the crash states before it).
#[test]
fn a_shutdown_leaves_the_newest_fsync_and_writes_nothing_more() {
    let rounds = env("AEGIS_CRASH_ROUNDS", 1100) / 4;
    for seed in 21u64..=24 {
        let mut r = record(seed, rounds);
        // Changes after the last fsync, lost by the shutdown.
        let fs = r.fs().clone();
        let req = Request::root();
        let made = fs.mkdir(&req, aegis_vfs::ROOT_INO, OsStr::new("late"), 0o755);
        if let Ok(a) = made {
            fs.forget(a.ino, 1);
        }
        r.shutdown();
        let eio = |e: Option<aegis_vfs::FsError>| {
            assert_eq!(e.map(|e| e.errno()), Some(libc::EIO), "seed {seed}");
        };
        eio(fs.getattr(aegis_vfs::ROOT_INO).err());
        eio(fs.lookup(aegis_vfs::ROOT_INO, OsStr::new("late")).err());
        eio(fs
            .mkdir(&req, aegis_vfs::ROOT_INO, OsStr::new("after"), 0o755)
            .err());
        eio(fs.sync().err());
        let report = r.check(4, seed);
        assert!(
            report.failures.is_empty(),
            "seed {seed}: {:#?}",
            report.failures
        );
        assert_eq!(
            report.after_shutdown, 0,
            "seed {seed}: writes after the shutdown"
        );
    }
}

/// The script language's `shutdown`: later lines fail (notes, not
/// errors) and the check holds.
#[test]
fn the_script_shutdown_stops_the_workload() {
    let script =
        "create a\nwrite a 0 5000\nfsync a\nwrite a 0 100\nshutdown\nwrite a 0 10\nmkdir d\n";
    let (report, notes) = aegis_crashtest::run_script(script, 8, 7).unwrap();
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert_eq!(report.after_shutdown, 0);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes.iter().all(|n| n.contains("shut down")), "{notes:?}");
}

/// RENAME_WHITEOUT through the intent log: every crash state shows the
/// whiteout with the move, or neither.
#[test]
fn whiteouts_replay_with_their_rename() {
    let script = "mkdir up\ncreate up/a\nwrite up/a 0 3000\nfsync up/a\n\
                  whiteout up/a up/b\nfsync up\ncreate up/c\nwhiteout up/c up/b\nfsync up\n";
    let (report, notes) = aegis_crashtest::run_script(script, 16, 3).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert!(
        report.logged > 0,
        "the renames should go through the intent log"
    );
}
