//! POSIX ACL and privilege-bit semantics any `FileSystem` must show, as
//! one scenario: ramfs runs it (`tests/ramfs_acl.rs`) and so does DiskFs
//! (`crates/diskfs/tests/acl.rs` includes this file), so the oracle and
//! the on-disk filesystem are held to the same expectations. Each part
//! returns the inodes it made so a caller can compare states afterwards.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use aegis_vfs::acl::{ACCESS_XATTR, DEFAULT_XATTR};
use aegis_vfs::*;

pub const OWNER: Request = req(1000, 100, 0o022);
pub const NOBODY: Request = req(65534, 65534, 0);
pub const STRANGER: Request = req(2000, 200, 0);

pub const fn req(uid: u32, gid: u32, umask: u32) -> Request {
    Request {
        uid,
        gid,
        pid: 1,
        umask,
    }
}

const U: u32 = u32::MAX;

/// ACL xattr bytes: version 2, then (tag, perm, id) entries.
pub fn raw(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// `user::rw- user:65534:rw- group::r-- mask::rw- other::r--`.
pub fn nobody_rw() -> Vec<u8> {
    raw(&[
        (1, 6, U),
        (2, 6, 65534),
        (4, 4, U),
        (0x10, 6, U),
        (0x20, 4, U),
    ])
}

/// `user::rwx user:65534:rwx group::r-x mask::rwx other::---`.
pub fn default_nobody_rwx() -> Vec<u8> {
    raw(&[
        (1, 7, U),
        (2, 7, 65534),
        (4, 5, U),
        (0x10, 7, U),
        (0x20, 0, U),
    ])
}

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

pub fn errno<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.expect_err("expected an error").errno()
}

pub fn perm(fs: &dyn FileSystem, ino: Ino) -> u32 {
    u32::from(fs.getattr(ino).unwrap().perm)
}

pub fn xattr(fs: &dyn FileSystem, ino: Ino, name: &[u8]) -> Option<Vec<u8>> {
    match fs.getxattr(ino, OsStr::from_bytes(name), 65536) {
        Ok(XattrReply::Data(d)) => Some(d),
        Ok(XattrReply::Size(_)) => unreachable!("asked with a size"),
        Err(FsError::NoData) => None,
        Err(e) => panic!("getxattr: {e}"),
    }
}

fn create(fs: &dyn FileSystem, r: &Request, dir: Ino, name: &str, mode: u32) -> Ino {
    let (a, fh) = fs.create(r, dir, n(name), mode, libc::O_RDWR).unwrap();
    fs.release(a.ino, fh).unwrap();
    a.ino
}

fn chmod(fs: &dyn FileSystem, r: &Request, ino: Ino, mode: u32) {
    let set = SetAttr {
        mode: Some(mode),
        ..Default::default()
    };
    fs.setattr(r, ino, &set, None).unwrap();
}

