//! RENAME_WHITEOUT (overlayfs's upper layer) on `RamFs` and `DiskFs`
//! alike, through the `FileSystem` trait: the source moves and a whiteout
//! (a character device 0:0 owned by root) takes its name in one step; the
//! flag combinations Linux refuses are refused and change nothing; the
//! whiteout is on disk after a remount and fsck is clean.

use std::ffi::OsStr;

use aegis_testkit::Kit;
use aegis_vfs::*;

fn file(fs: &dyn FileSystem, parent: Ino, name: &str) -> Ino {
    let (a, fh) = fs
        .create(
            &Request {
                uid: 1000,
                gid: 1000,
                pid: 1,
                ..Request::root()
            },
            parent,
            OsStr::new(name),
            0o644,
            libc::O_RDWR,
        )
        .unwrap();
    fs.write(a.ino, fh, 0, name.as_bytes()).unwrap();
    fs.release(a.ino, fh).unwrap();
    fs.forget(a.ino, 1);
    a.ino
}

fn get(fs: &dyn FileSystem, parent: Ino, name: &str) -> std::result::Result<Attr, i32> {
    let a = fs.lookup(parent, OsStr::new(name)).map_err(|e| e.errno())?;
    fs.forget(a.ino, 1);
    Ok(a)
}

/// Returns the whiteout's inode, to check again after a remount.
fn check_whiteout(fs: &dyn FileSystem) -> Ino {
    let up = fs
        .mkdir(&Request::root(), ROOT_INO, OsStr::new("upper"), 0o755)
        .unwrap()
        .ino;
    fs.forget(up, 1);
    let a = file(fs, up, "a");
    let b = file(fs, up, "b");
    let w = |from: &str, to: &str, flags: u32| {
        fs.rename(up, OsStr::new(from), up, OsStr::new(to), flags)
            .map_err(|e| e.errno())
    };
    // Refused combinations change nothing.
    assert_eq!(
        w("a", "b", RENAME_WHITEOUT | RENAME_EXCHANGE),
        Err(libc::EINVAL)
    );
    assert_eq!(
        w("a", "b", RENAME_WHITEOUT | RENAME_NOREPLACE),
        Err(libc::EEXIST)
    );
    assert_eq!(get(fs, up, "a").unwrap().ino, a);
    assert_eq!(get(fs, up, "b").unwrap().ino, b);
    // Onto a new name, and over an existing one.
    w("a", "c", RENAME_WHITEOUT | RENAME_NOREPLACE).unwrap();
    assert_eq!(get(fs, up, "c").unwrap().ino, a);
    let wo = get(fs, up, "a").unwrap();
    assert_eq!(
        (wo.kind, wo.rdev, wo.uid, wo.gid, wo.nlink),
        (FileType::CharDevice, 0, 0, 0, 1)
    );
    assert_eq!(wo.perm & 0o7777, 0);
    w("b", "c", RENAME_WHITEOUT).unwrap();
    assert_eq!(get(fs, up, "c").unwrap().ino, b);
    assert_eq!(get(fs, up, "b").unwrap().kind, FileType::CharDevice);
    assert_eq!(get(fs, up, "nothing").err(), Some(libc::ENOENT));
    wo.ino
}

#[test]
fn ramfs_rename_whiteout() {
    check_whiteout(&RamFs::new());
}

#[test]
fn diskfs_rename_whiteout_survives_a_remount() {
    let kit = Kit::default().size(64 << 20);
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).expect("mount");
    let wo = check_whiteout(&*fs);
    fs.unmount().expect("unmount");
    let fs = kit.mount(dev.clone()).expect("mount again");
    let up = get(&*fs, ROOT_INO, "upper").unwrap().ino;
    let a = get(&*fs, up, "a").unwrap();
    assert_eq!((a.ino, a.kind, a.rdev), (wo, FileType::CharDevice, 0));
    fs.unmount().expect("unmount");
    kit.fsck_clean(dev);
}
