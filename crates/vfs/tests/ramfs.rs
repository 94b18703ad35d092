//! Every operation of `ramfs` through `Arc<dyn FileSystem>`: success and errno cases.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aegis_vfs::ramfs::CHUNK;
use aegis_vfs::*;

fn fs() -> Arc<dyn FileSystem> {
    Arc::new(RamFs::new())
}

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

const REQ: Request = Request {
    uid: 1000,
    gid: 100,
    pid: 1,
    umask: 0,
};

fn errno<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.expect_err("expected an error").errno()
}

fn new_file(fs: &Arc<dyn FileSystem>, parent: Ino, name: &str) -> (Ino, Fh) {
    let (attr, fh) = fs
        .create(&REQ, parent, n(name), 0o644, libc::O_RDWR)
        .unwrap();
    (attr.ino, fh)
}

fn names(fs: &Arc<dyn FileSystem>, dir: Ino) -> Vec<String> {
    let fh = fs.opendir(dir, 0).unwrap();
    let v = fs.readdir(dir, fh, 0, usize::MAX).unwrap();
    fs.releasedir(dir, fh).unwrap();
    v.into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect()
}

#[test]
fn object_safe_send_sync() {
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn FileSystem>();
    let fs = fs();
    let fs2 = fs.clone();
    std::thread::spawn(move || fs2.getattr(ROOT_INO).unwrap())
        .join()
        .unwrap();
}

#[test]
fn root_and_lookup() {
    let fs = fs();
    let root = fs.getattr(ROOT_INO).unwrap();
    assert_eq!(root.kind, FileType::Directory);
    assert_eq!(root.nlink, 2);
    assert_eq!(fs.lookup(ROOT_INO, n(".")).unwrap().ino, ROOT_INO);
    assert_eq!(fs.lookup(ROOT_INO, n("..")).unwrap().ino, ROOT_INO);
    assert_eq!(errno(fs.lookup(ROOT_INO, n("x"))), libc::ENOENT);
    assert_eq!(
        errno(fs.lookup(ROOT_INO, n(&"a".repeat(256)))),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno(fs.lookup(ROOT_INO, n("a/b"))), libc::EINVAL);
    assert_eq!(
        errno(fs.lookup(ROOT_INO, OsStr::from_bytes(b"a\0b"))),
        libc::EINVAL
    );
    let (f, _) = new_file(&fs, ROOT_INO, "f");
    assert_eq!(errno(fs.lookup(f, n("x"))), libc::ENOTDIR);
    assert_eq!(errno(fs.getattr(999)), libc::ENOENT);
}

#[test]
fn mkdir_ownership_and_setgid() {
    let fs = fs();
    let d = fs.mkdir(&REQ, ROOT_INO, n("d"), 0o755).unwrap();
    assert_eq!((d.uid, d.gid, d.perm, d.nlink), (1000, 100, 0o755, 2));
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 3);
    assert_eq!(fs.lookup(d.ino, n("..")).unwrap().ino, ROOT_INO);
    assert_eq!(errno(fs.mkdir(&REQ, ROOT_INO, n("d"), 0o755)), libc::EEXIST);
    assert_eq!(errno(fs.mkdir(&REQ, ROOT_INO, n("."), 0o755)), libc::EEXIST);
    // setgid directory: group and bit propagate.
    let sg = fs
        .mkdir(&Request::root(), ROOT_INO, n("sg"), 0o2775)
        .unwrap();
    let set = SetAttr {
        gid: Some(42),
        ..Default::default()
    };
    fs.setattr(&Request::root(), sg.ino, &set, None).unwrap();
    let sub = fs.mkdir(&REQ, sg.ino, n("sub"), 0o755).unwrap();
    assert_eq!(sub.gid, 42);
    assert_eq!(sub.perm & libc::S_ISGID as u16, libc::S_ISGID as u16);
    let (f, _) = fs
        .create(&REQ, sg.ino, n("f"), 0o644, libc::O_WRONLY)
        .unwrap();
    assert_eq!((f.uid, f.gid, f.perm), (1000, 42, 0o644));
}