/// An access ACL: mode bits follow it, it grants what the mode denies,
/// chmod rewrites its mask, only the owner or root may set it, an ACL the
/// mode can say is not stored, and bad values are refused.
pub fn access_acl(fs: &dyn FileSystem) -> Ino {
    chmod(fs, &Request::root(), ROOT_INO, 0o777);
    let f = create(fs, &OWNER, ROOT_INO, "f", 0o666);
    assert_eq!(perm(fs, f), 0o644, "no default ACL: the umask applies");
    assert_eq!(errno(fs.access(&NOBODY, f, libc::W_OK)), libc::EACCES);
    let access = n("system.posix_acl_access");
    fs.setxattr(&OWNER, f, access, &nobody_rw(), 0).unwrap();
    assert_eq!(perm(fs, f), 0o664, "the group bits show the mask");
    assert_eq!(xattr(fs, f, ACCESS_XATTR), Some(nobody_rw()));
    fs.access(&NOBODY, f, libc::R_OK | libc::W_OK).unwrap();
    assert_eq!(errno(fs.access(&STRANGER, f, libc::W_OK)), libc::EACCES);
    fs.access(&STRANGER, f, libc::R_OK).unwrap();
    let e = fs.setxattr(&STRANGER, f, access, &nobody_rw(), 0);
    assert_eq!(errno(e), libc::EPERM, "only the owner sets an ACL");
    fs.setxattr(&Request::root(), f, access, &nobody_rw(), 0)
        .unwrap();
    // chmod g-w takes the write bit from the mask, so from the named user.
    chmod(fs, &OWNER, f, 0o644);
    let masked = raw(&[
        (1, 6, U),
        (2, 6, 65534),
        (4, 4, U),
        (0x10, 4, U),
        (0x20, 4, U),
    ]);
    assert_eq!(xattr(fs, f, ACCESS_XATTR), Some(masked));
    assert_eq!(errno(fs.access(&NOBODY, f, libc::W_OK)), libc::EACCES);
    fs.access(&NOBODY, f, libc::R_OK).unwrap();
    chmod(fs, &OWNER, f, 0o664);
    fs.access(&NOBODY, f, libc::W_OK).unwrap();
    bad_values(fs, f);
    // An ACL of mode bits alone sets the mode and is not kept.
    let plain = raw(&[(1, 6, U), (4, 0, U), (0x20, 0, U)]);
    let g = create(fs, &OWNER, ROOT_INO, "g", 0o644);
    fs.setxattr(&OWNER, g, access, &plain, 0).unwrap();
    assert_eq!((perm(fs, g), xattr(fs, g, ACCESS_XATTR)), (0o600, None));
    f
}

/// Malformed, oversized and misplaced ACLs change nothing.
fn bad_values(fs: &dyn FileSystem, f: Ino) {
    let access = n("system.posix_acl_access");
    let before = (perm(fs, f), xattr(fs, f, ACCESS_XATTR));
    let mut odd = nobody_rw();
    odd.push(0);
    assert_eq!(errno(fs.setxattr(&OWNER, f, access, &odd, 0)), libc::EINVAL);
    let no_mask = raw(&[(1, 6, U), (2, 6, 7), (4, 4, U), (0x20, 4, U)]);
    assert_eq!(
        errno(fs.setxattr(&OWNER, f, access, &no_mask, 0)),
        libc::EINVAL
    );
    let unknown_tag = raw(&[(1, 6, U), (0x40, 4, U), (4, 4, U), (0x20, 4, U)]);
    assert_eq!(
        errno(fs.setxattr(&OWNER, f, access, &unknown_tag, 0)),
        libc::EINVAL
    );
    let mut big = vec![(1, 6, U)];
    big.extend((0..600).map(|i| (2u16, 4u16, i)));
    big.extend([(4, 4, U), (0x10, 4, U), (0x20, 4, U)]);
    assert_eq!(
        errno(fs.setxattr(&OWNER, f, access, &raw(&big), 0)),
        libc::E2BIG
    );
    let mut v1 = nobody_rw();
    v1[0] = 1;
    assert_eq!(
        errno(fs.setxattr(&OWNER, f, access, &v1, 0)),
        libc::EOPNOTSUPP
    );
    let default = n("system.posix_acl_default");
    let e = fs.setxattr(&OWNER, f, default, &default_nobody_rwx(), 0);
    assert_eq!(errno(e), libc::EACCES, "a default ACL only on a directory");
    assert_eq!((perm(fs, f), xattr(fs, f, ACCESS_XATTR)), before);
}

