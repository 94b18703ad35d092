//! fsck's POSIX checks: a filesystem made through `DiskFs` is clean, and
//! each kind of damage to the links between its items is named.

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::MemDevice;
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::posix::{keys, InodeRecord};
use aegis_fs::Store;
use aegis_pool::AllocClass;
use aegis_testkit::Kit;
use aegis_vfs::{FileSystem, Request, ROOT_INO};

fn open(dev: &Arc<MemDevice>) -> Arc<Store> {
    Kit::default().open_store(dev.clone())
}

fn findings(dev: &Arc<MemDevice>) -> Vec<String> {
    let store = open(dev);
    let r = aegis_fs::fsck::fsck(&store, false, &mut |_, _| {}).unwrap();
    store.shutdown().unwrap();
    r.errors.into_iter().map(|f| f.what).collect()
}

/// A small tree: /d/f (300 KB, two names: /d/f and /g) and /d/sub.
fn build() -> (Arc<MemDevice>, u64, u64) {
    let kit = Kit::default();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let req = Request::root();
    let d = fs.mkdir(&req, ROOT_INO, OsStr::new("d"), 0o755).unwrap();
    fs.mkdir(&req, d.ino, OsStr::new("sub"), 0o755).unwrap();
    let (f, fh) = fs
        .create(&req, d.ino, OsStr::new("f"), 0o644, libc::O_RDWR)
        .unwrap();
    fs.write(f.ino, fh, 0, &vec![5u8; 300_000]).unwrap();
    fs.release(f.ino, fh).unwrap();
    fs.link(f.ino, ROOT_INO, OsStr::new("g")).unwrap();
    fs.unmount().unwrap();
    (dev, d.ino, f.ino)
}

fn damage(dev: &Arc<MemDevice>, f: impl FnOnce(&mut aegis_btree::Tree)) {
    let store = open(dev);
    store
        .with_tree(ROOT_DATASET, AllocClass::Normal, |t| {
            f(t);
            Ok(())
        })
        .unwrap();
    store.shutdown().unwrap();
}

fn inode(t: &aegis_btree::Tree, ino: u64) -> InodeRecord {
    InodeRecord::decode(&t.get(&keys::inode(ino)).unwrap().unwrap()).unwrap()
}

#[test]
fn clean_filesystem_passes() {
    let (dev, _, _) = build();
    assert_eq!(findings(&dev), Vec::<String>::new());
}

/// A damage to make in the tree, given the directory and file inodes.
type Damage = Box<dyn Fn(&mut aegis_btree::Tree, u64, u64)>;