#[test]
fn mknod_kinds() {
    let fs = fs();
    let c = fs
        .mknod(&REQ, ROOT_INO, n("c"), libc::S_IFCHR | 0o600, 0x0103)
        .unwrap();
    assert_eq!((c.kind, c.rdev), (FileType::CharDevice, 0x0103));
    let b = fs
        .mknod(&REQ, ROOT_INO, n("b"), libc::S_IFBLK | 0o600, 0x0801)
        .unwrap();
    assert_eq!((b.kind, b.rdev), (FileType::BlockDevice, 0x0801));
    let p = fs
        .mknod(&REQ, ROOT_INO, n("p"), libc::S_IFIFO | 0o600, 7)
        .unwrap();
    assert_eq!((p.kind, p.rdev), (FileType::NamedPipe, 0));
    let s = fs
        .mknod(&REQ, ROOT_INO, n("s"), libc::S_IFSOCK | 0o600, 0)
        .unwrap();
    assert_eq!(s.kind, FileType::Socket);
    let r = fs.mknod(&REQ, ROOT_INO, n("r"), 0o600, 0).unwrap();
    assert_eq!(r.kind, FileType::RegularFile);
    assert_eq!(
        errno(fs.mknod(&REQ, ROOT_INO, n("d"), libc::S_IFDIR | 0o755, 0)),
        libc::EPERM
    );
    assert_eq!(
        errno(fs.mknod(&REQ, ROOT_INO, n("l"), libc::S_IFLNK | 0o777, 0)),
        libc::EINVAL
    );
    assert_eq!(
        errno(fs.mknod(&REQ, ROOT_INO, n("c"), 0o600, 0)),
        libc::EEXIST
    );
    assert_eq!(
        errno(fs.mknod(&REQ, c.ino, n("x"), 0o600, 0)),
        libc::ENOTDIR
    );
}

#[test]
fn unlink_rmdir_errors_and_times() {
    let fs = fs();
    let d = fs.mkdir(&REQ, ROOT_INO, n("d"), 0o755).unwrap();
    new_file(&fs, d.ino, "f");
    let before = fs.getattr(d.ino).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(errno(fs.rmdir(ROOT_INO, n("d"))), libc::ENOTEMPTY);
    assert_eq!(errno(fs.unlink(ROOT_INO, n("d"))), libc::EISDIR);
    assert_eq!(errno(fs.rmdir(d.ino, n("f"))), libc::ENOTDIR);
    assert_eq!(errno(fs.unlink(d.ino, n("nope"))), libc::ENOENT);
    assert_eq!(errno(fs.rmdir(d.ino, n("."))), libc::EINVAL);
    fs.unlink(d.ino, n("f")).unwrap();
    let after = fs.getattr(d.ino).unwrap();
    assert!(after.mtime > before.mtime && after.ctime > before.ctime);
    fs.rmdir(ROOT_INO, n("d")).unwrap();
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 2);
    assert_eq!(errno(fs.lookup(ROOT_INO, n("d"))), libc::ENOENT);
    // d is still looked up once: its attributes stay, creating in it fails.
    assert_eq!(fs.getattr(d.ino).unwrap().nlink, 0);
    assert_eq!(errno(fs.mkdir(&REQ, d.ino, n("x"), 0o755)), libc::ENOENT);
    fs.forget(d.ino, 1);
    assert_eq!(errno(fs.getattr(d.ino)), libc::ENOENT);
}

#[test]
fn symlink_readlink() {
    let fs = fs();
    let l = fs
        .symlink(&REQ, ROOT_INO, n("l"), n("../some/where"))
        .unwrap();
    assert_eq!((l.kind, l.size, l.perm), (FileType::Symlink, 13, 0o777));
    assert_eq!(fs.readlink(l.ino).unwrap(), b"../some/where");
    assert_eq!(errno(fs.readlink(ROOT_INO)), libc::EINVAL);
    assert_eq!(
        errno(fs.symlink(&REQ, ROOT_INO, n("e"), n(""))),
        libc::ENOENT
    );
    assert_eq!(
        errno(fs.symlink(&REQ, ROOT_INO, n("e"), n(&"x".repeat(4096)))),
        libc::ENAMETOOLONG
    );
    fs.symlink(&REQ, ROOT_INO, n("m"), n(&"x".repeat(4095)))
        .unwrap();
    assert_eq!(errno(fs.open(l.ino, libc::O_RDONLY)), libc::ELOOP);
    assert_eq!(
        errno(fs.setxattr(&Request::root(), l.ino, n("user.a"), b"v", 0)),
        libc::EPERM
    );
    fs.setxattr(&Request::root(), l.ino, n("trusted.a"), b"v", 0)
        .unwrap();
}

#[test]
fn hardlink_counts() {
    let fs = fs();
    let (f, fh) = new_file(&fs, ROOT_INO, "a");
    fs.write(f, fh, 0, b"hello").unwrap();
    let before = fs.getattr(f).unwrap().ctime;
    std::thread::sleep(Duration::from_millis(2));
    let l = fs.link(f, ROOT_INO, n("b")).unwrap();
    assert_eq!((l.ino, l.nlink), (f, 2));
    assert!(l.ctime > before);
    assert_eq!(errno(fs.link(f, ROOT_INO, n("b"))), libc::EEXIST);
    assert_eq!(errno(fs.link(ROOT_INO, ROOT_INO, n("r"))), libc::EPERM);
    fs.unlink(ROOT_INO, n("a")).unwrap();
    assert_eq!(fs.getattr(f).unwrap().nlink, 1);
    assert_eq!(fs.lookup(ROOT_INO, n("b")).unwrap().ino, f);
    fs.unlink(ROOT_INO, n("b")).unwrap();
    assert_eq!(fs.getattr(f).unwrap().nlink, 0);
    assert_eq!(errno(fs.link(f, ROOT_INO, n("c"))), libc::ENOENT);
}

