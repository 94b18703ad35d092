//! Time travel through the store: with a window set, every commit that
//! changes the dataset keeps a hidden snapshot, so each txg of the window
//! mounts read-only with what the dataset held then, a tree comes back
//! from it (`restore`) whole, and the window's snapshots expire (all but
//! the newest older than the window), giving their space back. Refusals
//! of bad windows and of a txg before the window. Ends with fsck.

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::{DeviceRef, MemDevice};
use aegis_diskfs::{DiskFs, DiskFsOptions, MountOptions};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::time_travel::{is_hidden, At};
use aegis_testkit::{noise, Kit};
use aegis_vfs::{FileSystem, Request, ROOT_INO};

fn put(fs: &DiskFs, dir: u64, name: &str, data: &[u8]) {
    let (a, fh) = match fs.lookup(dir, OsStr::new(name)) {
        Ok(a) => (
            a.clone(),
            fs.open(a.ino, libc::O_RDWR | libc::O_TRUNC).unwrap(),
        ),
        Err(_) => fs
            .create(&Request::root(), dir, OsStr::new(name), 0o640, libc::O_RDWR)
            .unwrap(),
    };
    fs.setattr(
        &Request::root(),
        a.ino,
        &aegis_vfs::SetAttr {
            size: Some(0),
            ..Default::default()
        },
        Some(fh),
    )
    .unwrap();
    fs.write(a.ino, fh, 0, data).unwrap();
    fs.release(a.ino, fh).unwrap();
}

fn read(fs: &dyn FileSystem, dir: u64, name: &str) -> Option<Vec<u8>> {
    let a = fs.lookup(dir, OsStr::new(name)).ok()?;
    let fh = fs.open(a.ino, libc::O_RDONLY).unwrap();
    let d = fs.read(a.ino, fh, 0, a.size as u32 + 1).unwrap();
    fs.release(a.ino, fh).unwrap();
    Some(d)
}

fn at_txg(kit: &Kit, dev: &Arc<MemDevice>, txg: u64) -> Arc<DiskFs> {
    let opts = MountOptions {
        at: Some(At::Txg(txg)),
        ..kit.mount_opts()
    };
    aegis_diskfs::open(vec![dev.clone() as DeviceRef], &opts).unwrap()
}

#[test]
fn every_txg_of_the_window_mounts_and_comes_back() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    let store = kit.open_store(dev.clone() as DeviceRef);
    assert!(
        store.set_time_travel(ROOT_DATASET, 3).is_err(),
        "below 10 s"
    );
    assert!(store
        .set_time_travel(ROOT_DATASET, 100 * 24 * 3600)
        .is_err());
    store.set_time_travel(ROOT_DATASET, 3600).unwrap();
    store.shutdown().unwrap();
    let fs = kit.mount(dev.clone() as DeviceRef).unwrap();
    let store = fs.store().clone();
    let d = fs
        .mkdir(&Request::root(), ROOT_INO, OsStr::new("d"), 0o755)
        .unwrap();
    let mut txgs = Vec::new();
    for round in 0..4u64 {
        put(&fs, ROOT_INO, "f", &noise(100_000, round));
        put(
            &fs,
            d.ino,
            &format!("g{round}"),
            format!("round {round}").as_bytes(),
        );
        txgs.push(store.commit().unwrap());
    }
    // A commit that changes nothing keeps nothing.
    let before = store.snapshots(ROOT_DATASET).len();
    store.commit().unwrap();
    assert_eq!(store.snapshots(ROOT_DATASET).len(), before);
    fs.unlink(ROOT_INO, OsStr::new("f")).unwrap();
    store.commit().unwrap();
    let hidden: Vec<u64> = store
        .snapshots(ROOT_DATASET)
        .into_iter()
        .filter(|s| is_hidden(&s.name))
        .map(|s| s.txg)
        .collect();
    for t in &txgs {
        assert!(hidden.contains(t), "txg {t} kept: {hidden:?}");
    }
    fs.unmount().unwrap();
    for (round, &t) in txgs.iter().enumerate() {
        let past = at_txg(&kit, &dev, t);
        assert_eq!(
            read(&*past, ROOT_INO, "f"),
            Some(noise(100_000, round as u64)),
            "txg {t}"
        );
        let pd = past.lookup(ROOT_INO, OsStr::new("d")).unwrap().ino;
        assert!(read(&*past, pd, &format!("g{}", round + 1)).is_none());
        past.unmount().unwrap();
    }
    // Bring `f` and `d` back as they were at the second txg.
    let live = kit.mount(dev.clone() as DeviceRef).unwrap();
    let store = live.store().clone();
    let snap = store.snapshot_at(ROOT_DATASET, At::Txg(txgs[1])).unwrap();
    let id = store.snapshot_id(ROOT_DATASET, &snap).unwrap();
    let view = DiskFs::open(
        store.clone(),
        DiskFsOptions {
            dataset: id,
            ..Default::default()
        },
    )
    .unwrap();
    let f = view.lookup(ROOT_INO, OsStr::new("f")).unwrap().ino;
    let r = aegis_diskfs::restore(&*view, f, &*live, ROOT_INO, OsStr::new("f")).unwrap();
    assert_eq!((r.objects, r.bytes), (1, 100_000));
    let vd = view.lookup(ROOT_INO, OsStr::new("d")).unwrap().ino;
    aegis_diskfs::restore(&*view, vd, &*live, ROOT_INO, OsStr::new("d-then")).unwrap();
    drop(view);
    assert_eq!(read(&*live, ROOT_INO, "f"), Some(noise(100_000, 1)));
    let dt = live.lookup(ROOT_INO, OsStr::new("d-then")).unwrap();
    assert_eq!(dt.perm, 0o755);
    assert_eq!(read(&*live, dt.ino, "g1").as_deref(), Some(&b"round 1"[..]));
    assert!(read(&*live, dt.ino, "g2").is_none());
    assert!(
        store.snapshot_at(ROOT_DATASET, At::Txg(1)).is_err(),
        "before the window"
    );
    // The window moves past all of them: every one goes but the newest,
    // which holds the window's first state; off, that one goes too.
    // (The restore's changes get their own snapshot first.)
    store.commit().unwrap();
    let far = u64::MAX / 2;
    let gone = store.expire_time_travel(ROOT_DATASET, far).unwrap();
    store.resume_snapshot_deletes(&mut |_| {}).unwrap();
    let left: Vec<_> = store
        .snapshots(ROOT_DATASET)
        .into_iter()
        .filter(|s| is_hidden(&s.name))
        .collect();
    assert!(
        gone >= 4 && left.len() == 1,
        "{gone} went, {} left",
        left.len()
    );
    store.set_time_travel(ROOT_DATASET, 0).unwrap();
    store.resume_snapshot_deletes(&mut |_| {}).unwrap();
    assert!(store
        .snapshots(ROOT_DATASET)
        .iter()
        .all(|s| !is_hidden(&s.name)));
    assert!(store.time_travel(ROOT_DATASET).unwrap().is_none());
    // Users cannot take the hidden names.
    assert!(store.create_snapshot(ROOT_DATASET, "%txg-1").is_err());
    live.unmount().unwrap();
    kit.fsck_clean(dev as DeviceRef);
}
