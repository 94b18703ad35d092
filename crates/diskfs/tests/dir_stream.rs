//! Directory streams under change, on `RamFs` (the oracle) and `DiskFs`
//! alike, through the `FileSystem` trait: a reader sees every entry that
//! existed for the whole read exactly once, sees no entry twice unless it
//! was renamed during the read, and always reaches the end, however fast
//! another user renames entries away and back. A rewind (offset 0) shows
//! the directory as it is then. The image is checked by fsck at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use aegis_testkit::Kit;
use aegis_vfs::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const ENTRIES: usize = 600;
/// Entries asked for per readdir call, like a small getdents buffer.
const BATCH: usize = 16;
/// Far more calls than a stream that ends can take: a reader that meets
/// renamed entries again and again runs into this.
const MAX_CALLS: usize = 10 * ENTRIES / BATCH;

fn name(i: usize) -> Vec<u8> {
    format!("f{i:05}").into_bytes()
}

/// Create `ENTRIES` files in a new directory; returns (directory, spare
/// directory to rename into).
fn populate(fs: &dyn FileSystem) -> (Ino, Ino) {
    let req = Request::root();
    let dir = fs
        .mkdir(&req, ROOT_INO, OsStr::new("d"), 0o755)
        .unwrap()
        .ino;
    let spare = fs
        .mkdir(&req, ROOT_INO, OsStr::new("spare"), 0o755)
        .unwrap()
        .ino;
    for i in 0..ENTRIES {
        let (a, fh) = fs
            .create(&req, dir, OsStr::from_bytes(&name(i)), 0o644, libc::O_RDWR)
            .unwrap();
        fs.release(a.ino, fh).unwrap();
    }
    (dir, spare)
}

/// Read the whole stream while, after every call, a few entries are
/// renamed away and back (each taking a new cookie), one in place to a new
/// name, and one created. Returns (names seen with their counts, names
/// renamed or created during the read, calls made).
fn read_while_renaming(
    fs: &dyn FileSystem,
    dir: Ino,
    spare: Ino,
    seed: u64,
) -> (BTreeMap<Vec<u8>, usize>, BTreeSet<Vec<u8>>, usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let fh = fs.opendir(dir, 0).unwrap();
    let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut touched = BTreeSet::new();
    let (mut offset, mut calls, mut made) = (0u64, 0usize, 0usize);
    loop {
        calls += 1;
        assert!(calls <= MAX_CALLS, "the stream never ended");
        let batch = fs.readdir(dir, fh, offset, BATCH).unwrap();
        let Some(last) = batch.last() else { break };
        offset = last.offset;
        for e in batch.iter().filter(|e| e.name != b"." && e.name != b"..") {
            *seen.entry(e.name.clone()).or_default() += 1;
        }
        for _ in 0..4 {
            let n = name(rng.gen_range(0..ENTRIES));
            let n = OsStr::from_bytes(&n);
            if fs.rename(dir, n, spare, n, 0).is_ok() {
                fs.rename(spare, n, dir, n, 0).unwrap();
                touched.insert(n.as_bytes().to_vec());
            }
        }
        let from = name(rng.gen_range(0..ENTRIES));
        let to = format!("moved{made}").into_bytes();
        if fs
            .rename(
                dir,
                OsStr::from_bytes(&from),
                dir,
                OsStr::from_bytes(&to),
                0,
            )
            .is_ok()
        {
            touched.insert(from);
            touched.insert(to);
        }
        let new = format!("new{made}").into_bytes();
        let (a, nfh) = fs
            .create(
                &Request::root(),
                dir,
                OsStr::from_bytes(&new),
                0o644,
                libc::O_RDWR,
            )
            .unwrap();
        fs.release(a.ino, nfh).unwrap();
        touched.insert(new);
        made += 1;
    }
    fs.releasedir(dir, fh).unwrap();
    (seen, touched, calls)
}

fn check_stream(fs: &dyn FileSystem, seed: u64) {
    let (dir, spare) = populate(fs);
    let (seen, touched, calls) = read_while_renaming(fs, dir, spare, seed);
    assert!(
        calls <= ENTRIES / BATCH + 3,
        "{calls} calls for {ENTRIES} entries"
    );
    for i in 0..ENTRIES {
        let n = name(i);
        if !touched.contains(&n) {
            assert_eq!(
                seen.get(&n),
                Some(&1),
                "untouched {:?}",
                String::from_utf8_lossy(&n)
            );
        }
    }
    for (n, count) in &seen {
        assert!(
            *count == 1 || touched.contains(n),
            "{:?} seen {count} times without being renamed",
            String::from_utf8_lossy(n)
        );
    }
    check_rewind(fs, dir);
}

/// A stream rewound to offset 0 shows entries made since it was opened.
fn check_rewind(fs: &dyn FileSystem, dir: Ino) {
    let fh = fs.opendir(dir, 0).unwrap();
    let first = fs.readdir(dir, fh, 0, BATCH).unwrap();
    let (a, nfh) = fs
        .create(
            &Request::root(),
            dir,
            OsStr::new("after-open"),
            0o644,
            libc::O_RDWR,
        )
        .unwrap();
    fs.release(a.ino, nfh).unwrap();
    let listed = |fs: &dyn FileSystem, mut offset: u64| {
        let mut names = BTreeSet::new();
        for _ in 0..MAX_CALLS {
            let batch = fs.readdir(dir, fh, offset, BATCH).unwrap();
            let Some(last) = batch.last() else { break };
            offset = last.offset;
            names.extend(batch.into_iter().map(|e| e.name));
        }
        names
    };
    let rest = listed(fs, first.last().unwrap().offset);
    assert!(
        !rest.contains(b"after-open".as_slice()),
        "made after the stream opened"
    );
    let rewound = listed(fs, 0);
    assert!(
        rewound.contains(b"after-open".as_slice()),
        "a rewind shows it"
    );
    fs.releasedir(dir, fh).unwrap();
}

#[test]
fn ramfs_directory_streams_end_and_show_each_entry_once() {
    for seed in 0..3 {
        check_stream(&RamFs::new(), seed);
    }
}

#[test]
fn diskfs_directory_streams_end_and_show_each_entry_once() {
    for seed in 0..3 {
        let kit = Kit::default().size(128 << 20);
        let dev = kit.fresh();
        let fs = kit.mount(dev.clone()).expect("mount");
        check_stream(&*fs, seed);
        fs.unmount().expect("unmount");
        kit.fsck_clean(dev);
    }
}