#[test]
fn unlinked_open_file_stays_readable() {
    let fs = fs();
    let (f, fh) = new_file(&fs, ROOT_INO, "f");
    fs.write(f, fh, 0, b"data").unwrap();
    fs.unlink(ROOT_INO, n("f")).unwrap();
    fs.forget(f, 1); // the kernel's lookup from create
    assert_eq!(fs.read(f, fh, 0, 100).unwrap(), b"data");
    fs.write(f, fh, 4, b"more").unwrap();
    assert_eq!(fs.read(f, fh, 0, 100).unwrap(), b"datamore");
    let free_before = fs.statfs(ROOT_INO).unwrap().bfree;
    fs.release(f, fh).unwrap();
    assert_eq!(errno(fs.getattr(f)), libc::ENOENT);
    assert_eq!(fs.statfs(ROOT_INO).unwrap().bfree, free_before + 1);
    assert_eq!(errno(fs.read(f, fh, 0, 1)), libc::EBADF);
}

#[test]
fn create_excl_trunc_and_handles() {
    let fs = fs();
    let (f, fh) = new_file(&fs, ROOT_INO, "f");
    fs.write(f, fh, 0, b"abcdef").unwrap();
    assert_eq!(
        errno(fs.create(&REQ, ROOT_INO, n("f"), 0o644, libc::O_RDWR | libc::O_EXCL)),
        libc::EEXIST
    );
    let (a, fh2) = fs
        .create(&REQ, ROOT_INO, n("f"), 0o644, libc::O_RDWR)
        .unwrap();
    assert_eq!((a.ino, a.size), (f, 6));
    let fh3 = fs.open(f, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    assert_eq!(fs.getattr(f).unwrap().size, 0);
    assert_eq!(errno(fs.read(f, fh3, 0, 1)), libc::EBADF);
    let ro = fs.open(f, libc::O_RDONLY).unwrap();
    assert_eq!(errno(fs.write(f, ro, 0, b"x")), libc::EBADF);
    assert_eq!(errno(fs.read(ROOT_INO, ro, 0, 1)), libc::EBADF);
    assert_eq!(errno(fs.open(ROOT_INO, libc::O_WRONLY)), libc::EISDIR);
    fs.mkdir(&REQ, ROOT_INO, n("d"), 0o755).unwrap();
    assert_eq!(
        errno(fs.create(&REQ, ROOT_INO, n("d"), 0o644, libc::O_RDWR)),
        libc::EISDIR
    );
    for h in [fh, fh2, fh3, ro] {
        fs.flush(f, h).unwrap();
        fs.fsync(f, h, false).unwrap();
        fs.release(f, h).unwrap();
    }
    assert_eq!(errno(fs.release(f, fh)), libc::EBADF);
}

#[test]
fn read_write_append() {
    let fs = fs();
    let (f, fh) = new_file(&fs, ROOT_INO, "f");
    assert_eq!(fs.write(f, fh, 0, b"hello").unwrap(), 5);
    assert_eq!(fs.write(f, fh, 3, b"LO world").unwrap(), 8);
    assert_eq!(fs.read(f, fh, 0, 100).unwrap(), b"helLO world");
    assert_eq!(fs.read(f, fh, 6, 3).unwrap(), b"wor");
    assert_eq!(fs.read(f, fh, 100, 3).unwrap(), b"");
    let ap = fs.open(f, libc::O_WRONLY | libc::O_APPEND).unwrap();
    fs.write(f, ap, 0, b"!").unwrap();
    assert_eq!(fs.read(f, fh, 0, 100).unwrap(), b"helLO world!");
    // write across chunk boundaries
    let big: Vec<u8> = (0..3 * CHUNK as usize + 17)
        .map(|i| (i % 251) as u8)
        .collect();
    fs.write(f, fh, 1000, &big).unwrap();
    assert_eq!(fs.read(f, fh, 1000, big.len() as u32).unwrap(), big);
    assert_eq!(errno(fs.write(f, fh, i64::MAX as u64, b"x")), libc::EFBIG);
    assert_eq!(
        errno(fs.read(ROOT_INO, fs.opendir(ROOT_INO, 0).unwrap(), 0, 1)),
        libc::EISDIR
    );
}

#[test]
fn setattr_truncate_both_ways_and_times() {
    let fs = fs();
    let (f, fh) = new_file(&fs, ROOT_INO, "f");
    fs.write(f, fh, 0, &[7u8; 10000]).unwrap();
    let set = |s: SetAttr| fs.setattr(&REQ, f, &s, None).unwrap();
    let a = set(SetAttr {
        size: Some(5000),
        ..Default::default()
    });
    assert_eq!((a.size, a.blocks), (5000, 16));
    let a = set(SetAttr {
        size: Some(20000),
        ..Default::default()
    });
    assert_eq!(a.size, 20000);
    let data = fs.read(f, fh, 0, 20000).unwrap();
    assert!(data[..5000].iter().all(|&b| b == 7));
    assert!(
        data[5000..].iter().all(|&b| b == 0),
        "extended range reads zeroes"
    );
    let a = set(SetAttr {
        size: Some(0),
        ..Default::default()
    });
    assert_eq!((a.size, a.blocks), (0, 0));
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let a = set(SetAttr {
        mode: Some(0o4755),
        uid: Some(5),
        gid: Some(6),
        atime: Some(TimeOrNow::Time(t)),
        mtime: Some(TimeOrNow::Time(t)),
        ..Default::default()
    });
    assert_eq!(
        (a.perm, a.uid, a.gid, a.atime, a.mtime),
        (0o4755, 5, 6, t, t)
    );
    assert!(a.ctime > t);
    let a = set(SetAttr {
        mtime: Some(TimeOrNow::Now),
        ..Default::default()
    });
    assert!(a.mtime > t);
    assert_eq!(
        errno(fs.setattr(
            &REQ,
            ROOT_INO,
            &SetAttr {
                size: Some(0),
                ..Default::default()
            },
            None
        )),
        libc::EISDIR
    );
    let big = SetAttr {
        size: Some(u64::MAX),
        ..Default::default()
    };
    assert_eq!(errno(fs.setattr(&REQ, f, &big, None)), libc::EFBIG);
    let fset = SetAttr {
        size: Some(3),
        ..Default::default()
    };
    assert_eq!(fs.setattr(&REQ, f, &fset, Some(fh)).unwrap().size, 3);
}

#[test]
fn sparse_seek_data_hole() {
    let fs = fs();
    let (f, fh) = new_file(&fs, ROOT_INO, "f");
    let mb = 1 << 20;
    fs.write(f, fh, mb, b"x").unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!((a.size, a.blocks), (mb + 1, 8));
    assert_eq!(fs.read(f, fh, 0, 10).unwrap(), vec![0; 10]);
    assert_eq!(fs.lseek(f, fh, 0, Whence::Data).unwrap(), mb);
    assert_eq!(fs.lseek(f, fh, 0, Whence::Hole).unwrap(), 0);
    assert_eq!(fs.lseek(f, fh, mb as i64, Whence::Hole).unwrap(), mb + 1);
    assert_eq!(
        errno(fs.lseek(f, fh, mb as i64 + 1, Whence::Data)),
        libc::ENXIO
    );
    assert_eq!(
        errno(fs.lseek(f, fh, mb as i64 + 1, Whence::Hole)),
        libc::ENXIO
    );
    fs.write(f, fh, 0, b"y").unwrap();
    assert_eq!(fs.lseek(f, fh, 0, Whence::Data).unwrap(), 0);
    assert_eq!(fs.lseek(f, fh, 0, Whence::Hole).unwrap(), CHUNK);
    assert_eq!(fs.lseek(f, fh, 10, Whence::Set).unwrap(), 10);
    assert_eq!(fs.lseek(f, fh, -1, Whence::End).unwrap(), mb);
    assert_eq!(errno(fs.lseek(f, fh, -1, Whence::Set)), libc::EINVAL);
    // Data only past EOF (preallocated with KEEP_SIZE) is not data.
    let (g, gh) = new_file(&fs, ROOT_INO, "g");
    fs.write(g, gh, 0, b"z").unwrap();
    fs.fallocate(g, gh, 2 * CHUNK, CHUNK, libc::FALLOC_FL_KEEP_SIZE)
        .unwrap();
    assert_eq!(errno(fs.lseek(g, gh, 1, Whence::Data)), libc::ENXIO);
    assert_eq!(Whence::from_raw(libc::SEEK_HOLE), Some(Whence::Hole));
    assert_eq!(Whence::from_raw(libc::SEEK_CUR), None);
}

#[test]
fn fallocate_modes_and_punch_hole() {
    let fs = fs();
    let (f, fh) = new_file(&fs, ROOT_INO, "f");
    fs.fallocate(f, fh, 0, 3 * CHUNK, 0).unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!((a.size, a.blocks), (3 * CHUNK, 24));
    fs.fallocate(f, fh, 3 * CHUNK, CHUNK, libc::FALLOC_FL_KEEP_SIZE)
        .unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!((a.size, a.blocks), (3 * CHUNK, 32));
    fs.write(f, fh, 0, &vec![9u8; 3 * CHUNK as usize]).unwrap();
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fs.fallocate(f, fh, 100, 2 * CHUNK, punch).unwrap();
    let a = fs.getattr(f).unwrap();
    assert_eq!(a.size, 3 * CHUNK);
    assert_eq!(a.blocks, 24, "the one whole chunk covered is freed");
    let data = fs.read(f, fh, 0, 3 * CHUNK as u32).unwrap();
    assert!(data[..100].iter().all(|&b| b == 9));
    assert!(data[100..100 + 2 * CHUNK as usize].iter().all(|&b| b == 0));
    assert!(data[100 + 2 * CHUNK as usize..].iter().all(|&b| b == 9));
    assert_eq!(
        fs.lseek(f, fh, CHUNK as i64, Whence::Data).unwrap(),
        2 * CHUNK
    );
    assert_eq!(
        errno(fs.fallocate(f, fh, 0, 10, libc::FALLOC_FL_PUNCH_HOLE)),
        libc::EOPNOTSUPP
    );
    assert_eq!(errno(fs.fallocate(f, fh, 0, 0, 0)), libc::EINVAL);
    assert_eq!(errno(fs.fallocate(f, fh, u64::MAX - 1, 10, 0)), libc::EFBIG);
    let ro = fs.open(f, libc::O_RDONLY).unwrap();
    assert_eq!(errno(fs.fallocate(f, ro, 0, 1, 0)), libc::EBADF);
}

#[test]
fn no_space() {
    let fs: Arc<dyn FileSystem> = Arc::new(RamFs::with_config(RamFsConfig {
        max_bytes: 4 * CHUNK,
        max_inodes: 3,
    }));
    let (f, fh) = new_file(&fs, ROOT_INO, "f");
    fs.write(f, fh, 0, &vec![1u8; 4 * CHUNK as usize]).unwrap();
    assert_eq!(errno(fs.write(f, fh, 4 * CHUNK, b"x")), libc::ENOSPC);
    fs.write(f, fh, 0, b"overwrite needs no space").unwrap();
    new_file(&fs, ROOT_INO, "g");
    assert_eq!(errno(fs.mkdir(&REQ, ROOT_INO, n("d"), 0o755)), libc::ENOSPC);
    let st = fs.statfs(ROOT_INO).unwrap();
    assert_eq!(
        (st.blocks, st.bfree, st.files, st.ffree, st.namelen),
        (4, 0, 3, 0, 255)
    );
    fs.setattr(
        &REQ,
        f,
        &SetAttr {
            size: Some(0),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(fs.statfs(ROOT_INO).unwrap().bfree, 4);
}

#[test]
fn rename_plain_and_errors() {
    let fs = fs();
    let a = fs.mkdir(&REQ, ROOT_INO, n("a"), 0o755).unwrap().ino;
    let b = fs.mkdir(&REQ, a, n("b"), 0o755).unwrap().ino;
    let (f, _) = new_file(&fs, ROOT_INO, "f");
    let (g, _) = new_file(&fs, ROOT_INO, "g");
    assert_eq!(
        errno(fs.rename(ROOT_INO, n("a"), b, n("x"), 0)),
        libc::EINVAL
    );
    assert_eq!(
        errno(fs.rename(ROOT_INO, n("a"), a, n("x"), 0)),
        libc::EINVAL
    );
    assert_eq!(
        errno(fs.rename(ROOT_INO, n("a"), ROOT_INO, n("f"), 0)),
        libc::ENOTDIR
    );
    assert_eq!(
        errno(fs.rename(ROOT_INO, n("f"), ROOT_INO, n("a"), 0)),
        libc::EISDIR
    );
    assert_eq!(
        errno(fs.rename(ROOT_INO, n("nope"), ROOT_INO, n("x"), 0)),
        libc::ENOENT
    );
    assert_eq!(
        errno(fs.rename(ROOT_INO, n("f"), ROOT_INO, n("g"), RENAME_NOREPLACE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(fs.rename(
            ROOT_INO,
            n("f"),
            ROOT_INO,
            n("g"),
            RENAME_NOREPLACE | RENAME_EXCHANGE
        )),
        libc::EINVAL
    );
    assert_eq!(
        errno(fs.rename(ROOT_INO, n("f"), ROOT_INO, n("zz"), RENAME_EXCHANGE)),
        libc::ENOENT
    );
    fs.mkdir(&REQ, ROOT_INO, n("e"), 0o755).unwrap();
    new_file(&fs, b, "inner");
    assert_eq!(
        errno(fs.rename(ROOT_INO, n("e"), a, n("b"), 0)),
        libc::ENOTEMPTY
    );
    // overwrite a file: the old target loses its link
    fs.rename(ROOT_INO, n("f"), ROOT_INO, n("g"), 0).unwrap();
    assert_eq!(fs.lookup(ROOT_INO, n("g")).unwrap().ino, f);
    assert_eq!(fs.getattr(g).unwrap().nlink, 0);
    // move a directory across parents: nlink and ".." follow
    fs.rename(a, n("b"), ROOT_INO, n("b2"), 0).unwrap();
    assert_eq!(fs.getattr(a).unwrap().nlink, 2);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 5);
    assert_eq!(fs.lookup(b, n("..")).unwrap().ino, ROOT_INO);
    // a directory over an empty directory
    fs.rename(ROOT_INO, n("b2"), ROOT_INO, n("e"), 0).unwrap();
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 4);
    assert_eq!(names(&fs, ROOT_INO), [".", "..", "a", "g", "e"]);
    // rename onto another link of the same inode does nothing
    fs.link(f, ROOT_INO, n("h")).unwrap();
    fs.rename(ROOT_INO, n("g"), ROOT_INO, n("h"), 0).unwrap();
    assert_eq!(fs.getattr(f).unwrap().nlink, 2);
}

#[test]
fn rename_exchange() {
    let fs = fs();
    let d = fs.mkdir(&REQ, ROOT_INO, n("d"), 0o755).unwrap().ino;
    let sub = fs.mkdir(&REQ, d, n("sub"), 0o755).unwrap().ino;
    let (f, _) = new_file(&fs, ROOT_INO, "f");
    fs.rename(ROOT_INO, n("f"), d, n("sub"), RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(fs.lookup(ROOT_INO, n("f")).unwrap().ino, sub);
    assert_eq!(fs.lookup(d, n("sub")).unwrap().ino, f);
    assert_eq!(fs.lookup(sub, n("..")).unwrap().ino, ROOT_INO);
    assert_eq!(fs.getattr(d).unwrap().nlink, 2);
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 4);
    // exchanging a directory with an entry inside itself is a loop
    new_file(&fs, sub, "x");
    assert_eq!(
        errno(fs.rename(ROOT_INO, n("f"), sub, n("x"), RENAME_EXCHANGE)),
        libc::EINVAL
    );
    // exchange does not care about emptiness or kinds
    fs.rename(ROOT_INO, n("d"), ROOT_INO, n("f"), RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(fs.lookup(ROOT_INO, n("d")).unwrap().ino, sub);
}

#[test]
fn readdir_cookies_stable_under_changes() {
    let fs = fs();
    for i in 0..10 {
        new_file(&fs, ROOT_INO, &format!("f{i}"));
    }
    let fh = fs.opendir(ROOT_INO, 0).unwrap();
    let first = fs.readdir(ROOT_INO, fh, 0, 5).unwrap();
    let firstn: Vec<_> = first.iter().map(|e| e.name.clone()).collect();
    assert_eq!(firstn, [&b"."[..], b"..", b"f0", b"f1", b"f2"]);
    assert_eq!((first[0].offset, first[1].offset), (1, 2));
    // remove an entry already returned, one not yet returned, and add one
    fs.unlink(ROOT_INO, n("f1")).unwrap();
    fs.unlink(ROOT_INO, n("f5")).unwrap();
    new_file(&fs, ROOT_INO, "new");
    let mut rest = Vec::new();
    let mut off = first.last().unwrap().offset;
    loop {
        let page = fs.readdir(ROOT_INO, fh, off, 2).unwrap();
        if page.is_empty() {
            break;
        }
        off = page.last().unwrap().offset;
        rest.extend(page.into_iter().map(|e| String::from_utf8(e.name).unwrap()));
        if rest.len() < 6 {
            // entries created during the listing are past the stream's end
            new_file(&fs, ROOT_INO, &format!("late{}", rest.len()));
        }
        if rest.len() > 100 {
            panic!("readdir does not terminate");
        }
    }
    // every survivor exactly once, in cookie order; nothing made after
    // opendir (the stream ends where the directory ended then)
    assert_eq!(rest, ["f3", "f4", "f6", "f7", "f8", "f9"]);
    // a rewind shows them
    let all: Vec<_> = fs
        .readdir(ROOT_INO, fh, 0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .collect();
    assert!(
        all.iter().any(|n| n == "new") && all.iter().any(|n| n == "late4"),
        "{all:?}"
    );
    // resuming from a removed entry's cookie still works
    let again = fs
        .readdir(ROOT_INO, fh, first[3].offset, usize::MAX)
        .unwrap();
    assert_eq!(again[0].name, b"f2");
    fs.releasedir(ROOT_INO, fh).unwrap();
    assert_eq!(errno(fs.readdir(ROOT_INO, fh, 0, 1)), libc::EBADF);
    let (f, ffh) = new_file(&fs, ROOT_INO, "zz");
    assert_eq!(errno(fs.opendir(f, 0)), libc::ENOTDIR);
    assert_eq!(errno(fs.readdir(f, ffh, 0, 1)), libc::EBADF);
    let dfh = fs.opendir(ROOT_INO, 0).unwrap();
    fs.fsyncdir(ROOT_INO, dfh, true).unwrap();
}

#[test]
fn readdirplus_counts_lookups() {
    let fs = fs();
    let (f, fh) = new_file(&fs, ROOT_INO, "f");
    fs.forget(f, 1);
    fs.release(f, fh).unwrap();
    let dfh = fs.opendir(ROOT_INO, 0).unwrap();
    let v = fs.readdirplus(ROOT_INO, dfh, 0, usize::MAX).unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(v[2].1.ino, f);
    assert_eq!(v[2].0.kind, FileType::RegularFile);
    fs.unlink(ROOT_INO, n("f")).unwrap();
    assert!(fs.getattr(f).is_ok(), "readdirplus entry holds a lookup");
    fs.forget(f, 1);
    assert_eq!(errno(fs.getattr(f)), libc::ENOENT);
}

#[test]
fn xattrs_and_limits() {
    let fs = fs();
    let (f, _) = new_file(&fs, ROOT_INO, "f");
    fs.setxattr(&Request::root(), f, n("user.a"), b"1", 0)
        .unwrap();
    fs.setxattr(&Request::root(), f, n("security.selinux"), b"ctx", 0)
        .unwrap();
    assert_eq!(fs.getxattr(f, n("user.a"), 0).unwrap(), XattrReply::Size(1));
    assert_eq!(
        fs.getxattr(f, n("user.a"), 10).unwrap(),
        XattrReply::Data(b"1".to_vec())
    );
    fs.setxattr(&Request::root(), f, n("user.a"), b"long value", 0)
        .unwrap();
    assert_eq!(errno(fs.getxattr(f, n("user.a"), 3)), libc::ERANGE);
    assert_eq!(errno(fs.getxattr(f, n("user.zz"), 100)), libc::ENODATA);
    assert_eq!(
        errno(fs.setxattr(&Request::root(), f, n("user.a"), b"", XATTR_CREATE)),
        libc::EEXIST
    );
    assert_eq!(
        errno(fs.setxattr(&Request::root(), f, n("user.b"), b"", XATTR_REPLACE)),
        libc::ENODATA
    );
    assert_eq!(
        errno(fs.setxattr(
            &Request::root(),
            f,
            n("user.b"),
            b"",
            XATTR_CREATE | XATTR_REPLACE
        )),
        libc::EINVAL
    );
    fs.setxattr(&Request::root(), f, n("user.a"), b"r", XATTR_REPLACE)
        .unwrap();
    fs.setxattr(&Request::root(), f, n("user.empty"), b"", XATTR_CREATE)
        .unwrap();
    assert_eq!(
        fs.getxattr(f, n("user.empty"), 0).unwrap(),
        XattrReply::Size(0)
    );
    let list = b"security.selinux\0user.a\0user.empty\0".to_vec();
    assert_eq!(
        fs.listxattr(f, 0).unwrap(),
        XattrReply::Size(list.len() as u32)
    );
    assert_eq!(
        fs.listxattr(f, 1000).unwrap(),
        XattrReply::Data(list.clone())
    );
    assert_eq!(errno(fs.listxattr(f, list.len() as u32 - 1)), libc::ERANGE);
    // Linux limits: value 64 KiB (E2BIG past it), name 255 (ERANGE past it)
    fs.setxattr(
        &Request::root(),
        f,
        n("user.big"),
        &vec![0u8; XATTR_SIZE_MAX],
        0,
    )
    .unwrap();
    assert_eq!(
        errno(fs.setxattr(
            &Request::root(),
            f,
            n("user.big"),
            &vec![0u8; XATTR_SIZE_MAX + 1],
            0
        )),
        libc::E2BIG
    );
    let name255 = format!("user.{}", "n".repeat(250));
    fs.setxattr(&Request::root(), f, n(&name255), b"v", 0)
        .unwrap();
    let name256 = format!("user.{}", "n".repeat(251));
    assert_eq!(
        errno(fs.setxattr(&Request::root(), f, n(&name256), b"v", 0)),
        libc::ERANGE
    );
    assert_eq!(errno(fs.getxattr(f, n(&name256), 0)), libc::ERANGE);
    assert_eq!(
        errno(fs.setxattr(&Request::root(), f, n(""), b"v", 0)),
        libc::ERANGE
    );
    assert_eq!(
        errno(fs.setxattr(&Request::root(), f, n("foo.bar"), b"v", 0)),
        libc::EOPNOTSUPP
    );
    assert_eq!(
        errno(fs.setxattr(&Request::root(), f, n("user."), b"v", 0)),
        libc::EINVAL
    );
    fs.setxattr(&Request::root(), f, n("trusted.t"), b"v", 0)
        .unwrap();
    // ACL names take ACLs only (see ramfs_acl.rs).
    assert_eq!(
        errno(fs.setxattr(&Request::root(), f, n("system.posix_acl_access"), b"v", 0)),
        libc::EINVAL
    );
    fs.setxattr(&Request::root(), f, n("system.other"), b"v", 0)
        .unwrap();
    fs.removexattr(f, n("user.a")).unwrap();
    assert_eq!(errno(fs.removexattr(f, n("user.a"))), libc::ENODATA);
    assert_eq!(errno(fs.getxattr(f, n("user.a"), 10)), libc::ENODATA);
    let dev = fs
        .mknod(&REQ, ROOT_INO, n("p"), libc::S_IFIFO | 0o600, 0)
        .unwrap();
    assert_eq!(
        errno(fs.setxattr(&Request::root(), dev.ino, n("user.x"), b"v", 0)),
        libc::EPERM
    );
    // names list limit
    let (g, _) = new_file(&fs, ROOT_INO, "g");
    let mut i = 0;
    let err = loop {
        match fs.setxattr(&Request::root(), g, n(&format!("user.{i:0>200}")), b"", 0) {
            Ok(()) => i += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err.errno(), libc::ENOSPC);
    assert_eq!(i, XATTR_LIST_MAX / 206);
}

#[test]
fn access_checks() {
    let fs = fs();
    let (f, _) = new_file(&fs, ROOT_INO, "f"); // 0o644, uid 1000, gid 100
    let other = Request {
        uid: 2000,
        gid: 200,
        pid: 1,
        umask: 0,
    };
    let group = Request {
        uid: 2000,
        gid: 100,
        pid: 1,
        umask: 0,
    };
    fs.access(&REQ, f, libc::R_OK | libc::W_OK).unwrap();
    assert_eq!(errno(fs.access(&REQ, f, libc::X_OK)), libc::EACCES);
    fs.access(&other, f, libc::R_OK).unwrap();
    assert_eq!(errno(fs.access(&other, f, libc::W_OK)), libc::EACCES);
    assert_eq!(errno(fs.access(&group, f, libc::W_OK)), libc::EACCES);
    fs.access(&other, f, libc::F_OK).unwrap();
    fs.access(&Request::root(), f, libc::W_OK).unwrap();
    assert_eq!(
        errno(fs.access(&Request::root(), f, libc::X_OK)),
        libc::EACCES
    );
    fs.access(&Request::root(), ROOT_INO, libc::X_OK).unwrap();
    assert_eq!(errno(fs.access(&REQ, 12345, libc::F_OK)), libc::ENOENT);
}

#[test]
fn copy_file_range_works() {
    let fs = fs();
    let (a, ah) = new_file(&fs, ROOT_INO, "a");
    let (b, bh) = new_file(&fs, ROOT_INO, "b");
    let data: Vec<u8> = (0..10000u32).map(|i| (i % 200 + 1) as u8).collect();
    fs.write(a, ah, 0, &data).unwrap();
    fs.write(a, ah, 5 * CHUNK, b"tail").unwrap(); // hole in between
    fs.write(b, bh, 0, &vec![0xffu8; 8 * CHUNK as usize])
        .unwrap();
    let size = 5 * CHUNK + 4;
    assert_eq!(
        fs.copy_file_range(a, ah, 0, b, bh, 10, 1 << 30, 0).unwrap(),
        size
    );
    let got = fs.read(b, bh, 10, size as u32).unwrap();
    assert_eq!(got, fs.read(a, ah, 0, size as u32).unwrap());
    assert_eq!(fs.read(b, bh, 0, 10).unwrap(), vec![0xff; 10]);
    assert_eq!(fs.copy_file_range(a, ah, size, b, bh, 0, 10, 0).unwrap(), 0);
    assert_eq!(
        errno(fs.copy_file_range(a, ah, 0, a, ah, 100, 200, 0)),
        libc::EINVAL
    );
    assert_eq!(
        fs.copy_file_range(a, ah, 0, a, ah, 200, 100, 0).unwrap(),
        100
    );
    assert_eq!(
        errno(fs.copy_file_range(a, ah, 0, b, bh, 0, 1, 1)),
        libc::EINVAL
    );
    let ro = fs.open(b, libc::O_RDONLY).unwrap();
    assert_eq!(
        errno(fs.copy_file_range(a, ah, 0, b, ro, 0, 1, 0)),
        libc::EBADF
    );
    // sparse destination: the hole of the source stays a hole
    let (c, ch) = new_file(&fs, ROOT_INO, "c");
    fs.copy_file_range(a, ah, 0, c, ch, 0, size, 0).unwrap();
    assert_eq!(fs.getattr(c).unwrap().size, size);
    assert_eq!(
        fs.lseek(c, ch, 3 * CHUNK as i64, Whence::Data).unwrap(),
        5 * CHUNK
    );
}

#[test]
fn errno_mapping() {
    assert_eq!(FsError::NotFound.errno(), libc::ENOENT);
    assert_eq!(FsError::TooBig.errno(), libc::EFBIG);
    assert_eq!(FsError::XattrTooBig.errno(), libc::E2BIG);
    assert_eq!(FsError::RangeTooSmall.errno(), libc::ERANGE);
    assert_eq!(FsError::NoData.errno(), libc::ENODATA);
    assert_eq!(FsError::CrossDevice.errno(), libc::EXDEV);
    assert_eq!(FsError::ReadOnly.errno(), libc::EROFS);
    assert_eq!(FsError::Io("x".into()).errno(), libc::EIO);
    assert_eq!(FsError::Loop.errno(), libc::ELOOP);
}
