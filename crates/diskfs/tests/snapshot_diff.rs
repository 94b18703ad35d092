//! `diff` between snapshots, and between a snapshot and the live
//! dataset: created, deleted, modified and renamed paths, exactly.

use std::ffi::OsStr;

use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::snapshot_diff::{Change, DiffEntry};
use aegis_testkit::Kit;
use aegis_vfs::{FileSystem, Request, ROOT_INO};

fn entry(change: Change, path: &str, new_path: Option<&str>) -> DiffEntry {
    DiffEntry {
        change,
        path: path.into(),
        new_path: new_path.map(str::to_string),
    }
}

#[test]
fn diff_names_every_changed_path_and_nothing_else() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let root = Request::root();
    let d = fs
        .mkdir(&root, ROOT_INO, OsStr::new("d"), 0o755)
        .unwrap()
        .ino;
    for name in ["a", "b", "same"] {
        let (ino, fh) = aegis_testkit::create_file(&fs, name);
        fs.write(ino, fh, 0, &aegis_testkit::noise(50_000, 1))
            .unwrap();
        fs.release(ino, fh).unwrap();
    }
    let (c, fh) = fs
        .create(&root, d, OsStr::new("c"), 0o644, libc::O_RDWR)
        .unwrap();
    fs.release(c.ino, fh).unwrap();
    for i in 0..300 {
        let (x, fh) = fs
            .create(
                &root,
                d,
                OsStr::new(&format!("many{i}")),
                0o644,
                libc::O_RDWR,
            )
            .unwrap();
        fs.release(x.ino, fh).unwrap();
    }
    fs.sync().unwrap();
    let store = fs.store().clone();
    store.create_snapshot(ROOT_DATASET, "s1").unwrap();
    let a = fs.lookup(ROOT_INO, OsStr::new("a")).unwrap().ino;
    let fh = fs.open(a, libc::O_RDWR).unwrap();
    fs.write(a, fh, 10_000, b"changed").unwrap();
    fs.release(a, fh).unwrap();
    fs.unlink(ROOT_INO, OsStr::new("b")).unwrap();
    fs.rename(d, OsStr::new("c"), ROOT_INO, OsStr::new("c2"), 0)
        .unwrap();
    let (e, fh) = aegis_testkit::create_file(&fs, "e");
    fs.release(e, fh).unwrap();
    fs.sync().unwrap();
    store.create_snapshot(ROOT_DATASET, "s2").unwrap();
    let want = vec![
        entry(Change::Modified, "/", None),
        entry(Change::Modified, "/a", None),
        entry(Change::Deleted, "/b", None),
        entry(Change::Modified, "/d", None),
        entry(Change::Renamed, "/d/c", Some("/c2")),
        entry(Change::Created, "/e", None),
    ];
    assert_eq!(
        store
            .diff_snapshots(ROOT_DATASET, "s1", Some("s2"))
            .unwrap(),
        want
    );
    assert_eq!(
        store.diff_snapshots(ROOT_DATASET, "s1", None).unwrap(),
        want
    );
    assert!(store
        .diff_snapshots(ROOT_DATASET, "s2", None)
        .unwrap()
        .is_empty());
    assert!(store
        .diff_snapshots(ROOT_DATASET, "s1", Some("s1"))
        .unwrap()
        .is_empty());
    assert!(store.diff_snapshots(ROOT_DATASET, "nope", None).is_err());
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}
