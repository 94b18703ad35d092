//! `.snapshots/` through the `FileSystem` trait (`SnapshotDir` around a
//! mounted dataset): hidden from the root's listing, found by name,
//! each snapshot's tree read-only with its own inode numbers; changes
//! are EROFS, moves out EXDEV, the name cannot be taken; a snapshot
//! deleted behind the view's back (as a schedule's retention does) is
//! gone from it. Ends with fsck.

use std::ffi::OsStr;

use aegis_block::DeviceRef;
use aegis_diskfs::{SnapshotDir, SNAPSHOTS_DIR};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_testkit::{noise, Kit};
use aegis_vfs::{FileSystem, FsError, Request, ROOT_INO};

fn read_all(fs: &dyn FileSystem, ino: u64, len: u32) -> Vec<u8> {
    let fh = fs.open(ino, libc::O_RDONLY).unwrap();
    let d = fs.read(ino, fh, 0, len).unwrap();
    fs.release(ino, fh).unwrap();
    d
}

fn names(fs: &dyn FileSystem, dir: u64) -> Vec<String> {
    let fh = fs.opendir(dir, 0).unwrap();
    let es = fs.readdir(dir, fh, 0, usize::MAX).unwrap();
    fs.releasedir(dir, fh).unwrap();
    es.into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .filter(|n| n != "." && n != "..")
        .collect()
}

#[test]
fn snapshots_read_only_under_their_directory() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let live = kit.mount(dev.clone() as DeviceRef).unwrap();
    let (ino, fh) = aegis_testkit::create_file(&live, "f");
    live.write(ino, fh, 0, &noise(200_000, 1)).unwrap();
    live.release(ino, fh).unwrap();
    live.store().create_snapshot(ROOT_DATASET, "a").unwrap();
    let fh = live.open(ino, libc::O_RDWR).unwrap();
    live.write(ino, fh, 0, b"new").unwrap();
    live.release(ino, fh).unwrap();
    live.store().create_snapshot(ROOT_DATASET, "b").unwrap();
    let sd = SnapshotDir::new(live.clone());
    let fs: &dyn FileSystem = &*sd;
    assert!(!names(fs, ROOT_INO).contains(&SNAPSHOTS_DIR.to_string()));
    let dir = fs.lookup(ROOT_INO, OsStr::new(SNAPSHOTS_DIR)).unwrap();
    assert_eq!(names(fs, dir.ino), ["a", "b"]);
    let a = fs.lookup(dir.ino, OsStr::new("a")).unwrap();
    let fa = fs.lookup(a.ino, OsStr::new("f")).unwrap();
    assert_ne!(fa.ino, ino, "a snapshot's inode has a number of its own");
    assert_eq!(read_all(fs, fa.ino, 300_000), noise(200_000, 1));
    let b = fs.lookup(dir.ino, OsStr::new("b")).unwrap();
    let fb = fs.lookup(b.ino, OsStr::new("f")).unwrap();
    assert_eq!(&read_all(fs, fb.ino, 3), b"new");
    assert_eq!(&read_all(fs, ino, 3), b"new");
    let req = Request::root();
    let ro = |r: aegis_vfs::Result<aegis_vfs::Attr>| {
        assert!(matches!(r, Err(FsError::ReadOnly)), "{r:?}")
    };
    ro(fs.mkdir(&req, a.ino, OsStr::new("d"), 0o755));
    ro(fs.mkdir(&req, dir.ino, OsStr::new("d"), 0o755));
    assert!(matches!(
        fs.open(fa.ino, libc::O_RDWR),
        Err(FsError::ReadOnly)
    ));
    assert!(matches!(
        fs.rename(a.ino, OsStr::new("f"), ROOT_INO, OsStr::new("g"), 0),
        Err(FsError::CrossDevice)
    ));
    assert!(matches!(
        fs.mkdir(&req, ROOT_INO, OsStr::new(SNAPSHOTS_DIR), 0o755),
        Err(FsError::Exists)
    ));
    // Deleted without the view's help: gone from it, never read.
    live.store()
        .delete_snapshot(ROOT_DATASET, "a", &mut |_| {})
        .unwrap();
    assert!(matches!(fs.getattr(fa.ino), Err(FsError::NotFound)));
    assert!(matches!(
        fs.lookup(dir.ino, OsStr::new("a")),
        Err(FsError::NotFound)
    ));
    assert_eq!(names(fs, dir.ino), ["b"]);
    drop(sd);
    live.unmount().unwrap();
    kit.fsck_clean(dev as DeviceRef);
}
