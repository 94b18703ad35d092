//! Several filesystems in one pool: datasets made, mounted one at a time,
//! renamed and destroyed through the store, each with its own files, and
//! a destroy that gives back every block the dataset held. Every test
//! ends with fsck on the image.

use std::sync::Arc;

use aegis_block::{DeviceRef, MemDevice};
use aegis_diskfs::{DiskFs, FormatOptions, MountOptions};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_testkit::{put_file, Kit};
use aegis_vfs::{FileSystem, FsError as VfsError, ROOT_INO};

fn names(fs: &DiskFs) -> Vec<String> {
    let fh = fs.opendir(ROOT_INO, libc::O_RDONLY).unwrap();
    let entries = fs.readdir(ROOT_INO, fh, 0, 1000).unwrap();
    fs.releasedir(ROOT_INO, fh).unwrap();
    let mut v: Vec<String> = entries
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    v.sort();
    v
}

/// Make datasets `a` and `b` on a fresh pool (through a store with
/// nothing mounted, as the CLI does) and return their ids.
fn make_two(kit: &Kit, dev: &Arc<MemDevice>) -> (u64, u64) {
    let store = kit.open_store(dev.clone());
    let fmt = FormatOptions::default();
    let a = aegis_diskfs::create_dataset(&store, "a", &fmt).unwrap();
    let b = aegis_diskfs::create_dataset(&store, "b", &fmt).unwrap();
    store.shutdown().unwrap();
    (a, b)
}

#[test]
fn datasets_hold_their_own_files_across_remounts() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let (a, b) = make_two(&kit, &dev);
    assert!(ROOT_DATASET < a && a < b, "ids grow: {a} {b}");
    for (name, file) in [(None, "in-root"), (Some("a"), "in-a"), (Some("b"), "in-b")] {
        let fs = kit.mount_dataset(&dev, name);
        put_file(&fs, file, &aegis_testkit::noise(300_000, 1));
        fs.unmount().unwrap();
    }
    for (name, file) in [(None, "in-root"), (Some("a"), "in-a"), (Some("b"), "in-b")] {
        let fs = kit.mount_dataset(&dev, name);
        assert_eq!(names(&fs), vec![file.to_string()], "dataset {name:?}");
        fs.unmount().unwrap();
    }
    let store = kit.open_store(dev.clone());
    let listed: Vec<(u64, String)> = store
        .datasets()
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect();
    assert_eq!(
        listed,
        vec![
            (ROOT_DATASET, "root".to_string()),
            (a, "a".to_string()),
            (b, "b".to_string())
        ]
    );
    store.shutdown().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn bad_names_and_missing_datasets_are_refused_and_change_nothing() {
    let kit = Kit::default();
    let dev = kit.fresh();
    make_two(&kit, &dev);
    let store = kit.open_store(dev.clone());
    let txg = store.last_uberblock().unwrap().txg;
    let fmt = FormatOptions::default();
    let long = "x".repeat(256);
    for bad in ["", "a", "x/y", "x@y", ".", "..", "tab\there", long.as_str()] {
        let e = aegis_diskfs::create_dataset(&store, bad, &fmt).unwrap_err();
        assert!(!e.to_string().is_empty(), "{bad:?}");
    }
    assert!(
        store.rename_dataset("a", "b").is_err(),
        "onto an existing name"
    );
    assert!(
        store.rename_dataset("root", "top").is_err(),
        "the root keeps its name"
    );
    assert!(
        store.rename_dataset("nope", "c").is_err(),
        "no such dataset"
    );
    assert!(store.rename_dataset("a", "c/d").is_err(), "a bad new name");
    assert!(store.destroy_dataset("root").is_err());
    assert!(store.destroy_dataset("nope").is_err());
    assert_eq!(
        store.last_uberblock().unwrap().txg,
        txg,
        "nothing committed"
    );
    assert_eq!(store.datasets().len(), 3);
    store.shutdown().unwrap();
    // A mount of a dataset that does not exist says so.
    let opts = MountOptions {
        dataset_name: Some("nope".into()),
        ..kit.mount_opts()
    };
    let e = aegis_diskfs::open(vec![dev.clone() as DeviceRef], &opts)
        .err()
        .map(VfsError::from);
    assert!(e.is_some(), "a mount of a missing dataset fails");
    kit.fsck_clean(dev);
}

