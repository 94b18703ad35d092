//! O_TMPFILE on `RamFs` and `DiskFs` alike, through the `FileSystem`
//! trait: an unnamed file (link count 0, in no directory) that `link`
//! names; one never named goes with its last handle; `link` still refuses
//! a deleted file that happens to be open. The image is checked by fsck,
//! also after an fsync and a crash.

use std::ffi::OsStr;

use aegis_testkit::Kit;
use aegis_vfs::*;

fn names(fs: &dyn FileSystem) -> Vec<Vec<u8>> {
    let fh = fs.opendir(ROOT_INO, 0).unwrap();
    let v = fs.readdir(ROOT_INO, fh, 0, 1000).unwrap();
    fs.releasedir(ROOT_INO, fh).unwrap();
    v.into_iter()
        .map(|e| e.name)
        .filter(|n| n != b"." && n != b"..")
        .collect()
}

fn check_tmpfile(fs: &dyn FileSystem) {
    let req = Request::root();
    let (a, fh) = fs.tmpfile(&req, ROOT_INO, 0o600, libc::O_RDWR).unwrap();
    assert_eq!(
        (a.nlink, a.kind, a.perm & 0o7777),
        (0, FileType::RegularFile, 0o600)
    );
    fs.write(a.ino, fh, 0, b"unnamed").unwrap();
    assert!(names(fs).is_empty());
    let l = fs.link(a.ino, ROOT_INO, OsStr::new("named")).unwrap();
    assert_eq!(l.nlink, 1);
    fs.forget(a.ino, 1);
    fs.release(a.ino, fh).unwrap();
    fs.forget(a.ino, 1);
    assert_eq!(names(fs), vec![b"named".to_vec()]);
    // Never named: gone with its handle.
    let (b, bfh) = fs.tmpfile(&req, ROOT_INO, 0o600, libc::O_RDWR).unwrap();
    fs.write(b.ino, bfh, 0, b"scratch").unwrap();
    fs.release(b.ino, bfh).unwrap();
    fs.forget(b.ino, 1);
    assert_eq!(
        fs.getattr(b.ino).map_err(|e| e.errno()).err(),
        Some(libc::ENOENT)
    );
    // A deleted file that is still open is not linkable.
    let (c, cfh) = fs
        .create(&req, ROOT_INO, OsStr::new("doomed"), 0o600, libc::O_RDWR)
        .unwrap();
    fs.unlink(ROOT_INO, OsStr::new("doomed")).unwrap();
    let e = fs
        .link(c.ino, ROOT_INO, OsStr::new("revived"))
        .map_err(|e| e.errno());
    assert_eq!(e.err(), Some(libc::ENOENT));
    fs.release(c.ino, cfh).unwrap();
    fs.forget(c.ino, 1);
    // Not a directory.
    let e = fs
        .tmpfile(&req, l.ino, 0o600, libc::O_RDWR)
        .map_err(|e| e.errno());
    assert_eq!(e.err(), Some(libc::ENOTDIR));
}

#[test]
fn ramfs_tmpfile() {
    check_tmpfile(&RamFs::new());
}

#[test]
fn diskfs_tmpfile_and_a_crash_after_fsync() {
    let kit = Kit::default().size(64 << 20);
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).expect("mount");
    check_tmpfile(&*fs);
    // A tmpfile named after an fsync of other data, then a crash (the
    // filesystem dropped without unmount): the name and data survive
    // once fsynced; an unnamed one leaves nothing behind.
    let req = Request::root();
    let (a, fh) = fs.tmpfile(&req, ROOT_INO, 0o644, libc::O_RDWR).unwrap();
    fs.write(a.ino, fh, 0, b"kept").unwrap();
    fs.link(a.ino, ROOT_INO, OsStr::new("kept")).unwrap();
    let (u, ufh) = fs.tmpfile(&req, ROOT_INO, 0o644, libc::O_RDWR).unwrap();
    fs.write(u.ino, ufh, 0, b"lost").unwrap();
    fs.fsync(a.ino, fh, false).unwrap();
    drop(fs);
    let fs = kit.mount(dev.clone()).expect("mount after the crash");
    let k = fs.lookup(ROOT_INO, OsStr::new("kept")).unwrap();
    let rfh = fs.open(k.ino, libc::O_RDONLY).unwrap();
    assert_eq!(fs.read(k.ino, rfh, 0, 100).unwrap(), b"kept");
    fs.release(k.ino, rfh).unwrap();
    fs.forget(k.ino, 1);
    assert_eq!(
        fs.getattr(u.ino).map_err(|e| e.errno()).err(),
        Some(libc::ENOENT)
    );
    fs.unmount().expect("unmount");
    kit.fsck_clean(dev);
}