/// An ACL is an xattr name like any other in the names list: ENOSPC
/// when the list is full, and nothing changed.
pub fn full_names_list(fs: &dyn FileSystem) -> Ino {
    let f = create(fs, &OWNER, ROOT_INO, "full", 0o644);
    // Long names first, then short ones, until no 10-byte name fits.
    for width in [200, 4] {
        let mut i = 0;
        while fs
            .setxattr(&OWNER, f, n(&format!("user.{i:0>width$}")), b"", 0)
            .is_ok()
        {
            i += 1;
        }
    }
    let e = fs.setxattr(&OWNER, f, n("system.posix_acl_access"), &nobody_rw(), 0);
    assert_eq!(errno(e), libc::ENOSPC);
    assert_eq!((perm(fs, f), xattr(fs, f, ACCESS_XATTR)), (0o644, None));
    f
}

/// A default ACL replaces the umask and is inherited: files get it as
/// their access ACL masked by the create mode, directories as both.
pub fn default_acl(fs: &dyn FileSystem) -> Vec<Ino> {
    let d = fs.mkdir(&OWNER, ROOT_INO, n("d"), 0o777).unwrap().ino;
    assert_eq!(perm(fs, d), 0o755);
    let default = n("system.posix_acl_default");
    fs.setxattr(&OWNER, d, default, &default_nobody_rwx(), 0)
        .unwrap();
    assert_eq!(perm(fs, d), 0o755, "a default ACL leaves the mode alone");
    let strict = req(1000, 100, 0o077);
    let x = create(fs, &strict, d, "x", 0o666);
    assert_eq!(perm(fs, x), 0o660, "no umask under a default ACL");
    let want = raw(&[
        (1, 6, U),
        (2, 7, 65534),
        (4, 5, U),
        (0x10, 6, U),
        (0x20, 0, U),
    ]);
    assert_eq!(xattr(fs, x, ACCESS_XATTR), Some(want));
    assert_eq!(xattr(fs, x, DEFAULT_XATTR), None);
    fs.access(&NOBODY, x, libc::W_OK).unwrap();
    assert_eq!(errno(fs.access(&NOBODY, x, libc::X_OK)), libc::EACCES);
    let sub = fs.mkdir(&strict, d, n("sub"), 0o777).unwrap().ino;
    assert_eq!(perm(fs, sub), 0o770);
    assert_eq!(xattr(fs, sub, DEFAULT_XATTR), Some(default_nobody_rwx()));
    assert!(xattr(fs, sub, ACCESS_XATTR).is_some());
    let deeper = create(fs, &strict, sub, "y", 0o600);
    assert_eq!(perm(fs, deeper), 0o600);
    let fifo = fs
        .mknod(&strict, d, n("fifo"), libc::S_IFIFO | 0o644, 0)
        .unwrap();
    assert_eq!(u32::from(fifo.perm), 0o640);
    let l = fs.symlink(&strict, d, n("l"), n("x")).unwrap();
    assert_eq!(
        (u32::from(l.perm), xattr(fs, l.ino, ACCESS_XATTR)),
        (0o777, None)
    );
    // Removing the default ACL brings the umask back.
    fs.removexattr(d, default).unwrap();
    let z = create(fs, &strict, d, "z", 0o666);
    assert_eq!((perm(fs, z), xattr(fs, z, ACCESS_XATTR)), (0o600, None));
    vec![d, x, sub, deeper, fifo.ino, l.ino, z]
}

