//! Fault injection under the filesystem: device read, write and flush
//! errors at random points, and a pool filled to ENOSPC. The rules: no
//! panic; an operation that fails changed nothing (the RamFs oracle, which
//! skips failed operations, must still equal the filesystem); a failed
//! commit leaves the last committed state, which the next mount shows; and
//! the image passes fsck afterwards.

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::{DeviceRef, FaultConfig, FaultDevice, FaultKind, MemDevice};
use aegis_diskfs::{AtimeMode, DiskFs};
use aegis_testkit::Kit;
use aegis_vfs::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use aegis_crashtest::dump;

/// 16 KiB records, a small node cache and no data cache, so tree and data
/// reads reach the (faulty) device.
fn kit() -> Kit {
    Kit::default()
        .record_size(16 << 10)
        .cache_nodes(64)
        .data_cache_bytes(0)
        .atime(AtimeMode::Noatime)
}

fn fresh(size: u64) -> Arc<MemDevice> {
    kit().size(size).fresh()
}

fn mount(dev: DeviceRef) -> Result<Arc<DiskFs>> {
    kit().mount(dev)
}

fn fsck_clean(dev: &Arc<MemDevice>) {
    kit().fsck_clean(dev.clone());
}

/// One random operation by name path, on `fs`; the result as text.
fn op(fs: &dyn FileSystem, rng: &mut StdRng) -> (String, std::result::Result<String, i32>) {
    let names = ["a", "b", "c", "d", "e"];
    let n = names[rng.gen_range(0..names.len())];
    let m = names[rng.gen_range(0..names.len())];
    let req = Request::root();
    let len = rng.gen_range(0..70_000);
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ 0x5a).collect();
    let off = rng.gen_range(0..100_000u64);
    let kind = rng.gen_range(0..8);
    let look = |name: &str| {
        fs.lookup(ROOT_INO, OsStr::new(name)).map(|a| {
            fs.forget(a.ino, 1);
            a.ino
        })
    };
    let r: Result<String> = (|| match kind {
        0 => fs
            .mknod(&req, ROOT_INO, OsStr::new(n), libc::S_IFREG | 0o644, 0)
            .map(|a| {
                fs.forget(a.ino, 1);
                String::new()
            }),
        1 | 2 => {
            let ino = look(n)?;
            let fh = fs.open(ino, libc::O_WRONLY)?;
            let r = fs.write(ino, fh, off, &data).map(|w| w.to_string());
            fs.release(ino, fh)?;
            r
        }
        3 => fs.unlink(ROOT_INO, OsStr::new(n)).map(|_| String::new()),
        4 => fs
            .rename(ROOT_INO, OsStr::new(n), ROOT_INO, OsStr::new(m), 0)
            .map(|_| String::new()),
        5 => {
            let ino = look(n)?;
            let set = SetAttr {
                size: Some(off),
                ..Default::default()
            };
            fs.setattr(&req, ino, &set, None)
                .map(|a| a.size.to_string())
        }
        6 => {
            let ino = look(n)?;
            fs.setxattr(
                &Request::root(),
                ino,
                OsStr::new("user.x"),
                &data[..data.len().min(3000)],
                0,
            )
            .map(|_| String::new())
        }
        _ => {
            let ino = look(n)?;
            fs.link(ino, ROOT_INO, OsStr::new(m)).map(|a| {
                fs.forget(a.ino, 1);
                String::new()
            })
        }
    })();
    (format!("{kind} {n} {m}"), r.map_err(|e| e.errno()))
}

