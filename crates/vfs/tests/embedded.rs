//! The embedded VFS over ramfs: path-walk edge cases, descriptor
//! semantics, the getdents64 layout, permission checks for unprivileged
//! callers, and the mount table. The same call sequences run on a disk
//! image in `crates/diskfs/tests/embedded_vfs.rs`.

use std::sync::Arc;

use aegis_vfs::embedded::{dirent64_records, FDS_MAX, PATH_MAX};
use aegis_vfs::*;

const RW_CREATE: i32 = libc::O_RDWR | libc::O_CREAT;

fn setup() -> (Arc<Vfs>, Process) {
    let vfs = Vfs::new(Arc::new(RamFs::new()));
    let p = vfs.process(Creds::root());
    (vfs, p)
}

fn ino(p: &Process, path: &str) -> u64 {
    p.stat(path.as_bytes()).unwrap().st_ino
}

fn err<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.expect_err("the call should fail").errno()
}

#[test]
fn empty_repeated_and_dotted_paths_walk_as_on_linux() {
    let (_v, p) = setup();
    p.mkdir(b"/a", 0o755).unwrap();
    p.mkdir(b"/a/b", 0o755).unwrap();
    let root = ino(&p, "/");
    assert_eq!(err(p.stat(b"")), libc::ENOENT);
    for same_as_root in ["//", "/./", "/../", "/..", "/a/..", "///a/b/../../"] {
        assert_eq!(ino(&p, same_as_root), root, "{same_as_root}");
    }
    assert_eq!(ino(&p, "/a//b/./"), ino(&p, "/a/b"));
    p.chdir(b"/a").unwrap();
    assert_eq!(ino(&p, "b/.."), ino(&p, "/a"));
    assert_eq!(ino(&p, "."), ino(&p, "/a"));
    // A file in the middle is ENOTDIR; a trailing slash on a file too.
    let fd = p.open(b"/a/f", RW_CREATE, 0o644).unwrap();
    p.close(fd).unwrap();
    assert_eq!(err(p.stat(b"/a/f/x")), libc::ENOTDIR);
    assert_eq!(err(p.stat(b"/a/f/")), libc::ENOTDIR);
    assert_eq!(err(p.stat(b"/a/nope/x")), libc::ENOENT);
    // Lengths and NUL.
    let long = vec![b'x'; 256];
    assert_eq!(err(p.stat(&long)), libc::ENAMETOOLONG);
    assert_eq!(err(p.mkdir(&long, 0o755)), libc::ENAMETOOLONG);
    assert_eq!(err(p.stat(&[b'x'; 255])), libc::ENOENT);
    let deep: Vec<u8> = b"a/".iter().copied().cycle().take(PATH_MAX).collect();
    assert_eq!(err(p.stat(&deep)), libc::ENAMETOOLONG);
    assert_eq!(err(p.stat(b"a\0b")), libc::EINVAL);
    assert_eq!(err(p.mkdir(b"/a/..", 0o755)), libc::EEXIST);
    assert_eq!(err(p.rmdir(b"/a/b/.")), libc::EINVAL);
    assert_eq!(err(p.rmdir(b"/a/b/..")), libc::ENOTEMPTY);
}

#[test]
fn symlink_chains_of_40_resolve_and_41_is_eloop() {
    let (_v, p) = setup();
    let fd = p.open(b"/target", RW_CREATE, 0o644).unwrap();
    p.write(fd, b"end").unwrap();
    p.close(fd).unwrap();
    p.symlink(b"/target", b"/l0").unwrap();
    for i in 1..=40 {
        p.symlink(
            format!("l{}", i - 1).as_bytes(),
            format!("/l{i}").as_bytes(),
        )
        .unwrap();
    }
    // l39 is 40 links from the target; l40 is 41.
    let fd = p.open(b"/l39", libc::O_RDONLY, 0).unwrap();
    assert_eq!(p.read(fd, 10).unwrap(), b"end");
    assert_eq!(err(p.open(b"/l40", libc::O_RDONLY, 0)), libc::ELOOP);
    assert_eq!(err(p.stat(b"/l40")), libc::ELOOP);
    // Not following the last one.
    assert_eq!(
        p.lstat(b"/l40").unwrap().st_mode & libc::S_IFMT,
        libc::S_IFLNK
    );
    assert_eq!(p.readlink(b"/l40").unwrap(), b"l39");
    assert_eq!(
        err(p.open(b"/l0", libc::O_RDONLY | libc::O_NOFOLLOW, 0)),
        libc::ELOOP
    );
    assert_eq!(err(p.readlink(b"/target")), libc::EINVAL);
    // A symlink in the middle, relative to its own directory.
    p.mkdir(b"/d", 0o755).unwrap();
    p.mkdir(b"/d/e", 0o755).unwrap();
    p.symlink(b"e", b"/d/toe").unwrap();
    assert_eq!(ino(&p, "/d/toe/.."), ino(&p, "/d"));
    // O_CREAT through a dangling symlink creates its target.
    p.symlink(b"made", b"/d/dangling").unwrap();
    let fd = p.open(b"/d/dangling", RW_CREATE, 0o600).unwrap();
    p.close(fd).unwrap();
    assert!(p.lstat(b"/d/made").is_ok());
    assert_eq!(
        err(p.open(b"/d/dangling", RW_CREATE | libc::O_EXCL, 0o600)),
        libc::EEXIST
    );
}

