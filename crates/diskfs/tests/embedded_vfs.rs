//! The embedded VFS over a disk image and over ramfs: the same call
//! sequences (random, seeded) give the same results on both, for root and
//! for an unprivileged caller, and a disk image mounted under a ramfs
//! root is reached across the mount point. Every test ends with fsck.

use std::sync::Arc;

use aegis_testkit::Kit;
use aegis_vfs::embedded::dirent64_records;
use aegis_vfs::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const NAMES: [&str; 6] = ["a", "b", "c", "a/x", "a/y", "b/z"];

fn path(rng: &mut StdRng) -> Vec<u8> {
    let mut p = format!("/{}", NAMES[rng.gen_range(0..NAMES.len())]);
    if rng.gen_bool(0.1) {
        p.push('/');
    }
    p.into_bytes()
}

/// What one call gave, comparable across filesystems: an errno, or the
/// parts of a result that do not depend on the filesystem (no inode
/// numbers, times or block counts).
fn outcome<T>(r: Result<T>, show: impl Fn(T) -> String) -> String {
    match r {
        Ok(v) => show(v),
        Err(e) => format!("errno {}", e.errno()),
    }
}

fn listing(p: &Process, dir: &[u8]) -> Result<String> {
    let fd = p.open(dir, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let mut names = Vec::new();
    // Bounded: a directory here holds a handful of names.
    for _ in 0..64 {
        let buf = p.getdents64(fd, 4096)?;
        if buf.is_empty() {
            break;
        }
        let recs = dirent64_records(&buf).expect("well-formed records");
        names.extend(recs.into_iter().map(|d| (d.name, d.kind)));
    }
    p.close(fd)?;
    names.sort();
    Ok(format!("{names:?}"))
}

/// One random call on `p`.
fn step(p: &Process, rng: &mut StdRng, i: usize) -> String {
    let a = path(rng);
    let b = path(rng);
    match rng.gen_range(0..12) {
        0 => outcome(p.mkdir(&a, 0o750), |_| "ok".into()),
        1 => outcome(
            p.open(&a, libc::O_RDWR | libc::O_CREAT, 0o640)
                .and_then(|fd| {
                    let n = p.write(fd, format!("data {i} ").repeat(i % 9 + 1).as_bytes());
                    p.close(fd)?;
                    n
                }),
            |n| format!("wrote {n}"),
        ),
        2 => outcome(p.unlink(&a), |_| "ok".into()),
        3 => outcome(p.rmdir(&a), |_| "ok".into()),
        4 => outcome(p.rename(&a, &b), |_| "ok".into()),
        5 => outcome(p.symlink(&b, &a), |_| "ok".into()),
        6 => outcome(p.link(&a, &b), |_| "ok".into()),
        7 => outcome(p.lstat(&a), |s| {
            format!(
                "mode {:o} size {} nlink {}",
                s.st_mode, s.st_size, s.st_nlink
            )
        }),
        8 => outcome(
            p.open(&a, libc::O_RDONLY, 0).and_then(|fd| {
                let d = p.read(fd, 1 << 16);
                p.close(fd)?;
                d
            }),
            |d| String::from_utf8_lossy(&d).into_owned(),
        ),
        9 => outcome(listing(p, &a), |l| l),
        10 => outcome(p.truncate(&a, (i % 7) as u64), |_| "ok".into()),
        _ => outcome(
            p.chmod(&a, if i.is_multiple_of(2) { 0o700 } else { 0o644 }),
            |_| "ok".into(),
        ),
    }
}

fn run_both(seed: u64, creds: Creds) {
    let kit = Kit::default().size(64 << 20);
    let dev = kit.fresh();
    let disk = kit.mount(dev.clone()).unwrap();
    let on_disk = Vfs::new(disk.clone() as Arc<dyn FileSystem>);
    let in_ram = Vfs::new(Arc::new(RamFs::new()));
    for v in [&on_disk, &in_ram] {
        // A tree the caller may work in, made by root.
        let root = v.process(Creds::root());
        root.chmod(b"/", 0o777).unwrap();
    }
    let (d, r) = (on_disk.process(creds.clone()), in_ram.process(creds));
    let mut rng_d = StdRng::seed_from_u64(seed);
    let mut rng_r = StdRng::seed_from_u64(seed);
    let mut worked = 0;
    for i in 0..400 {
        let got_d = step(&d, &mut rng_d, i);
        let got_r = step(&r, &mut rng_r, i);
        assert_eq!(
            got_d, got_r,
            "seed {seed} step {i}: disk image and ramfs differ"
        );
        worked += usize::from(!got_d.starts_with("errno"));
    }
    // Not a run of refusals (errors are compared too, and many calls
    // here are meant to fail: EEXIST, ENOTEMPTY, ENOTDIR, EACCES).
    assert!(
        worked > 40,
        "seed {seed}: only {worked} of 400 calls succeeded"
    );
    drop((d, r, on_disk));
    disk.unmount().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn the_same_calls_give_the_same_results_on_a_disk_image_and_on_ramfs() {
    for seed in 0..6 {
        run_both(seed, Creds::root());
    }
}

#[test]
fn an_unprivileged_caller_sees_the_same_on_both() {
    for seed in 10..14 {
        let mut c = Creds::user(1000, 1000);
        c.groups = vec![10];
        run_both(seed, c);
    }
}

#[test]
fn a_disk_image_mounted_under_a_ramfs_root() {
    let kit = Kit::default().size(64 << 20);
    let dev = kit.fresh();
    let disk = kit.mount(dev.clone()).unwrap();
    let vfs = Vfs::new(Arc::new(RamFs::new()));
    let p = vfs.process(Creds::root());
    p.mkdir(b"/data", 0o755).unwrap();
    p.mount(b"/data", disk.clone()).unwrap();
    p.mkdir(b"/data/dir", 0o755).unwrap();
    let fd = p
        .open(b"/data/dir/f", libc::O_RDWR | libc::O_CREAT, 0o644)
        .unwrap();
    p.write(fd, b"on the disk").unwrap();
    p.fsync(fd).unwrap();
    p.close(fd).unwrap();
    p.chdir(b"/data/dir").unwrap();
    assert_eq!(p.stat(b"../../data/dir/f").unwrap().st_size, 11);
    assert_eq!(
        p.stat(b"../..").unwrap().st_ino,
        p.stat(b"/").unwrap().st_ino
    );
    p.chdir(b"/").unwrap();
    let fs = p.umount(b"/data", false).unwrap();
    drop(fs);
    disk.unmount().unwrap();
    kit.fsck_clean(dev.clone());
    // The file is on the image: open it again without the VFS.
    let disk = kit.mount(dev.clone()).unwrap();
    let v2 = Vfs::new(disk.clone() as Arc<dyn FileSystem>);
    let q = v2.process(Creds::root());
    let fd = q.open(b"/dir/f", libc::O_RDONLY, 0).unwrap();
    assert_eq!(q.read(fd, 100).unwrap(), b"on the disk");
    q.close(fd).unwrap();
    drop((q, v2));
    disk.unmount().unwrap();
    kit.fsck_clean(dev);
}
