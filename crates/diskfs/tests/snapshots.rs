//! Snapshots through the store and read-only mounts of them: a snapshot
//! keeps exactly what its dataset held when it was taken, whatever the
//! dataset does after; deleting snapshots (newest, middle, oldest) gives
//! back exactly the blocks only they held; every change is all or nothing
//! at every crash point. Every test ends with fsck on the image.

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::{DeviceRef, MemDevice};
use aegis_diskfs::{DiskFs, MountOptions};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::Store;
use aegis_testkit::Kit;
use aegis_vfs::{FileSystem, FsError as VfsError, Request, ROOT_INO};

type Files = Vec<(String, Vec<u8>)>;

fn mount_snapshot(kit: &Kit, dev: &Arc<MemDevice>, snap: &str) -> Arc<DiskFs> {
    let opts = MountOptions {
        snapshot_name: Some(snap.to_string()),
        ..kit.mount_opts()
    };
    aegis_diskfs::open(vec![dev.clone() as DeviceRef], &opts).unwrap()
}

fn put(fs: &DiskFs, name: &str, data: &[u8]) {
    let ino = match fs.lookup(ROOT_INO, OsStr::new(name)) {
        Ok(a) => a.ino,
        Err(_) => {
            let (ino, fh) = aegis_testkit::create_file(fs, name);
            fs.release(ino, fh).unwrap();
            ino
        }
    };
    let fh = fs.open(ino, libc::O_RDWR | libc::O_TRUNC).unwrap();
    fs.write(ino, fh, 0, data).unwrap();
    fs.release(ino, fh).unwrap();
}

/// Every file of the root directory with its contents, sorted.
fn files(fs: &DiskFs) -> Files {
    let fh = fs.opendir(ROOT_INO, libc::O_RDONLY).unwrap();
    let entries = fs.readdir(ROOT_INO, fh, 0, 10_000).unwrap();
    fs.releasedir(ROOT_INO, fh).unwrap();
    let mut out: Files = Vec::new();
    for e in entries {
        let name = String::from_utf8_lossy(&e.name).into_owned();
        if name == "." || name == ".." {
            continue;
        }
        let a = fs.lookup(ROOT_INO, OsStr::new(&name)).unwrap();
        let fh = fs.open(a.ino, libc::O_RDONLY).unwrap();
        let data = fs.read(a.ino, fh, 0, a.size as u32 + 1).unwrap();
        fs.release(a.ino, fh).unwrap();
        out.push((name, data));
    }
    out.sort();
    out
}

fn used(store: &Store) -> u64 {
    let s = store.space();
    s.total - s.free
}

/// Mount the root dataset, run `f`, unmount.
fn in_root(kit: &Kit, dev: &Arc<MemDevice>, f: impl FnOnce(&DiskFs)) {
    let fs = kit.mount(dev.clone()).unwrap();
    f(&fs);
    fs.unmount().unwrap();
}

fn snapshot(kit: &Kit, dev: &Arc<MemDevice>, name: &str) {
    let store = kit.open_store(dev.clone());
    store.create_snapshot(ROOT_DATASET, name).unwrap();
    store.shutdown().unwrap();
}

#[test]
fn a_snapshot_keeps_what_the_dataset_held_and_refuses_changes() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    in_root(&kit, &dev, |fs| {
        for i in 0..20 {
            put(
                fs,
                &format!("f{i}"),
                &aegis_testkit::noise(100_000 + i, i as u64),
            );
        }
    });
    let mut model = files(&kit.mount(dev.clone()).unwrap());
    snapshot(&kit, &dev, "one");
    let first = model.clone();
    in_root(&kit, &dev, |fs| {
        put(fs, "f0", b"rewritten");
        fs.unlink(ROOT_INO, OsStr::new("f1")).unwrap();
        put(fs, "new", &aegis_testkit::noise(300_000, 99));
        model = files(fs);
    });
    snapshot(&kit, &dev, "two");
    in_root(&kit, &dev, |fs| {
        for i in 2..10 {
            fs.unlink(ROOT_INO, OsStr::new(&format!("f{i}"))).unwrap();
        }
        put(fs, "new", b"short");
    });
    let second = model.clone();
    for (snap, want) in [("one", &first), ("two", &second)] {
        let fs = mount_snapshot(&kit, &dev, snap);
        assert_eq!(&files(&fs), want, "snapshot {snap}");
        let e = fs
            .create(
                &Request::root(),
                ROOT_INO,
                OsStr::new("x"),
                0o644,
                libc::O_RDWR,
            )
            .err();
        assert_eq!(e, Some(VfsError::ReadOnly), "a snapshot takes no change");
        fs.unmount().unwrap();
    }
    let store = kit.open_store(dev.clone());
    let list: Vec<String> = store
        .snapshots(ROOT_DATASET)
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(list, ["one", "two"]);
    store.shutdown().unwrap();
    kit.fsck_clean(dev);
}