#[test]
fn descriptors_take_the_lowest_number_and_dup_shares_the_offset() {
    let (_v, p) = setup();
    let a = p.open(b"/f", RW_CREATE, 0o644).unwrap();
    let b = p.open(b"/f", libc::O_RDONLY, 0).unwrap();
    assert_eq!((a, b), (0, 1));
    p.close(a).unwrap();
    let c = p.open(b"/f", libc::O_WRONLY, 0).unwrap();
    assert_eq!(c, 0, "the lowest free number");
    p.write(c, b"hello world").unwrap();
    let d = p.dup(b).unwrap();
    assert_eq!(d, 2);
    assert_eq!(p.read(b, 5).unwrap(), b"hello");
    assert_eq!(p.read(d, 6).unwrap(), b" world", "dup shares the offset");
    assert_eq!(p.lseek(d, 0, libc::SEEK_CUR).unwrap(), 11);
    assert_eq!(p.lseek(b, -5, libc::SEEK_END).unwrap(), 6);
    assert_eq!(p.pread(d, 5, 0).unwrap(), b"hello");
    assert_eq!(p.lseek(d, 0, libc::SEEK_CUR).unwrap(), 6, "pread leaves it");
    // Wrong way, closed, never opened.
    assert_eq!(err(p.write(b, b"x")), libc::EBADF);
    assert_eq!(err(p.read(c, 1)), libc::EBADF);
    p.close(d).unwrap();
    assert_eq!(err(p.read(d, 1)), libc::EBADF);
    assert_eq!(err(p.close(d)), libc::EBADF);
    assert_eq!(err(p.read(77, 1)), libc::EBADF);
    assert_eq!(err(p.read(-1, 1)), libc::EBADF);
    assert_eq!(err(p.ftruncate(b, 0)), libc::EINVAL);
    // O_APPEND writes at the end whatever the offset.
    let e = p.open(b"/f", libc::O_WRONLY | libc::O_APPEND, 0).unwrap();
    p.write(e, b"!").unwrap();
    assert_eq!(p.pread(b, 20, 0).unwrap(), b"hello world!");
    // dup3 onto a chosen number.
    assert_eq!(p.dup3(b, 9, libc::O_CLOEXEC).unwrap(), 9);
    assert!(p.cloexec(9).unwrap());
    assert_eq!(err(p.dup3(b, b, 0)), libc::EINVAL);
}

#[test]
fn cloexec_descriptors_do_not_reach_a_spawned_child() {
    let (_v, p) = setup();
    let keep = p.open(b"/k", RW_CREATE, 0o644).unwrap();
    let drop = p.open(b"/d", RW_CREATE | libc::O_CLOEXEC, 0o644).unwrap();
    p.write(keep, b"abc").unwrap();
    let child = p.spawn();
    assert_eq!(err(child.write(drop, b"x")), libc::EBADF);
    // The child's descriptor shares the parent's open file and offset.
    child.write(keep, b"def").unwrap();
    assert_eq!(p.lseek(keep, 0, libc::SEEK_CUR).unwrap(), 6);
    assert!(p.write(drop, b"still open here").is_ok());
    let forked = p.fork();
    assert!(
        forked.cloexec(drop).unwrap(),
        "fork keeps it, exec drops it"
    );
    forked.exec();
    assert_eq!(err(forked.cloexec(drop)), libc::EBADF);
}

#[test]
fn the_descriptor_table_is_bounded() {
    let (_v, p) = setup();
    p.set_fd_limit(16);
    let fd = p.open(b"/f", RW_CREATE, 0o644).unwrap();
    let mut n = vec![fd];
    while let Ok(fd) = p.open(b"/f", libc::O_RDONLY, 0) {
        n.push(fd);
        assert!(n.len() <= FDS_MAX);
    }
    assert_eq!(n.len(), 16);
    assert_eq!(err(p.open(b"/f", libc::O_RDONLY, 0)), libc::EMFILE);
    assert_eq!(err(p.dup(0)), libc::EMFILE);
    p.close(7).unwrap();
    assert_eq!(p.open(b"/f", libc::O_RDONLY, 0).unwrap(), 7);
}

