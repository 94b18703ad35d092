//! Reflinks through the `FileSystem` trait: copy_file_range and clones
//! share blocks instead of copying them, the copies go their own ways
//! when written, and a shared block is freed only with its last pointer,
//! whatever snapshots, rollbacks, clones of datasets and remounts did in
//! between. Every test ends with fsck, whose reference check counts each
//! block's pointers against the clone table.

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::DeviceRef;
use aegis_diskfs::DiskFs;
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::Store;
use aegis_testkit::{put_file, read_file, Kit};
use aegis_vfs::{FileSystem, FsError as VfsError, Ino, ROOT_INO};

const RS: u64 = 128 << 10;

/// copy_file_range of all of `from` into a new file `to`.
fn copy(fs: &DiskFs, from: &str, to: &str) -> Ino {
    let a = fs.lookup(ROOT_INO, OsStr::new(from)).unwrap();
    let (ino, fho) = aegis_testkit::create_file(fs, to);
    let fhi = fs.open(a.ino, libc::O_RDONLY).unwrap();
    let n = fs
        .copy_file_range(a.ino, fhi, 0, ino, fho, 0, a.size, 0)
        .unwrap();
    assert_eq!(n, a.size);
    fs.release(a.ino, fhi).unwrap();
    fs.release(ino, fho).unwrap();
    ino
}

fn unlink(fs: &DiskFs, name: &str) {
    fs.unlink(ROOT_INO, OsStr::new(name)).unwrap();
}

fn used(store: &Store) -> u64 {
    let s = store.space();
    s.total - s.free
}

/// Commit until deferred frees have come back.
fn settle(store: &Store) {
    for _ in 0..4 {
        store.commit().unwrap();
    }
}

/// The data block addresses of file `ino`'s records.
fn blocks(fs: &DiskFs, ino: Ino) -> Vec<(u64, u32, u64)> {
    let ds = fs.dataset_id();
    fs.store()
        .view(ds, |v| v.record_blocks(ino, 0, u64::MAX))
        .unwrap()
        .into_iter()
        .map(|(start, bp)| (start, bp.addrs[0].device, bp.addrs[0].offset))
        .collect()
}

