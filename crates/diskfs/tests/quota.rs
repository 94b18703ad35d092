//! Quotas through the `FileSystem` trait: a user's, a group's and the
//! dataset's bytes and inodes are counted exactly, a change that would
//! pass a limit fails with EDQUOT and changes nothing, deletes and
//! truncates always pass, and usage stays exact across commits, crashes
//! and log replays, snapshots and rollbacks (fsck recomputes it from the
//! inodes). Every test ends with fsck.

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::{DeviceRef, MemDevice};
use aegis_diskfs::DiskFs;
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::posix::quota::{QuotaEntry, QuotaId};
use aegis_testkit::Kit;
use aegis_vfs::{FileSystem, FsError as VfsError, Ino, Request, SetAttr, ROOT_INO};

const USER: u32 = 1000;
const GROUP: u32 = 100;

fn user() -> Request {
    Request {
        uid: USER,
        gid: GROUP,
        ..Default::default()
    }
}

/// A world-writable root, so the test user can create files in it.
fn open_root(fs: &DiskFs) {
    let set = SetAttr {
        mode: Some(0o1777),
        ..Default::default()
    };
    fs.setattr(&Request::root(), ROOT_INO, &set, None).unwrap();
}

fn create(fs: &DiskFs, name: &str) -> aegis_vfs::Result<Ino> {
    let (a, fh) = fs.create(&user(), ROOT_INO, OsStr::new(name), 0o644, libc::O_RDWR)?;
    fs.release(a.ino, fh).unwrap();
    // No kernel holds the entry: an unlink frees the inode at once.
    fs.forget(a.ino, 1);
    Ok(a.ino)
}

fn write(fs: &DiskFs, ino: Ino, offset: u64, len: usize, seed: u64) -> aegis_vfs::Result<u32> {
    let fh = fs.open(ino, libc::O_RDWR).unwrap();
    let r = fs.write(ino, fh, offset, &aegis_testkit::noise(len, seed));
    fs.release(ino, fh).unwrap();
    r
}

fn quota(fs: &DiskFs, q: QuotaId) -> QuotaEntry {
    fs.store()
        .quotas(ROOT_DATASET)
        .unwrap()
        .into_iter()
        .find(|(id, _)| *id == q)
        .map(|(_, e)| e)
        .unwrap_or_default()
}

fn mounted(kit: &Kit, dev: &Arc<MemDevice>) -> Arc<DiskFs> {
    kit.mount(dev.clone() as DeviceRef).unwrap()
}

/// A fresh pool of `size` bytes mounted, its root open to all, and a
/// quota of `bytes` and `inodes` on the test user.
fn with_user_quota(size: u64, bytes: u64, inodes: u64) -> (Kit, Arc<MemDevice>, Arc<DiskFs>) {
    let kit = Kit::default().size(size);
    let dev = kit.fresh();
    let fs = mounted(&kit, &dev);
    open_root(&fs);
    fs.store()
        .set_quota(ROOT_DATASET, QuotaId::user(USER), bytes, inodes)
        .unwrap();
    (kit, dev, fs)
}