#[test]
fn device_errors_never_half_apply_an_operation() {
    let mut ops_failed = 0;
    let mut commits_failed = 0;
    for seed in 0..30u64 {
        let dev = fresh(64 << 20);
        let faulty = Arc::new(FaultDevice::new(dev.clone() as DeviceRef, seed));
        let kind = [
            FaultKind::WriteError,
            FaultKind::ReadError,
            FaultKind::FlushError,
        ][seed as usize % 3];
        let fs = mount(faulty.clone() as DeviceRef).unwrap();
        // Most seeds write each block at once, so write errors hit single
        // operations; seeds 3, 9, 15 and 21 keep new blocks until the
        // commit, so their write errors hit the commit that writes them
        // out.
        if seed % 6 != 3 {
            fs.store().set_write_behind(0);
        }
        let ram = RamFs::new();
        let mut rng = StdRng::seed_from_u64(seed);
        // Faults start after a while and hit a fraction of the I/Os.
        let rule = FaultConfig::new(kind)
            .after(rng.gen_range(0..200))
            .probability(0.1);
        // The last seeds aim write errors at the labels and uberblock ring
        // (the front 512 KiB), where a commit ends.
        let rule = if seed >= 24 {
            FaultConfig::new(FaultKind::WriteError)
                .zone(aegis_block::Zone::Range {
                    start: 0,
                    end: 512 << 10,
                })
                .after(rng.gen_range(0..20))
                .probability(0.5)
        } else {
            rule
        };
        faulty.add(rule);
        let mut committed = dump(&ram);
        let mut dead = false;
        for i in 0..400 {
            let mut r1 = rng.clone();
            let (what, got) = op(&*fs, &mut rng);
            match got {
                Err(e) if e == libc::EIO || e == libc::EINVAL => {
                    // Failed on the device: nothing may have changed.
                    ops_failed += 1;
                    faulty.set_enabled(false);
                    let now = dump(&*fs);
                    faulty.set_enabled(true);
                    assert_eq!(
                        now,
                        dump(&ram),
                        "seed {seed} op {i} ({what}) failed with {e} but changed the tree"
                    );
                }
                _ => {
                    let (_, want) = op(&ram, &mut r1);
                    assert_eq!(got, want, "seed {seed} op {i} ({what})");
                }
            }
            if i % 25 == 24 {
                // Half the seeds spare the commits, so their runs go on
                // and collect failures of single operations.
                let spare = seed % 2 == 0;
                faulty.set_enabled(!spare);
                let synced = fs.sync();
                faulty.set_enabled(true);
                match synced {
                    Ok(()) => committed = dump(&ram),
                    Err(_) => {
                        commits_failed += 1;
                        dead = true;
                        break;
                    }
                }
            }
        }
        // Crash or clean end; either way the next mount (no faults) shows
        // the last committed tree, or the final one after a clean unmount.
        faulty.set_enabled(false);
        let want = if dead {
            drop(fs);
            committed
        } else {
            fs.unmount().unwrap();
            dump(&ram)
        };
        let fs = mount(dev.clone() as DeviceRef).unwrap();
        assert_eq!(dump(&*fs), want, "seed {seed}: remounted tree");
        fs.unmount().unwrap();
        fsck_clean(&dev);
    }
    eprintln!("{ops_failed} operations failed on injected errors, {commits_failed} commits failed");
    assert!(
        ops_failed >= 20 && commits_failed >= 4,
        "too few faults to test anything"
    );
}