#[test]
fn a_copy_shares_blocks_until_written_and_frees_with_its_last_pointer() {
    let kit = Kit::default().size(256 << 20);
    let dev = kit.fresh();
    let fs = kit.mount_dataset(&dev, None);
    let store = fs.store().clone();
    let data = aegis_testkit::noise(4 << 20, 1);
    let a = put_file(&fs, "a", &data);
    settle(&store);
    let empty_plus_a = used(&store);
    let b = copy(&fs, "a", "b");
    settle(&store);
    let after = used(&store);
    assert!(
        after - empty_plus_a < 256 << 10,
        "a 4 MiB copy takes no data blocks: {empty_plus_a} → {after}"
    );
    assert_eq!(
        blocks(&fs, a),
        blocks(&fs, b),
        "the copy names the same blocks"
    );
    assert_eq!(read_file(&fs, "b").unwrap(), data);
    assert_eq!(store.reflinked_bytes().unwrap(), 4 << 20);

    // A write into the copy makes a block of its own; the source stays.
    let fh = fs.open(b, libc::O_RDWR).unwrap();
    fs.write(b, fh, RS + 10, b"changed").unwrap();
    fs.release(b, fh).unwrap();
    let mut want = data.clone();
    want[RS as usize + 10..RS as usize + 17].copy_from_slice(b"changed");
    assert_eq!(read_file(&fs, "b").unwrap(), want);
    assert_eq!(read_file(&fs, "a").unwrap(), data);
    store.commit().unwrap();
    let (ba, bb) = (blocks(&fs, a), blocks(&fs, b));
    assert_ne!(ba[1], bb[1], "the written record is the copy's own");
    assert_eq!(ba[0], bb[0]);

    // The source goes: the copy keeps its blocks; then the copy goes too.
    unlink(&fs, "a");
    settle(&store);
    assert_eq!(read_file(&fs, "b").unwrap(), want);
    fs.unmount().unwrap();
    kit.fsck_clean(dev.clone());
    let fs = kit.mount_dataset(&dev, None);
    assert_eq!(read_file(&fs, "b").unwrap(), want, "after a remount");
    unlink(&fs, "b");
    // The kernel's lookups keep an unlinked inode until they are
    // forgotten: an unmount drops them.
    fs.unmount().unwrap();
    let fs = kit.mount_dataset(&dev, None);
    let store = fs.store().clone();
    settle(&store);
    assert!(
        used(&store) + (3 << 20) < empty_plus_a,
        "the last pointer frees the blocks: {} vs {empty_plus_a}",
        used(&store)
    );
    assert_eq!(store.reflinked_bytes().unwrap(), 0);
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn unaligned_and_mismatched_copies_share_what_records_allow() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    let fs = kit.mount_dataset(&dev, None);
    let data = aegis_testkit::noise(1 << 20, 2);
    let a = put_file(&fs, "a", &data);
    // Into the middle of an existing file, at another phase: copied.
    let other = aegis_testkit::noise(600_000, 3);
    let c = put_file(&fs, "c", &other);
    let fhi = fs.open(a, libc::O_RDONLY).unwrap();
    let fho = fs.open(c, libc::O_RDWR).unwrap();
    assert_eq!(
        fs.copy_file_range(a, fhi, 100, c, fho, 5000, 300_000, 0)
            .unwrap(),
        300_000
    );
    let mut want = other.clone();
    want[5000..305_000].copy_from_slice(&data[100..300_100]);
    assert_eq!(read_file(&fs, "c").unwrap(), want);
    // In phase: the whole records between are shared, the edges copied.
    assert_eq!(
        fs.copy_file_range(a, fhi, RS + 7, c, fho, RS + 7, 3 * RS, 0)
            .unwrap(),
        3 * RS
    );
    want.resize(want.len().max((4 * RS + 7) as usize), 0);
    want[(RS + 7) as usize..(4 * RS + 7) as usize]
        .copy_from_slice(&data[(RS + 7) as usize..(4 * RS + 7) as usize]);
    assert_eq!(read_file(&fs, "c").unwrap(), want);
    fs.store().commit().unwrap();
    let (ba, bc) = (blocks(&fs, a), blocks(&fs, c));
    assert!(
        ba.contains(&bc[2]) && ba.contains(&bc[3]),
        "records 2 and 3 shared"
    );
    assert!(!ba.contains(&bc[1]), "record 1 was patched, not shared");
    // A clone wants record boundaries and says so.
    let e = fs.clone_range(a, fhi, 100, c, fho, 0, RS).unwrap_err();
    assert!(matches!(e, VfsError::InvalidArgument(_)), "{e:?}");
    assert_eq!(fs.clone_range(a, fhi, 0, c, fho, 0, 0).unwrap(), 1 << 20);
    assert_eq!(read_file(&fs, "c").unwrap()[..1 << 20], data[..]);
    let ro = fs.open(c, libc::O_RDONLY).unwrap();
    assert!(matches!(
        fs.clone_range(a, fhi, 0, c, ro, 0, 0),
        Err(VfsError::BadHandle)
    ));
    assert!(matches!(
        fs.clone_range(a, fhi, 0, a, fhi, RS, RS),
        Err(VfsError::BadHandle | VfsError::InvalidArgument(_))
    ));
    for fh in [fhi, fho, ro] {
        fs.release(if fh == fhi { a } else { c }, fh).unwrap();
    }
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn snapshots_and_rollback_keep_shared_blocks_counted() {
    let kit = Kit::default().size(256 << 20);
    let dev = kit.fresh();
    let fs = kit.mount_dataset(&dev, None);
    let store = fs.store().clone();
    settle(&store);
    let empty = used(&store);
    let data = aegis_testkit::noise(2 << 20, 4);
    put_file(&fs, "a", &data);
    settle(&store);
    store.create_snapshot(ROOT_DATASET, "s1").unwrap();
    // Two copies in one txg: identical pointers, one dead list key.
    copy(&fs, "a", "b");
    copy(&fs, "a", "c");
    store.commit().unwrap();
    store.create_snapshot(ROOT_DATASET, "s2").unwrap();
    unlink(&fs, "b");
    unlink(&fs, "c");
    unlink(&fs, "a");
    settle(&store);
    fs.unmount().unwrap();
    kit.fsck_clean(dev.clone());

    let store = kit.open_store(dev.clone());
    store.rollback(ROOT_DATASET, "s2").unwrap();
    settle(&store);
    store.shutdown().unwrap();
    kit.fsck_clean(dev.clone());
    let fs = kit.mount_dataset(&dev, None);
    for name in ["a", "b", "c"] {
        assert_eq!(
            read_file(&fs, name).unwrap(),
            data,
            "{name} after the rollback"
        );
    }
    // Copies made after s2 and rolled back away.
    copy(&fs, "a", "d");
    fs.unmount().unwrap();
    let store = kit.open_store(dev.clone());
    store.rollback(ROOT_DATASET, "s2").unwrap();
    for s in ["s1", "s2"] {
        store.delete_snapshot(ROOT_DATASET, s, &mut |_| {}).unwrap();
    }
    settle(&store);
    store.shutdown().unwrap();
    kit.fsck_clean(dev.clone());
    let fs = kit.mount_dataset(&dev, None);
    let store = fs.store().clone();
    assert!(read_file(&fs, "d").is_none());
    for name in ["a", "b", "c"] {
        unlink(&fs, name);
    }
    settle(&store);
    let left = used(&store);
    assert!(
        left < empty + (256 << 10),
        "everything freed: {left} bytes used, {empty} empty"
    );
    assert_eq!(store.reflinked_bytes().unwrap(), 0);
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn a_dataset_clone_can_reflink_its_origins_blocks_and_be_destroyed() {
    let kit = Kit::default().size(256 << 20);
    let dev = kit.fresh();
    let fs = kit.mount_dataset(&dev, None);
    let data = aegis_testkit::noise(1 << 20, 5);
    put_file(&fs, "a", &data);
    fs.unmount().unwrap();
    let store = kit.open_store(dev.clone());
    store.create_snapshot(ROOT_DATASET, "s").unwrap();
    store.clone_snapshot(ROOT_DATASET, "s", "c").unwrap();
    store.shutdown().unwrap();
    let fs = kit.mount_dataset(&dev, Some("c"));
    copy(&fs, "a", "b");
    fs.sync().unwrap();
    assert_eq!(read_file(&fs, "b").unwrap(), data);
    fs.unmount().unwrap();
    kit.fsck_clean(dev.clone());
    let store = kit.open_store(dev.clone());
    store.destroy_dataset("c").unwrap();
    store
        .delete_snapshot(ROOT_DATASET, "s", &mut |_| {})
        .unwrap();
    settle(&store);
    assert_eq!(store.reflinked_bytes().unwrap(), 0);
    store.shutdown().unwrap();
    kit.fsck_clean(dev.clone());
    let fs = kit.mount_dataset(&dev, None);
    assert_eq!(read_file(&fs, "a").unwrap(), data);
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn dedupe_shares_equal_ranges_and_refuses_different_ones() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    let fs = kit.mount_dataset(&dev, None);
    let store = fs.store().clone();
    let data = aegis_testkit::noise(2 << 20, 6);
    let a = put_file(&fs, "a", &data);
    let b = put_file(&fs, "b", &data);
    let mut other = data.clone();
    other[3] ^= 1;
    let c = put_file(&fs, "c", &other);
    settle(&store);
    let before = used(&store);
    let fa = fs.open(a, libc::O_RDONLY).unwrap();
    let fb = fs.open(b, libc::O_RDWR).unwrap();
    let fc = fs.open(c, libc::O_RDWR).unwrap();
    let mtime = fs.getattr(b).unwrap().mtime;
    assert_eq!(
        fs.dedupe_range(a, fa, 0, b, fb, 0, 2 << 20).unwrap(),
        Some(2 << 20)
    );
    assert_eq!(fs.dedupe_range(a, fa, 0, c, fc, 0, 2 << 20).unwrap(), None);
    assert_eq!(
        fs.getattr(b).unwrap().mtime,
        mtime,
        "a dedupe changes nothing seen"
    );
    for (ino, fh) in [(a, fa), (b, fb), (c, fc)] {
        fs.release(ino, fh).unwrap();
    }
    settle(&store);
    assert!(
        used(&store) + (3 << 19) < before,
        "the duplicate's blocks were freed: {before} → {}",
        used(&store)
    );
    assert_eq!(read_file(&fs, "b").unwrap(), data);
    assert_eq!(read_file(&fs, "c").unwrap(), other);
    assert_eq!(blocks(&fs, a), blocks(&fs, b));
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn fsck_finds_a_clone_table_that_miscounts() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    let fs = kit.mount_dataset(&dev, None);
    put_file(&fs, "a", &aegis_testkit::noise(512 << 10, 7));
    let b = copy(&fs, "a", "b");
    fs.sync().unwrap();
    let (_, device, offset) = blocks(&fs, b)[1];
    fs.unmount().unwrap();
    kit.fsck_clean(dev.clone());
    for (extra, found) in [(None, "2 references found"), (Some(2), "accounts for 3")] {
        let damaged = Arc::new(dev.snapshot());
        let store = kit.open_store(damaged.clone());
        store
            .set_clone_entry_for_test(device, offset, extra)
            .unwrap();
        let r = aegis_fs::fsck::fsck(&store, false, &mut |_, _| {}).unwrap();
        let all = format!("{:?}", r.errors);
        assert!(all.contains(found), "{extra:?}: {all}");
        store.shutdown().unwrap();
    }
    // An entry for a block no file names.
    let damaged = Arc::new(dev.snapshot());
    let store = kit.open_store(damaged.clone());
    store
        .set_clone_entry_for_test(device, offset + (64 << 20), Some(1))
        .unwrap();
    let r = aegis_fs::fsck::fsck(&store, false, &mut |_, _| {}).unwrap();
    assert!(
        format!("{:?}", r.errors).contains("which no file holds"),
        "{:?}",
        r.errors
    );
    store.shutdown().unwrap();
}

/// Each name of the root dataset's root directory and a hash of its
/// contents, read from the committed trees.
fn files_of(store: &Arc<Store>) -> Vec<(String, String)> {
    use aegis_fs::ObjectRead;
    store
        .view(ROOT_DATASET, |v| {
            let mut out = Vec::new();
            for name in ["a", "b", "c"] {
                let Some(f) = v.find_entry(ROOT_INO, name.as_bytes())? else {
                    continue;
                };
                let r = v.inode(f.ino)?;
                let data = v.read_file(f.ino, &r, RS, 0, r.size as u32)?;
                out.push((
                    name.to_string(),
                    blake3::hash(&data).to_hex()[..16].to_string(),
                ));
            }
            Ok::<_, aegis_fs::FsError>(out)
        })
        .unwrap()
}

/// A copy, a write into it and the deletes of its source and of itself
/// are each all or nothing: a power cut at any point of a recorded run
/// leaves the files of the last finished step or a later one, and fsck
/// (whose reference check counts every shared block) clean.
#[test]
fn reflinks_survive_every_crash_point() {
    use aegis_block::RecordingDevice;
    let kit = Kit::default();
    let rec = Arc::new(RecordingDevice::new(kit.fresh().snapshot()));
    let fs = kit.mount(rec.clone() as DeviceRef).unwrap();
    let store = fs.store().clone();
    let mut states = vec![(rec.len(), files_of(&store))];
    put_file(&fs, "a", &aegis_testkit::noise(3 * RS as usize + 500, 8));
    fs.sync().unwrap();
    states.push((rec.len(), files_of(&store)));
    let steps: [&dyn Fn(&DiskFs); 5] = [
        &|fs| {
            copy(fs, "a", "b");
        },
        &|fs| {
            copy(fs, "b", "c");
        },
        &|fs| {
            let b = fs.lookup(ROOT_INO, OsStr::new("b")).unwrap().ino;
            let fh = fs.open(b, libc::O_RDWR).unwrap();
            fs.write(b, fh, RS + 1, b"mine").unwrap();
            fs.release(b, fh).unwrap();
        },
        &|fs| unlink(fs, "a"),
        &|fs| unlink(fs, "c"),
    ];
    for step in steps {
        step(&fs);
        fs.sync().unwrap();
        states.push((rec.len(), files_of(&store)));
    }
    fs.unmount().unwrap();
    kit.check_crash_states(&rec, 5, &states, files_of);
}