#[test]
fn open_flags_follow_linux() {
    let (_v, p) = setup();
    p.mkdir(b"/dir", 0o755).unwrap();
    assert_eq!(err(p.open(b"/dir", libc::O_WRONLY, 0)), libc::EISDIR);
    assert_eq!(err(p.open(b"/dir", RW_CREATE, 0o644)), libc::EISDIR);
    assert_eq!(err(p.open(b"/new/", RW_CREATE, 0o644)), libc::EISDIR);
    assert_eq!(err(p.open(b"/nope", libc::O_RDONLY, 0)), libc::ENOENT);
    let fd = p.open(b"/f", RW_CREATE, 0o644).unwrap();
    p.write(fd, b"12345").unwrap();
    assert_eq!(
        err(p.open(b"/f", libc::O_RDONLY | libc::O_DIRECTORY, 0)),
        libc::ENOTDIR
    );
    assert_eq!(
        err(p.open(b"/f", RW_CREATE | libc::O_EXCL, 0o644)),
        libc::EEXIST
    );
    let t = p.open(b"/f", libc::O_WRONLY | libc::O_TRUNC, 0).unwrap();
    assert_eq!(p.fstat(t).unwrap().st_size, 0);
    assert_eq!(err(p.open(b"/f", libc::O_ACCMODE, 0)), libc::EINVAL);
    let d = p
        .open(b"/dir", libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .unwrap();
    assert_eq!(err(p.read(d, 1)), libc::EISDIR);
    // openat relative to a directory descriptor.
    let g = p.openat(Some(d), b"g", RW_CREATE, 0o600).unwrap();
    p.close(g).unwrap();
    assert!(p.stat(b"/dir/g").is_ok());
    assert_eq!(
        err(p.openat(Some(fd), b"g", libc::O_RDONLY, 0)),
        libc::ENOTDIR
    );
}

#[test]
fn getdents64_records_have_the_linux_layout_and_reach_the_end() {
    let (_v, p) = setup();
    p.mkdir(b"/d", 0o755).unwrap();
    let mut want = vec![b".".to_vec(), b"..".to_vec()];
    for i in 0..50 {
        let name = format!("entry-{i:03}-{}", "x".repeat(i % 7));
        let fd = p
            .open(format!("/d/{name}").as_bytes(), RW_CREATE, 0o644)
            .unwrap();
        p.close(fd).unwrap();
        want.push(name.into_bytes());
    }
    p.mkdir(b"/d/sub", 0o755).unwrap();
    want.push(b"sub".to_vec());
    let fd = p
        .open(b"/d", libc::O_RDONLY | libc::O_DIRECTORY, 0)
        .unwrap();
    assert_eq!(err(p.getdents64(fd, 10)), libc::EINVAL, "no record fits");
    let mut got = Vec::new();
    for _ in 0..1000 {
        let buf = p.getdents64(fd, 200).unwrap();
        if buf.is_empty() {
            break;
        }
        assert!(buf.len() <= 200 && buf.len() % 8 == 0);
        got.extend(dirent64_records(&buf).expect("well-formed records"));
    }
    let names: Vec<Vec<u8>> = got.iter().map(|d| d.name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "every entry once, the end reached");
    let sub = got.iter().find(|d| d.name == b"sub").unwrap();
    assert_eq!(sub.kind, libc::DT_DIR);
    assert_eq!(sub.ino, ino(&p, "/d/sub"));
    assert!(got.iter().all(|d| d.reclen as usize > 19 + d.name.len()));
    // A rewind reads it all again.
    p.lseek(fd, 0, libc::SEEK_SET).unwrap();
    let again = dirent64_records(&p.getdents64(fd, 1 << 16).unwrap()).unwrap();
    assert_eq!(again.len(), want.len());
}

/// A root-owned tree with an unprivileged caller (uid 1000, gid 1000,
/// groups 2000).
fn unprivileged() -> (Arc<Vfs>, Process, Process) {
    let (v, root) = setup();
    root.mkdir(b"/pub", 0o777).unwrap();
    root.mkdir(b"/tmp", 0o1777).unwrap();
    root.mkdir(b"/closed", 0o700).unwrap();
    // The umask (022) took group and other write away.
    assert_eq!(root.stat(b"/pub").unwrap().st_mode & 0o7777, 0o755);
    root.chmod(b"/pub", 0o777).unwrap();
    root.chmod(b"/tmp", 0o1777).unwrap();
    let fd = root.open(b"/secret", RW_CREATE, 0o600).unwrap();
    root.write(fd, b"s").unwrap();
    root.close(fd).unwrap();
    let fd = root.open(b"/groupfile", RW_CREATE, 0o640).unwrap();
    root.close(fd).unwrap();
    root.chown(b"/groupfile", None, Some(2000), true).unwrap();
    let mut user = Creds::user(1000, 1000);
    user.groups = vec![2000];
    let u = v.process(user);
    (v, root, u)
}

#[test]
fn an_unprivileged_caller_gets_linux_denials() {
    let (v, root, u) = unprivileged();
    assert_eq!(err(u.open(b"/secret", libc::O_RDONLY, 0)), libc::EACCES);
    assert_eq!(
        err(u.open(b"/x", RW_CREATE, 0o644)),
        libc::EACCES,
        "/ is 0755 root"
    );
    assert_eq!(err(u.mkdir(b"/closed/x", 0o755)), libc::EACCES);
    assert_eq!(err(u.stat(b"/closed/anything")), libc::EACCES, "no search");
    assert_eq!(err(u.unlink(b"/secret")), libc::EACCES);
    assert_eq!(err(u.chmod(b"/secret", 0o666)), libc::EPERM);
    assert_eq!(
        err(u.chown(b"/secret", Some(1000), None, true)),
        libc::EPERM
    );
    assert_eq!(err(u.truncate(b"/secret", 0)), libc::EACCES);
    assert_eq!(
        err(u.setxattr(b"/secret", b"user.a", b"v", 0, true)),
        libc::EACCES
    );
    assert_eq!(
        err(u.setxattr(b"/pub", b"trusted.a", b"v", 0, true)),
        libc::EPERM
    );
    assert_eq!(
        err(u.mknodat(None, b"/pub/dev", libc::S_IFCHR | 0o600, 0)),
        libc::EPERM
    );
    assert_eq!(err(u.mount(b"/pub", Arc::new(RamFs::new()))), libc::EPERM);
    // A supplementary group reads a group-readable file.
    let fd = u.open(b"/groupfile", libc::O_RDONLY, 0).unwrap();
    u.close(fd).unwrap();
    assert_eq!(err(u.open(b"/groupfile", libc::O_WRONLY, 0)), libc::EACCES);
    // Own files in a world-writable directory.
    let fd = u.open(b"/pub/mine", RW_CREATE, 0o600).unwrap();
    u.close(fd).unwrap();
    assert_eq!(u.stat(b"/pub/mine").unwrap().st_uid, 1000);
    u.chmod(b"/pub/mine", 0o640).unwrap();
    assert_eq!(
        err(u.chown(b"/pub/mine", None, Some(3000), true)),
        libc::EPERM
    );
    u.chown(b"/pub/mine", None, Some(2000), true).unwrap();
    // The sticky bit: another user's file in /tmp stays.
    let fd = root.open(b"/tmp/roots", RW_CREATE, 0o666).unwrap();
    root.close(fd).unwrap();
    root.chmod(b"/tmp/roots", 0o666).unwrap();
    assert_eq!(err(u.unlink(b"/tmp/roots")), libc::EPERM);
    assert_eq!(err(u.rename(b"/tmp/roots", b"/tmp/moved")), libc::EPERM);
    let fd = u.open(b"/tmp/users", RW_CREATE, 0o644).unwrap();
    u.close(fd).unwrap();
    u.unlink(b"/tmp/users").unwrap();
    // utimensat: "now" with write permission, explicit times only owners.
    assert!(u
        .utimensat(
            b"/tmp/roots",
            Some(TimeOrNow::Now),
            Some(TimeOrNow::Now),
            true
        )
        .is_ok());
    let t = Some(TimeOrNow::Time(std::time::UNIX_EPOCH));
    assert_eq!(err(u.utimensat(b"/tmp/roots", t, t, true)), libc::EPERM);
    assert_eq!(err(u.access(b"/secret", libc::R_OK)), libc::EACCES);
    assert!(u.access(b"/secret", libc::F_OK).is_ok());
    drop(v);
}

#[test]
fn mounts_cross_both_ways_and_refuse_while_busy() {
    let (v, p) = setup();
    p.mkdir(b"/data", 0o755).unwrap();
    p.mkdir(b"/data/under", 0o755).unwrap();
    let under = ino(&p, "/data");
    let small = RamFs::with_config(RamFsConfig {
        max_bytes: 1 << 20,
        max_inodes: 100,
    });
    p.mount(b"/data", Arc::new(small)).unwrap();
    assert_ne!(
        p.stat(b"/data").unwrap().st_dev,
        p.stat(b"/").unwrap().st_dev
    );
    assert_eq!(err(p.stat(b"/data/under")), libc::ENOENT, "covered");
    p.mkdir(b"/data/inner", 0o755).unwrap();
    // a/../b across the mount point, both ways.
    assert_eq!(ino(&p, "/data/inner/../.."), ino(&p, "/"));
    assert_eq!(ino(&p, "/data/../data/inner"), ino(&p, "/data/inner"));
    p.chdir(b"/data/inner").unwrap();
    assert_eq!(p.stat(b"../..").unwrap().st_ino, ino(&p, "/"));
    // The root's directory listing shows the mounted root's inode.
    let d = p.open(b"/", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
    let ents = dirent64_records(&p.getdents64(d, 4096).unwrap()).unwrap();
    let data = ents.iter().find(|e| e.name == b"data").unwrap();
    assert_eq!(data.ino, ROOT_INO);
    p.close(d).unwrap();
    // Statfs is the mounted filesystem's; links and renames stay inside.
    assert!(p.statfs(b"/data").unwrap().blocks < p.statfs(b"/").unwrap().blocks);
    let fd = p.open(b"/data/f", RW_CREATE, 0o644).unwrap();
    assert_eq!(err(p.link(b"/data/f", b"/f")), libc::EXDEV);
    assert_eq!(err(p.rename(b"/data/f", b"/f")), libc::EXDEV);
    assert_eq!(err(p.rmdir(b"/data")), libc::EBUSY);
    // A mount over a mount stacks, as on Linux; unmount takes the top.
    p.mount(b"/data", Arc::new(RamFs::new())).unwrap();
    assert_eq!(err(p.stat(b"/data/inner")), libc::ENOENT);
    p.umount(b"/data", false).unwrap();
    assert!(p.stat(b"/data/inner").is_ok());
    // Busy while a file is open; the close frees it.
    p.chdir(b"/").unwrap();
    assert_eq!(err(p.umount(b"/data", false).map(|_| ())), libc::EBUSY);
    p.close(fd).unwrap();
    p.umount(b"/data", false).unwrap();
    assert_eq!(ino(&p, "/data"), under);
    assert!(p.stat(b"/data/under").is_ok(), "uncovered again");
    assert_eq!(err(p.umount(b"/", false).map(|_| ())), libc::EINVAL);
    // Forced while busy.
    p.mount(b"/data", Arc::new(RamFs::new())).unwrap();
    let fd = p.open(b"/data/g", RW_CREATE, 0o644).unwrap();
    p.umount(b"/data", true).unwrap();
    assert!(p.write(fd, b"the open file outlives the mount").is_ok());
    drop(v);
}

#[test]
fn caches_follow_every_change() {
    let (v, p) = setup();
    assert_eq!(err(p.stat(b"/later")), libc::ENOENT);
    let fd = p.open(b"/later", RW_CREATE, 0o644).unwrap();
    assert!(p.stat(b"/later").is_ok(), "a negative entry is replaced");
    p.write(fd, b"12345").unwrap();
    assert_eq!(p.stat(b"/later").unwrap().st_size, 5);
    p.rename(b"/later", b"/renamed").unwrap();
    assert_eq!(err(p.stat(b"/later")), libc::ENOENT);
    assert_eq!(p.stat(b"/renamed").unwrap().st_size, 5);
    p.link(b"/renamed", b"/second").unwrap();
    assert_eq!(p.stat(b"/renamed").unwrap().st_nlink, 2);
    p.unlink(b"/second").unwrap();
    assert_eq!(p.fstat(fd).unwrap().st_nlink, 1);
    p.ftruncate(fd, 2).unwrap();
    assert_eq!(p.stat(b"/renamed").unwrap().st_size, 2);
    p.chmod(b"/renamed", 0o600).unwrap();
    assert_eq!(p.stat(b"/renamed").unwrap().st_mode & 0o7777, 0o600);
    let (names, attrs) = v.cached();
    assert!(names > 0 && attrs > 0);
    let small = Vfs::with_cache(Arc::new(RamFs::new()), 8);
    let q = small.process(Creds::root());
    for i in 0..100 {
        q.mkdir(format!("/d{i}").as_bytes(), 0o755).unwrap();
    }
    let (names, attrs) = small.cached();
    assert!(names <= 8 && attrs <= 8, "bounded: {names} {attrs}");
    assert!(q.stat(b"/d0").is_ok() && q.stat(b"/d99").is_ok());
}