/// Snapshots hold the blocks their dataset dropped; deleting them, in any
/// order, gives back exactly those, and the others keep their contents.
#[test]
fn deleting_snapshots_frees_exactly_what_only_they_held() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    let base = kit.used_bytes(dev.clone());
    let mut want = Vec::new();
    for round in 0..3u64 {
        in_root(&kit, &dev, |fs| {
            for i in 0..8 {
                put(
                    fs,
                    &format!("r{round}-{i}"),
                    &aegis_testkit::noise(500_000, round * 10 + i),
                );
            }
            if round > 0 {
                for i in 0..8 {
                    fs.unlink(ROOT_INO, OsStr::new(&format!("r{}-{i}", round - 1)))
                        .unwrap();
                }
            }
            want.push(files(fs));
        });
        snapshot(&kit, &dev, &format!("s{round}"));
    }
    in_root(&kit, &dev, |fs| {
        for i in 0..8 {
            fs.unlink(ROOT_INO, OsStr::new(&format!("r2-{i}"))).unwrap();
        }
    });
    kit.fsck_clean(dev.clone());
    let store = kit.open_store(dev.clone());
    let held = used(&store) - base;
    assert!(
        held >= 3 * 8 * 500_000,
        "the snapshots hold their files: {held}"
    );
    let s1 = store.snapshot_id(ROOT_DATASET, "s1").unwrap();
    let unique = store.snapshot_unique_bytes(s1).unwrap();
    assert!(
        (8 * 500_000..8 * 600_000).contains(&unique),
        "s1 alone holds round 1's files: {unique}"
    );
    // The middle one first: s0 and s2 keep theirs.
    store
        .delete_snapshot(ROOT_DATASET, "s1", &mut |_| {})
        .unwrap();
    store.shutdown().unwrap();
    kit.fsck_clean(dev.clone());
    for (snap, i) in [("s0", 0), ("s2", 2)] {
        let fs = mount_snapshot(&kit, &dev, snap);
        assert_eq!(files(&fs), want[i], "{snap} after s1 went");
        fs.unmount().unwrap();
    }
    let store = kit.open_store(dev.clone());
    store
        .delete_snapshot(ROOT_DATASET, "s2", &mut |_| {})
        .unwrap();
    kit_settle(&store);
    store
        .delete_snapshot(ROOT_DATASET, "s0", &mut |_| {})
        .unwrap();
    kit_settle(&store);
    let after = used(&store);
    assert!(
        after.abs_diff(base) < 512 << 10,
        "every snapshot block is free again: {base} before, {after} after"
    );
    assert!(store.snapshots(ROOT_DATASET).is_empty());
    store.shutdown().unwrap();
    kit.fsck_clean(dev);
}

/// Deferred frees come back after a few commits.
fn kit_settle(store: &Store) {
    for _ in 0..4 {
        store.commit().unwrap();
    }
}

#[test]
fn bad_snapshot_requests_are_refused_and_change_nothing() {
    let kit = Kit::default();
    let dev = kit.fresh();
    snapshot(&kit, &dev, "s");
    let store = kit.open_store(dev.clone());
    let txg = store.last_uberblock().unwrap().txg;
    let long = "x".repeat(256);
    for bad in ["", "s", "a/b", "a@b", ".", "..", "nl\n", long.as_str()] {
        let e = store.create_snapshot(ROOT_DATASET, bad).unwrap_err();
        assert!(!e.to_string().is_empty(), "{bad:?}");
    }
    assert!(store.create_snapshot(999, "x").is_err(), "no such dataset");
    assert!(store
        .delete_snapshot(ROOT_DATASET, "nope", &mut |_| {})
        .is_err());
    assert_eq!(
        store.last_uberblock().unwrap().txg,
        txg,
        "nothing committed"
    );
    // A dataset with snapshots is not destroyed under them.
    let fmt = aegis_diskfs::FormatOptions::default();
    let a = aegis_diskfs::create_dataset(&store, "a", &fmt).unwrap();
    store.create_snapshot(a, "s").unwrap();
    let e = store.destroy_dataset("a").unwrap_err().to_string();
    assert!(e.contains("snapshot"), "{e}");
    store.delete_snapshot(a, "s", &mut |_| {}).unwrap();
    store.destroy_dataset("a").unwrap();
    store.shutdown().unwrap();
    // A mount of a missing snapshot says so.
    let opts = MountOptions {
        snapshot_name: Some("nope".into()),
        ..kit.mount_opts()
    };
    assert!(aegis_diskfs::open(vec![dev.clone() as DeviceRef], &opts).is_err());
    kit.fsck_clean(dev);
}

