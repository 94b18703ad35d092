//! Writable clones and rollback through the store: a clone starts with
//! its origin's files and goes its own way; its origin cannot be deleted
//! under it; destroying it gives back only what it wrote. A rollback
//! brings the dataset back to its newest snapshot, discarding what came
//! after (a log a crash left included). Every test ends with fsck.

use std::ffi::OsStr;

use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::Store;
use aegis_testkit::{put_file, read_file, Kit};
use aegis_vfs::{FileSystem, ROOT_INO};

fn used(store: &Store) -> u64 {
    let s = store.space();
    s.total - s.free
}

fn settle(store: &Store) {
    for _ in 0..4 {
        store.commit().unwrap();
    }
}

#[test]
fn a_clone_shares_its_origin_and_goes_its_own_way() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    let fs = kit.mount_dataset(&dev, None);
    for i in 0..10 {
        put_file(&fs, &format!("f{i}"), &aegis_testkit::noise(300_000, i));
    }
    fs.unmount().unwrap();
    let store = kit.open_store(dev.clone());
    store.create_snapshot(ROOT_DATASET, "s").unwrap();
    settle(&store);
    let before = used(&store);
    let c = store.clone_snapshot(ROOT_DATASET, "s", "c").unwrap();
    assert!(
        used(&store) - before < 256 << 10,
        "a clone copies no data: {before} → {}",
        used(&store)
    );
    let e = store
        .delete_snapshot(ROOT_DATASET, "s", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("clone"), "the origin of a clone stays: {e}");
    assert!(
        store.clone_snapshot(ROOT_DATASET, "s", "c").is_err(),
        "name taken"
    );
    assert!(store.clone_snapshot(ROOT_DATASET, "nope", "d").is_err());
    store.shutdown().unwrap();
    kit.fsck_clean(dev.clone());

    let fs = kit.mount_dataset(&dev, Some("c"));
    assert_eq!(
        read_file(&fs, "f3").unwrap(),
        aegis_testkit::noise(300_000, 3)
    );
    fs.unlink(ROOT_INO, OsStr::new("f0")).unwrap();
    put_file(&fs, "mine", &aegis_testkit::noise(500_000, 77));
    fs.unmount().unwrap();
    let fs = kit.mount_dataset(&dev, None);
    assert!(read_file(&fs, "f0").is_some(), "the origin keeps its files");
    assert!(read_file(&fs, "mine").is_none());
    fs.unlink(ROOT_INO, OsStr::new("f1")).unwrap();
    fs.unmount().unwrap();
    let fs = kit.mount_dataset(&dev, Some("c"));
    assert!(
        read_file(&fs, "f1").is_some(),
        "the clone keeps what the origin lost"
    );
    assert_eq!(
        read_file(&fs, "mine").unwrap(),
        aegis_testkit::noise(500_000, 77)
    );
    fs.unmount().unwrap();
    kit.fsck_clean(dev.clone());

    let store = kit.open_store(dev.clone());
    assert_eq!(store.dataset_id("c").unwrap(), c);
    store.destroy_dataset("c").unwrap();
    settle(&store);
    store
        .delete_snapshot(ROOT_DATASET, "s", &mut |_| {})
        .unwrap();
    settle(&store);
    // Nine files of the origin stay; f1's 300 KB and all the clone wrote
    // (its 500 KB file, its log ring) are free. The pool's own metadata
    // grew by the work meanwhile; fsck below checks allocated against
    // reachable exactly.
    let after = used(&store);
    assert!(
        after < before - 100_000 && after > before - 600_000,
        "the clone's writes and f1 went: {before} → {after}"
    );
    store.shutdown().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn rollback_discards_everything_after_the_snapshot() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    let fs = kit.mount_dataset(&dev, None);
    put_file(&fs, "kept", &aegis_testkit::noise(200_000, 1));
    fs.unmount().unwrap();
    let store = kit.open_store(dev.clone());
    store.create_snapshot(ROOT_DATASET, "old").unwrap();
    store.create_snapshot(ROOT_DATASET, "s").unwrap();
    settle(&store);
    let before = used(&store);
    store.shutdown().unwrap();
    // Changes after the snapshot: committed ones, and an fsynced one only
    // the intent log holds when the pool stops as in a crash.
    let fs = kit.mount_dataset(&dev, None);
    put_file(&fs, "later", &aegis_testkit::noise(1 << 20, 2));
    fs.unlink(ROOT_INO, OsStr::new("kept")).unwrap();
    fs.sync().unwrap();
    let ino = put_file(&fs, "logged", b"fsynced after the snapshot");
    let fh = fs.open(ino, libc::O_RDWR).unwrap();
    fs.fsync(ino, fh, false).unwrap();
    fs.store().halt();
    drop(fs);
    let store = kit.open_store(dev.clone());
    let e = store.rollback(ROOT_DATASET, "old").unwrap_err().to_string();
    assert!(e.contains("newest"), "{e}");
    store.rollback(ROOT_DATASET, "s").unwrap();
    settle(&store);
    assert!(
        used(&store).abs_diff(before) < 256 << 10,
        "the 1 MiB written after the snapshot is free: {before} → {}",
        used(&store)
    );
    store.shutdown().unwrap();
    kit.fsck_clean(dev.clone());
    let fs = kit.mount_dataset(&dev, None);
    assert_eq!(
        read_file(&fs, "kept").unwrap(),
        aegis_testkit::noise(200_000, 1)
    );
    assert!(read_file(&fs, "later").is_none());
    assert!(
        read_file(&fs, "logged").is_none(),
        "the log of after is not replayed"
    );
    put_file(&fs, "again", b"the dataset goes on");
    fs.unmount().unwrap();
    let fs = kit.mount_dataset(&dev, None);
    assert_eq!(read_file(&fs, "again").unwrap(), b"the dataset goes on");
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}