#[test]
fn a_full_pool_refuses_cleanly_and_still_deletes() {
    for (seed, size) in [(1u64, 16u64 << 20), (2, 20 << 20), (3, 24 << 20)] {
        let dev = fresh(size);
        let fs = mount(dev.clone() as DeviceRef).unwrap();
        let ram = RamFs::new();
        let req = Request::root();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut nospc = 0;
        for i in 0..400 {
            let name = format!("f{}", i % 60);
            let data: Vec<u8> = (0..rng.gen_range(1..300_000)).map(|_| rng.gen()).collect();
            // A write may be short (it stops at the first piece the pool
            // refuses): the model takes what the filesystem took.
            let run = |fs: &dyn FileSystem, data: &[u8]| -> Result<u32> {
                let ino = match fs.lookup(ROOT_INO, OsStr::new(&name)) {
                    Ok(a) => {
                        fs.forget(a.ino, 1);
                        a.ino
                    }
                    Err(_) => {
                        let a =
                            fs.mknod(&req, ROOT_INO, OsStr::new(&name), libc::S_IFREG | 0o644, 0)?;
                        fs.forget(a.ino, 1);
                        a.ino
                    }
                };
                let fh = fs.open(ino, libc::O_WRONLY)?;
                let r = fs.write(ino, fh, rng_off(i), data);
                fs.release(ino, fh)?;
                r
            };
            match run(&*fs, &data) {
                Err(FsError::NoSpace) => {
                    nospc += 1;
                    // The refused write changed nothing; the create before
                    // it may have happened: mirror just that.
                    if fs
                        .lookup(ROOT_INO, OsStr::new(&name))
                        .map(|a| fs.forget(a.ino, 1))
                        .is_ok()
                        && ram
                            .lookup(ROOT_INO, OsStr::new(&name))
                            .map(|a| ram.forget(a.ino, 1))
                            .is_err()
                    {
                        let a = ram
                            .mknod(&req, ROOT_INO, OsStr::new(&name), libc::S_IFREG | 0o644, 0)
                            .unwrap();
                        ram.forget(a.ino, 1);
                    }
                    assert_eq!(
                        dump(&*fs),
                        dump(&ram),
                        "seed {seed} op {i}: ENOSPC changed the tree"
                    );
                }
                Err(e) => panic!("seed {seed} op {i}: {e}"),
                Ok(n) => {
                    assert_eq!(run(&ram, &data[..n as usize]).unwrap(), n);
                }
            }
        }
        assert!(nospc > 0, "seed {seed}: the pool never filled");
        // Deletes work on a full pool, and give the space back.
        for i in 0..60 {
            let name = format!("f{i}");
            let a = fs.unlink(ROOT_INO, OsStr::new(&name));
            let b = ram.unlink(ROOT_INO, OsStr::new(&name));
            assert_eq!(a.is_ok(), b.is_ok(), "seed {seed}: unlink {name}: {a:?}");
        }
        fs.sync().unwrap();
        let a = fs
            .mknod(
                &req,
                ROOT_INO,
                OsStr::new("after"),
                libc::S_IFREG | 0o644,
                0,
            )
            .unwrap();
        let fh = fs.open(a.ino, libc::O_WRONLY).unwrap();
        fs.write(a.ino, fh, 0, &vec![1u8; 1 << 20]).unwrap();
        fs.release(a.ino, fh).unwrap();
        fs.forget(a.ino, 1);
        fs.unmount().unwrap();
        let fs = mount(dev.clone() as DeviceRef).unwrap();
        assert_eq!(
            fs.getattr(fs.lookup(ROOT_INO, OsStr::new("after")).unwrap().ino)
                .unwrap()
                .size,
            1 << 20
        );
        fs.unmount().unwrap();
        fsck_clean(&dev);
    }
}

fn rng_off(i: usize) -> u64 {
    (i as u64 * 7919) % 200_000
}

/// Run the seeded workload of [`op`] on `fs` (and on the oracle for what
/// succeeds), syncing every 20 operations. Returns the oracle's tree at
/// the last successful sync and whether a sync failed (the pool is then
/// out of service until remounted).
fn injected_run(fs: &DiskFs, seed: u64, n_ops: usize, what: &str) -> (Vec<String>, bool) {
    let ram = RamFs::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut committed = dump(&ram);
    for i in 0..n_ops {
        let mut r1 = rng.clone();
        let (desc, got) = op(fs, &mut rng);
        match got {
            Err(e) if e == libc::ENOSPC => {
                assert_eq!(
                    dump(fs),
                    dump(&ram),
                    "{what}: op {i} ({desc}) failed with ENOSPC but changed the tree"
                );
            }
            _ => {
                let (_, want) = op(&ram, &mut r1);
                assert_eq!(got, want, "{what}: op {i} ({desc})");
            }
        }
        if i % 20 == 19 {
            match fs.sync() {
                Ok(()) => committed = dump(&ram),
                Err(_) => return (committed, true),
            }
        }
    }
    (dump(&ram), false)
}