#[test]
fn each_kind_of_damage_is_named() {
    let cases: Vec<(&str, Damage)> = vec![
        (
            "link count 3 but 2 names",
            Box::new(|t, _, f| {
                let mut r = inode(t, f);
                r.nlink = 3;
                t.insert(&keys::inode(f), &r.encode()).unwrap();
            }),
        ),
        (
            "link count 2 but 3 expected",
            Box::new(|t, d, _| {
                let mut r = inode(t, d);
                r.nlink = 2;
                t.insert(&keys::inode(d), &r.encode()).unwrap();
            }),
        ),
        (
            "no back-reference",
            Box::new(|t, _, f| {
                let (lo, hi) = (
                    keys::item_start(f, keys::BACKREF),
                    keys::item_end(f, keys::BACKREF),
                );
                let k = t
                    .range(
                        std::ops::Bound::Included(&lo[..]),
                        std::ops::Bound::Excluded(&hi[..]),
                    )
                    .next()
                    .unwrap()
                    .unwrap()
                    .0;
                t.remove(&k).unwrap();
            }),
        ),
        (
            "points at missing inode",
            Box::new(|t, _, f| {
                t.remove(&keys::inode(f)).unwrap();
            }),
        ),
        (
            "outside the file",
            Box::new(|t, _, f| {
                let mut r = inode(t, f);
                r.size = 10;
                t.insert(&keys::inode(f), &r.encode()).unwrap();
            }),
        ),
        (
            "meta record counts",
            Box::new(|t, _, _| {
                let mut m =
                    aegis_fs::posix::DatasetMeta::decode(&t.get(&keys::meta()).unwrap().unwrap())
                        .unwrap();
                m.inodes += 1;
                t.insert(&keys::meta(), &m.encode()).unwrap();
            }),
        ),
        (
            "leaked",
            Box::new(|t, d, _| {
                // Drop every name of /d/sub (entry, index, back-reference).
                let (lo, hi) = (
                    keys::item_start(d, keys::DIRENT),
                    keys::item_end(d, keys::DIRINDEX),
                );
                let ks: Vec<_> = t
                    .range(
                        std::ops::Bound::Included(&lo[..]),
                        std::ops::Bound::Excluded(&hi[..]),
                    )
                    .map(|r| r.unwrap())
                    .collect();
                for (k, v) in ks {
                    let e = aegis_fs::posix::DirentValue::decode(&v).unwrap();
                    if e.name == b"sub" {
                        t.remove(&k).unwrap();
                        let (lo, hi) = (
                            keys::item_start(e.ino, keys::BACKREF),
                            keys::item_end(e.ino, keys::BACKREF),
                        );
                        let b: Vec<_> = t
                            .range(
                                std::ops::Bound::Included(&lo[..]),
                                std::ops::Bound::Excluded(&hi[..]),
                            )
                            .map(|r| r.unwrap().0)
                            .collect();
                        for k in b {
                            t.remove(&k).unwrap();
                        }
                    }
                }
            }),
        ),
    ];
    for (needle, f) in cases {
        let (dev, d, file) = build();
        damage(&dev, |t| f(t, d, file));
        let found = findings(&dev);
        assert!(
            found.iter().any(|s| s.contains(needle)),
            "wanted '{needle}' in {found:#?}"
        );
    }
}

/// A file with a reservation: /r, 64 KiB preallocated past a 4 KiB write.
fn build_reserved() -> (Arc<MemDevice>, u64) {
    let kit = Kit::default();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let (f, fh) = fs
        .create(
            &Request::root(),
            ROOT_INO,
            OsStr::new("r"),
            0o644,
            libc::O_RDWR,
        )
        .unwrap();
    fs.write(f.ino, fh, 0, &[7u8; 4096]).unwrap();
    fs.fallocate(f.ino, fh, 0, 1 << 20, libc::FALLOC_FL_KEEP_SIZE)
        .unwrap();
    fs.release(f.ino, fh).unwrap();
    fs.unmount().unwrap();
    (dev, f.ino)
}

fn meta_of(t: &aegis_btree::Tree) -> aegis_fs::posix::DatasetMeta {
    aegis_fs::posix::DatasetMeta::decode(&t.get(&keys::meta()).unwrap().unwrap()).unwrap()
}

#[test]
fn reserved_bytes_must_equal_the_preallocated_records() {
    let (dev, f) = build_reserved();
    assert_eq!(findings(&dev), Vec::<String>::new());
    let cases: Vec<(&str, Damage)> = vec![
        (
            "reserved bytes, the preallocated records hold",
            Box::new(|t, _, _| {
                let mut m = meta_of(t);
                m.reserved += 4096;
                t.insert(&keys::meta(), &m.encode()).unwrap();
            }),
        ),
        (
            "reserved bytes, the preallocated records hold",
            Box::new(|t, _, f| {
                // A preallocated record the counter does not know.
                let rec = aegis_fs::posix::FileRecord::Prealloc {
                    len: 4096,
                    data: None,
                };
                t.insert(&keys::data(f, 64 << 20), &rec.encode()).unwrap();
            }),
        ),
        (
            "without the prealloc feature",
            Box::new(|t, _, _| {
                let mut m = meta_of(t);
                m.features = 0;
                m.reserved = 0;
                t.insert(&keys::meta(), &m.encode()).unwrap();
            }),
        ),
    ];
    for (needle, damage_it) in cases {
        let (dev, f2) = build_reserved();
        assert_eq!(f2, f);
        damage(&dev, |t| damage_it(t, 0, f));
        let found = findings(&dev);
        assert!(
            found.iter().any(|s| s.contains(needle)),
            "wanted '{needle}' in {found:#?}"
        );
    }
}