#[test]
fn a_user_is_refused_past_the_limit_and_may_always_free() {
    let (kit, dev, fs) = with_user_quota(128 << 20, 1 << 20, 0);
    let store = fs.store().clone();
    let a = create(&fs, "a").unwrap();
    assert_eq!(
        write(&fs, a, 0, 1 << 20, 1).unwrap(),
        1 << 20,
        "up to the limit"
    );
    let used = quota(&fs, QuotaId::user(USER));
    assert_eq!(used.used_bytes, 1 << 20);
    assert_eq!(used.used_inodes, 1);
    let e = write(&fs, a, 1 << 20, 4096, 2).unwrap_err();
    assert!(matches!(e, VfsError::QuotaExceeded), "{e:?}");
    assert_eq!(e.errno(), libc::EDQUOT);
    assert_eq!(
        fs.getattr(a).unwrap().size,
        1 << 20,
        "the refused write changed nothing"
    );
    // Root's files are not the user's.
    let (r, fh) = fs
        .create(
            &Request::root(),
            ROOT_INO,
            OsStr::new("root"),
            0o644,
            libc::O_RDWR,
        )
        .unwrap();
    let r = r.ino;
    fs.write(r, fh, 0, &aegis_testkit::noise(300_000, 9))
        .unwrap();
    fs.release(r, fh).unwrap();
    // A truncate frees, so it passes; then there is room again.
    let half = SetAttr {
        size: Some(512 << 10),
        ..Default::default()
    };
    fs.setattr(&user(), a, &half, None).unwrap();
    assert_eq!(write(&fs, a, 512 << 10, 4096, 3).unwrap(), 4096);
    // Commits settle estimates into blocks; usage follows exactly.
    store.commit().unwrap();
    let now = quota(&fs, QuotaId::user(USER));
    assert_eq!(now.used_bytes, fs.getattr(a).unwrap().blocks * 512);
    // Giving a file to a user over the limit is refused too.
    let give = SetAttr {
        uid: Some(USER),
        ..Default::default()
    };
    store
        .set_quota(ROOT_DATASET, QuotaId::user(USER), 600 << 10, 0)
        .unwrap();
    let e = fs.setattr(&Request::root(), r, &give, None).unwrap_err();
    assert!(matches!(e, VfsError::QuotaExceeded), "{e:?}");
    // A delete always passes.
    fs.unlink(ROOT_INO, OsStr::new("a")).unwrap();
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn inode_group_and_dataset_limits_count_what_they_name() {
    let (kit, dev, fs) = with_user_quota(128 << 20, 0, 3);
    let store = fs.store().clone();
    for n in ["a", "b", "c"] {
        create(&fs, n).unwrap();
    }
    let e = create(&fs, "d").unwrap_err();
    assert!(matches!(e, VfsError::QuotaExceeded), "{e:?}");
    assert!(
        fs.lookup(ROOT_INO, OsStr::new("d")).is_err(),
        "nothing made"
    );
    store
        .set_quota(ROOT_DATASET, QuotaId::user(USER), 0, 0)
        .unwrap();
    store
        .set_quota(ROOT_DATASET, QuotaId::group(GROUP), 256 << 10, 0)
        .unwrap();
    let d = create(&fs, "d").unwrap();
    assert!(write(&fs, d, 0, 256 << 10, 4).is_ok());
    assert!(matches!(
        write(&fs, d, 256 << 10, 1, 5),
        Err(VfsError::QuotaExceeded)
    ));
    store
        .set_quota(ROOT_DATASET, QuotaId::group(GROUP), 0, 0)
        .unwrap();
    let ds_used = quota(&fs, QuotaId::dataset()).used_bytes;
    store
        .set_quota(ROOT_DATASET, QuotaId::dataset(), ds_used + (128 << 10), 0)
        .unwrap();
    let (r, fh) = fs
        .create(
            &Request::root(),
            ROOT_INO,
            OsStr::new("r"),
            0o644,
            libc::O_RDWR,
        )
        .unwrap();
    let r = r.ino;
    assert!(fs.write(r, fh, 0, &[1; 128 << 10]).is_ok());
    assert!(
        matches!(
            fs.write(r, fh, 128 << 10, &[1; 4096]),
            Err(VfsError::QuotaExceeded)
        ),
        "the dataset's limit holds root too"
    );
    fs.release(r, fh).unwrap();
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn usage_is_exact_after_a_crash_replay_and_a_rollback() {
    let (kit, dev, fs) = with_user_quota(128 << 20, 8 << 20, 0);
    let store = fs.store().clone();
    let a = create(&fs, "a").unwrap();
    write(&fs, a, 0, 3 << 20, 6).unwrap();
    store.commit().unwrap();
    store.create_snapshot(ROOT_DATASET, "s").unwrap();
    let at_snapshot = quota(&fs, QuotaId::user(USER));
    // Changes after the commit reach the disk through the log only.
    let b = create(&fs, "b").unwrap();
    write(&fs, b, 0, 100_000, 7).unwrap();
    let fh = fs.open(b, libc::O_RDWR).unwrap();
    fs.fsync(b, fh, false).unwrap();
    fs.release(b, fh).unwrap();
    let before_crash = quota(&fs, QuotaId::user(USER));
    let crashed = Arc::new(dev.snapshot());
    fs.unmount().unwrap();
    kit.fsck_clean(crashed.clone());
    let fs = mounted(&kit, &crashed);
    fs.store().commit().unwrap();
    assert!(fs.lookup(ROOT_INO, OsStr::new("b")).is_ok(), "replayed");
    let replayed = quota(&fs, QuotaId::user(USER));
    assert_eq!(replayed.used_inodes, before_crash.used_inodes);
    assert_eq!(
        replayed.used_bytes,
        fs.getattr(a).unwrap().blocks * 512 + fs.getattr(b).unwrap().blocks * 512
    );
    fs.unmount().unwrap();
    kit.fsck_clean(crashed.clone());
    let store = kit.open_store(crashed.clone());
    store.rollback(ROOT_DATASET, "s").unwrap();
    let back = store.quotas(ROOT_DATASET).unwrap();
    let user = back
        .iter()
        .find(|(q, _)| *q == QuotaId::user(USER))
        .unwrap()
        .1;
    assert_eq!(
        user.used_bytes, at_snapshot.used_bytes,
        "the snapshot's usage"
    );
    store
        .delete_snapshot(ROOT_DATASET, "s", &mut |_| {})
        .unwrap();
    store.shutdown().unwrap();
    kit.fsck_clean(crashed);
}

#[test]
fn fsck_finds_usage_that_is_not_the_inodes_sum() {
    let kit = Kit::default().size(64 << 20);
    let dev = kit.fresh();
    let fs = mounted(&kit, &dev);
    open_root(&fs);
    fs.store()
        .set_quota(ROOT_DATASET, QuotaId::user(USER), 1 << 30, 0)
        .unwrap();
    let a = create(&fs, "a").unwrap();
    write(&fs, a, 0, 200_000, 8).unwrap();
    fs.unmount().unwrap();
    kit.fsck_clean(dev.clone());
    let store = kit.open_store(dev.clone());
    store
        .set_quota_usage_for_test(ROOT_DATASET, QuotaId::user(USER), 5)
        .unwrap();
    let r = aegis_fs::fsck::fsck(&store, false, &mut |_, _| {}).unwrap();
    let all = format!("{:?}", r.errors);
    assert!(all.contains("quota of user 1000: records 5 bytes"), "{all}");
    store.shutdown().unwrap();
}

/// Setting a quota, writes, a refused write and deletes are each all or
/// nothing: at every crash point of a recorded run the usage is that of
/// the last finished step or a later one, and fsck (which recomputes it
/// from the inodes) is clean.
#[test]
fn usage_survives_every_crash_point() {
    use aegis_block::RecordingDevice;
    let kit = Kit::default();
    let rec = Arc::new(RecordingDevice::new(kit.fresh().snapshot()));
    let fs = kit.mount(rec.clone() as DeviceRef).unwrap();
    open_root(&fs);
    fs.sync().unwrap();
    let store = fs.store().clone();
    let usage = |s: &Arc<aegis_fs::Store>| {
        s.quotas(ROOT_DATASET)
            .unwrap()
            .into_iter()
            .filter(|(q, _)| *q == QuotaId::user(USER))
            .map(|(_, e)| (e.used_bytes, e.used_inodes))
            .collect::<Vec<_>>()
    };
    let mut states = vec![(rec.len(), usage(&store))];
    let steps: [&dyn Fn(&DiskFs); 5] = [
        &|fs| {
            fs.store()
                .set_quota(ROOT_DATASET, QuotaId::user(USER), 600 << 10, 0)
                .unwrap();
        },
        &|fs| {
            let a = create(fs, "a").unwrap();
            write(fs, a, 0, 300_000, 1).unwrap();
        },
        &|fs| {
            let b = create(fs, "b").unwrap();
            assert!(write(fs, b, 0, 400_000, 2).is_err(), "past the limit");
        },
        &|fs| fs.unlink(ROOT_INO, OsStr::new("a")).unwrap(),
        &|fs| fs.unlink(ROOT_INO, OsStr::new("b")).unwrap(),
    ];
    for step in steps {
        step(&fs);
        fs.sync().unwrap();
        states.push((rec.len(), usage(&store)));
    }
    fs.unmount().unwrap();
    kit.check_crash_states(&rec, 4, &states, usage);
}