/// chown of a non-directory drops setuid, setgid-with-group-exec and
/// `security.capability`, even for root; a truncate by a caller other
/// than root does the same; a mode given with either is kept.
pub fn privilege_bits(fs: &dyn FileSystem) -> Vec<Ino> {
    let zero = req(1000, 100, 0);
    let cap = n("security.capability");
    let p = create(fs, &zero, ROOT_INO, "p", 0o6775);
    assert_eq!(perm(fs, p), 0o6775);
    fs.setxattr(&Request::root(), p, cap, b"\x01\x00\x00\x02", 0)
        .unwrap();
    let chown = SetAttr {
        uid: Some(2000),
        ..Default::default()
    };
    fs.setattr(&Request::root(), p, &chown, None).unwrap();
    assert_eq!(perm(fs, p), 0o775);
    assert_eq!(xattr(fs, p, b"security.capability"), None);
    let q = create(fs, &zero, ROOT_INO, "q", 0o6664);
    fs.setattr(&Request::root(), q, &chown, None).unwrap();
    assert_eq!(perm(fs, q), 0o2664, "setgid without group-exec stays");
    let t = create(fs, &zero, ROOT_INO, "t", 0o6775);
    let trunc = SetAttr {
        size: Some(10),
        ..Default::default()
    };
    fs.setattr(&Request::root(), t, &trunc, None).unwrap();
    assert_eq!(perm(fs, t), 0o6775, "root truncates with CAP_FSETID");
    fs.setattr(&zero, t, &trunc, None).unwrap();
    assert_eq!(perm(fs, t), 0o775);
    let given = SetAttr {
        uid: Some(1000),
        mode: Some(0o6755),
        ..Default::default()
    };
    fs.setattr(&Request::root(), t, &given, None).unwrap();
    assert_eq!(perm(fs, t), 0o6755);
    non_member_setgid(fs);
    let dir = fs.mkdir(&zero, ROOT_INO, n("sgid"), 0o2775).unwrap().ino;
    fs.setattr(&Request::root(), dir, &chown, None).unwrap();
    assert_eq!(perm(fs, dir), 0o2775, "a directory keeps setgid on chown");
    vec![p, q, t, dir]
}

/// setgid without group-exec marks mandatory locking and stays, except
/// for a caller outside the file's group: its write (FUSE's empty
/// setattr), truncate or setgid mode loses it, as on Linux.
fn non_member_setgid(fs: &dyn FileSystem) {
    let member = req(1000, 100, 0);
    let outsider = req(1000, 7, 0);
    let f = create(fs, &member, ROOT_INO, "lock", 0o2664);
    fs.setattr(&member, f, &SetAttr::default(), None).unwrap();
    assert_eq!(perm(fs, f), 0o2664, "a member keeps setgid");
    fs.setattr(&outsider, f, &SetAttr::default(), None).unwrap();
    assert_eq!(perm(fs, f), 0o664, "an outsider's write drops it");
    chmod(fs, &Request::root(), f, 0o6664);
    let trunc = SetAttr {
        size: Some(0),
        ..Default::default()
    };
    fs.setattr(&outsider, f, &trunc, None).unwrap();
    assert_eq!(perm(fs, f), 0o664);
    chmod(fs, &Request::root(), f, 0o6664);
    chmod(fs, &outsider, f, 0o2664);
    assert_eq!(perm(fs, f), 0o664, "FUSE's kill request as a mode");
    chmod(fs, &member, f, 0o2664);
    assert_eq!(perm(fs, f), 0o2664);
    let times = SetAttr {
        mtime: Some(TimeOrNow::Now),
        ..Default::default()
    };
    fs.setattr(&outsider, f, &times, None).unwrap();
    assert_eq!(perm(fs, f), 0o2664, "times alone change no privilege");
}

/// An inode's permission bits, access ACL and default ACL.
pub type InodeState = (u32, Option<Vec<u8>>, Option<Vec<u8>>);

/// Every inode's mode and ACL xattrs, to compare two filesystems (or one
/// before a crash and after replay).
pub fn state(fs: &dyn FileSystem, inos: &[Ino]) -> Vec<InodeState> {
    inos.iter()
        .map(|&i| {
            (
                perm(fs, i),
                xattr(fs, i, ACCESS_XATTR),
                xattr(fs, i, DEFAULT_XATTR),
            )
        })
        .collect()
}

/// The whole scenario; the inodes it made.
pub fn run(fs: &dyn FileSystem) -> Vec<Ino> {
    let mut inos = vec![access_acl(fs), full_names_list(fs)];
    inos.extend(default_acl(fs));
    inos.extend(privilege_bits(fs));
    inos
}