#[test]
fn enospc_at_every_allocation_point_of_a_workload() {
    const OPS: usize = 200;
    const SEED: u64 = 99;
    // Count the workload's allocations once, with no injection.
    let total = {
        let dev = fresh(32 << 20);
        let fs = mount(dev.clone() as DeviceRef).unwrap();
        let a = fs.store().allocation_count();
        injected_run(&fs, SEED, OPS, "count");
        let n = fs.store().allocation_count() - a;
        fs.unmount().unwrap();
        n
    };
    assert!(
        total > 50,
        "the workload allocates too little ({total}) to test anything"
    );
    let mut refused_ops = 0;
    for n in 1..=total {
        let dev = fresh(32 << 20);
        let fs = mount(dev.clone() as DeviceRef).unwrap();
        fs.store().inject_no_space(Some(n));
        let what = format!("allocation {n} of {total}");
        let (committed, dead) = injected_run(&fs, SEED, OPS, &what);
        fs.store().inject_no_space(None);
        // A failed commit leaves the last committed tree; otherwise the
        // refused operation changed nothing and the run went on, and a
        // clean unmount keeps everything.
        if dead {
            drop(fs);
        } else {
            refused_ops += 1;
            fs.unmount().unwrap();
        }
        let want = committed;
        let fs = mount(dev.clone() as DeviceRef).unwrap();
        assert_eq!(dump(&*fs), want, "{what}: remounted tree");
        fs.unmount().unwrap();
        fsck_clean(&dev);
    }
    eprintln!("ENOSPC injected at each of {total} allocation points; {refused_ops} runs refused an operation and went on");
}

/// A disk that acknowledges writes it only partly made (torn writes): what
/// was written is checksummed, so a later read returns the right bytes (a
/// ditto copy heals metadata) or EIO, never other bytes.
#[test]
fn torn_writes_are_caught_never_returned() {
    let mut eio = 0;
    let mut good = 0;
    for seed in 0..6u64 {
        let dev = fresh(64 << 20);
        let faulty = Arc::new(FaultDevice::new(dev.clone() as DeviceRef, seed));
        let fs = mount(faulty.clone() as DeviceRef).unwrap();
        let ram = RamFs::new();
        let mut rng = StdRng::seed_from_u64(seed);
        faulty.add(
            FaultConfig::new(FaultKind::TornWrite)
                .after(50)
                .probability(0.05),
        );
        for _ in 0..200 {
            let mut r1 = rng.clone();
            let (_, got) = op(&*fs, &mut rng);
            if got.is_ok() {
                let _ = op(&ram, &mut r1);
            }
        }
        let _ = fs.sync();
        faulty.set_enabled(false);
        drop(fs);
        // The torn pool may not open at its newest txg (or at all): an
        // error is fine, wrong bytes are not.
        let Ok(fs) = mount(dev.clone() as DeviceRef) else {
            continue;
        };
        let names = ["a", "b", "c", "d", "e"];
        for n in names {
            let (Ok(a), Ok(r)) = (
                fs.lookup(ROOT_INO, OsStr::new(n)),
                ram.lookup(ROOT_INO, OsStr::new(n)),
            ) else {
                continue;
            };
            if a.kind != FileType::RegularFile || r.kind != FileType::RegularFile {
                continue;
            }
            let fh = fs.open(a.ino, libc::O_RDONLY).unwrap();
            let rf = ram.open(r.ino, libc::O_RDONLY).unwrap();
            // Read in pieces: a torn block fails its own range only.
            for off in (0..a.size.min(r.size)).step_by(4096) {
                match fs.read(a.ino, fh, off, 4096) {
                    Ok(d) => {
                        // Same bytes as the oracle wherever the txg kept
                        // the same size (a rolled-back txg may differ).
                        if a.size == r.size {
                            assert_eq!(
                                d,
                                ram.read(r.ino, rf, off, 4096).unwrap(),
                                "seed {seed}: {n} at {off}"
                            );
                        }
                        good += 1;
                    }
                    Err(FsError::Io(_)) => eio += 1,
                    Err(e) => panic!("seed {seed}: {n} at {off}: {e}"),
                }
            }
        }
    }
    eprintln!("torn writes: {good} reads right, {eio} reads EIO, none wrong");
    assert!(good > 0);
}