/// Snapshot create and delete (in batches), the writes between them
/// that put blocks on dead lists, a clone, its destroy and a rollback
/// are each all or nothing: a power cut at any
/// point leaves the pool at the last finished change or a later one, and
/// fsck clean.
#[test]
fn snapshot_changes_survive_every_crash_point() {
    use aegis_block::RecordingDevice;
    let kit = Kit::default();
    let rec = Arc::new(RecordingDevice::new(kit.fresh().snapshot()));
    let store = kit.open_store(rec.clone() as DeviceRef);
    // Small batches: the delete crosses several commits to crash between.
    store.set_delete_batch(3);
    let fs = DiskFs::open(store.clone(), kit.mount_opts().fs).unwrap();
    // What a crash state must show: the usable snapshots, the datasets,
    // and how many items the root dataset's tree holds (a rollback
    // changes it).
    let state = |s: &Store| {
        let snaps: Vec<String> = s
            .snapshots(ROOT_DATASET)
            .into_iter()
            .filter(|x| !x.deleting)
            .map(|x| x.name)
            .collect();
        let datasets: Vec<String> = s.datasets().into_iter().map(|d| d.name).collect();
        let items = s.read_tree(ROOT_DATASET, |t| Ok(t.len())).unwrap();
        (snaps, datasets, items)
    };
    let mut states = vec![(rec.len(), state(&store))];
    type Step<'a> = dyn Fn(&Arc<Store>, &DiskFs) + 'a;
    let write = |fs: &DiskFs, seed: u64| {
        put(fs, "a", &aegis_testkit::noise(200_000, seed));
        put(fs, &format!("b{seed}"), &aegis_testkit::noise(50_000, seed));
        fs.sync().unwrap();
    };
    let steps: [&Step<'_>; 8] = [
        &|_, fs| write(fs, 1),
        &|s, _| {
            s.create_snapshot(ROOT_DATASET, "x").unwrap();
        },
        &|_, fs| write(fs, 2),
        &|s, _| {
            s.create_snapshot(ROOT_DATASET, "y").unwrap();
        },
        &|_, fs| write(fs, 3),
        &|s, _| s.delete_snapshot(ROOT_DATASET, "x", &mut |_| {}).unwrap(),
        &|s, _| {
            s.clone_snapshot(ROOT_DATASET, "y", "c").unwrap();
        },
        &|s, _| s.destroy_dataset("c").unwrap(),
    ];
    for step in steps {
        step(&store, &fs);
        states.push((rec.len(), state(&store)));
    }
    fs.unmount().unwrap();
    // A rollback needs the dataset unmounted.
    let store = kit.open_store(rec.clone() as DeviceRef);
    store.rollback(ROOT_DATASET, "y").unwrap();
    states.push((rec.len(), state(&store)));
    store.shutdown().unwrap();
    assert_ne!(
        states[states.len() - 2].1 .2,
        states[states.len() - 1].1 .2,
        "the rollback changed the tree"
    );
    kit.check_crash_states(&rec, 3, &states, |s| {
        // A delete cut short finishes when asked (a mount does).
        s.resume_snapshot_deletes(&mut |_| {}).unwrap();
        state(s)
    });
}

/// On a mounted pool a delete goes on in the background, a batch per
/// round of the sync thread, while the dataset keeps taking writes; the
/// space comes back and fsck is clean.
#[test]
fn a_mounted_pool_finishes_a_delete_in_the_background() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    let base = kit.used_bytes(dev.clone());
    in_root(&kit, &dev, |fs| {
        for i in 0..30 {
            put(fs, &format!("f{i}"), &aegis_testkit::noise(200_000, i));
        }
    });
    snapshot(&kit, &dev, "old");
    in_root(&kit, &dev, |fs| {
        for i in 0..30 {
            fs.unlink(ROOT_INO, OsStr::new(&format!("f{i}"))).unwrap();
        }
    });
    let opts = MountOptions {
        sync_thread: true,
        ..kit.mount_opts()
    };
    let fs = aegis_diskfs::open(vec![dev.clone() as DeviceRef], &opts).unwrap();
    let store = fs.store().clone();
    assert!(
        used(&store) - base >= 30 * 200_000,
        "the snapshot holds the files"
    );
    store.set_delete_batch(4);
    store.begin_snapshot_delete(ROOT_DATASET, "old").unwrap();
    assert!(store.snapshots(ROOT_DATASET).iter().all(|s| s.deleting));
    let start = std::time::Instant::now();
    let mut i = 0;
    while store.deletes_pending() {
        assert!(start.elapsed().as_secs() < 60, "the delete does not finish");
        put(
            &fs,
            &format!("new{}", i % 5),
            &aegis_testkit::noise(20_000, i),
        );
        i += 1;
    }
    assert!(store.snapshots(ROOT_DATASET).is_empty());
    kit_settle(&store);
    // What stays: five 20 KB files and the pool's own metadata grown by
    // the work.
    let after = used(&store);
    assert!(
        after - base < 768 << 10,
        "the snapshot's 6 MB came back: {base} at first, {after} after"
    );
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}