#[test]
fn rename_keeps_the_files_and_destroy_gives_every_block_back() {
    let kit = Kit::default().size(256 << 20);
    let dev = kit.fresh();
    let before = kit.used_bytes(dev.clone());
    make_two(&kit, &dev);
    let fs = kit.mount_dataset(&dev, Some("a"));
    for i in 0..40 {
        put_file(&fs, &format!("f{i}"), &aegis_testkit::noise(200_000, i));
    }
    fs.unmount().unwrap();
    let store = kit.open_store(dev.clone());
    // 40 files of 200,000 incompressible bytes: 8 MB of blocks (whole
    // 4 KiB blocks per record), then the tree and the log ring.
    let ring = store
        .dataset_used_bytes(store.dataset_id("b").unwrap())
        .unwrap();
    let used = store
        .dataset_used_bytes(store.dataset_id("a").unwrap())
        .unwrap();
    assert!(
        used >= ring + 40 * 200_000 && used < ring + 40 * 200_000 + (2 << 20),
        "dataset a uses {used} bytes; an empty one {ring}"
    );
    store.rename_dataset("a", "renamed").unwrap();
    store.shutdown().unwrap();
    let fs = kit.mount_dataset(&dev, Some("renamed"));
    assert_eq!(names(&fs).len(), 40);
    fs.unmount().unwrap();
    let store = kit.open_store(dev.clone());
    store.destroy_dataset("renamed").unwrap();
    store.destroy_dataset("b").unwrap();
    // The frees wait out their deferral; a few commits bring them back.
    for _ in 0..4 {
        store.commit().unwrap();
    }
    let after = store.space().total - store.space().free;
    // 8 MB of data and two trees went; what stays is the pool's own
    // metadata grown by the work (its space map), and fsck below checks
    // that what is allocated is exactly what is reachable.
    assert!(
        after.abs_diff(before) < 256 << 10,
        "every block of the destroyed datasets is free: {before} before, {after} after"
    );
    assert_eq!(store.datasets().len(), 1);
    store.shutdown().unwrap();
    kit.fsck_clean(dev);
}

/// One change of a recorded run.
type Step<'a> = dyn Fn(&Arc<aegis_fs::Store>) + 'a;

/// The dataset names of a pool, in id order.
fn dataset_names(store: &aegis_fs::Store) -> Vec<String> {
    store.datasets().into_iter().map(|d| d.name).collect()
}

/// Create, rename and destroy are each all or nothing: a power cut at
/// any point of a recorded run leaves the pool at the last finished
/// change or a later one, and fsck clean.
#[test]
fn dataset_changes_survive_every_crash_point() {
    use aegis_block::RecordingDevice;
    let kit = Kit::default();
    let rec = Arc::new(RecordingDevice::new(kit.fresh().snapshot()));
    let store = kit.open_store(rec.clone() as DeviceRef);
    let fmt = FormatOptions::default();
    let mut states = vec![(rec.len(), dataset_names(&store))];
    let create = |s: &Arc<aegis_fs::Store>, name: &str| {
        aegis_diskfs::create_dataset(s, name, &fmt).unwrap();
    };
    let steps: [&Step<'_>; 5] = [
        &|s| create(s, "a"),
        &|s| create(s, "b"),
        &|s| s.rename_dataset("a", "c").unwrap(),
        &|s| s.destroy_dataset("b").unwrap(),
        &|s| s.destroy_dataset("c").unwrap(),
    ];
    for step in steps {
        step(&store);
        states.push((rec.len(), dataset_names(&store)));
    }
    store.shutdown().unwrap();
    kit.check_crash_states(&rec, 1, &states, |s| dataset_names(s));
}

/// Make datasets `a` and `b`, and run `f` on a new file in `a`, which is
/// then closed and unmounted.
fn with_file_in_a<R>(
    kit: &Kit,
    dev: &Arc<MemDevice>,
    f: impl FnOnce(&DiskFs, aegis_vfs::Ino, aegis_vfs::Fh) -> R,
) -> R {
    make_two(kit, dev);
    let fs = kit.mount_dataset(dev, Some("a"));
    let (ino, fh) = aegis_testkit::create_file(&fs, "f");
    let r = f(&fs, ino, fh);
    fs.release(ino, fh).unwrap();
    fs.unmount().unwrap();
    r
}

/// A destroyed dataset's fallocate reservations go with it: the pool's
/// reserved bytes and free space come back.
#[test]
fn destroy_releases_the_datasets_reservations() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    with_file_in_a(&kit, &dev, |fs, ino, fh| {
        fs.fallocate(ino, fh, 0, 8 << 20, 0).unwrap()
    });
    let store = kit.open_store(dev.clone());
    assert!(store.reserved_bytes() >= 8 << 20);
    store.destroy_dataset("a").unwrap();
    assert_eq!(store.reserved_bytes(), 0, "the reservation went with it");
    store.shutdown().unwrap();
    let store = kit.open_store(dev.clone());
    assert_eq!(store.reserved_bytes(), 0, "and stays gone after a reopen");
    store.shutdown().unwrap();
    kit.fsck_clean(dev);
}

/// Deletes work on a full pool (DESIGN's rule, ZFS and btrfs users' worst
/// case): a dataset that filled the pool can still be destroyed, and the
/// space comes back.
#[test]
fn a_dataset_that_filled_the_pool_can_be_destroyed() {
    let kit = Kit::default().size(64 << 20);
    let dev = kit.fresh();
    let off = with_file_in_a(&kit, &dev, |fs, ino, fh| {
        let chunk = aegis_testkit::noise(1 << 20, 3);
        let mut off = 0;
        while fs.write(ino, fh, off, &chunk).is_ok() {
            off += chunk.len() as u64;
        }
        off
    });
    assert!(off > 0, "something was written before the pool filled");
    let store = kit.open_store(dev.clone());
    let full = store.space().free;
    store.destroy_dataset("a").unwrap();
    for _ in 0..4 {
        store.commit().unwrap();
    }
    assert!(
        store.space().free >= full + off,
        "the filler's {off} bytes are free again"
    );
    store.shutdown().unwrap();
    kit.fsck_clean(dev);
}
