//! The calls on attributes: `stat`/`lstat`/`fstat`/`fstatat`, `access`,
//! `chmod`, `chown`, `utimensat`, `truncate`, the xattr calls and
//! `statfs`, with Linux's rules for who may change what (`setattr_prepare`:
//! the owner or root for modes and explicit times, root for owners, the
//! owner within its own groups for the group; `xattr_permission`: `user.`
//! needs read or write permission, `trusted.` root).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::fd_table::Fd;
use super::linux_abi::stat_of;
use super::{Loc, Process};
use crate::acl::{decode_stored, Acl, AclKind};
use crate::error::{FsError, Result};
use crate::types::{Attr, FileType, SetAttr, StatFs, TimeOrNow, XattrReply};

impl Process {
    /// May this caller `mask` on `loc` (attributes `a`)? The access ACL
    /// is read only when it can matter (neither root nor the owner).
    pub(crate) fn may(&self, loc: Loc, a: &Attr, mask: i32) -> Result<()> {
        if self.creds.is_root() || self.creds.uid == a.uid || a.perm & 0o070 == 0 {
            return self.creds.may(a, None, mask);
        }
        let acl = self.access_acl(loc)?;
        self.creds.may(a, acl.as_ref(), mask)
    }

    fn access_acl(&self, loc: Loc) -> Result<Option<Acl>> {
        let fs = self.vfs.mounted(loc.mount)?.fs.clone();
        let name = OsStr::from_bytes(AclKind::Access.xattr());
        match fs.getxattr(loc.ino, name, crate::types::XATTR_SIZE_MAX as u32) {
            Ok(XattrReply::Data(v)) => decode_stored(&v),
            Ok(XattrReply::Size(_)) | Err(FsError::NoData) | Err(FsError::NotSupported) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `fstatat(2)`: `follow` false is AT_SYMLINK_NOFOLLOW.
    pub fn fstatat(&self, dirfd: Option<Fd>, path: &[u8], follow: bool) -> Result<libc::stat> {
        let loc = self.resolve(dirfd, path, follow)?;
        Ok(stat_of(&self.attr(loc)?, loc.mount))
    }

    pub fn stat(&self, path: &[u8]) -> Result<libc::stat> {
        self.fstatat(None, path, true)
    }

    pub fn lstat(&self, path: &[u8]) -> Result<libc::stat> {
        self.fstatat(None, path, false)
    }

    pub fn fstat(&self, fd: Fd) -> Result<libc::stat> {
        let f = self.fds.lock().get(fd)?;
        Ok(stat_of(&self.attr(f.loc)?, f.loc.mount))
    }

    /// `faccessat(2)` with the caller's ids (F_OK: the path exists).
    pub fn access(&self, path: &[u8], mask: i32) -> Result<()> {
        let loc = self.resolve(None, path, true)?;
        let a = self.attr(loc)?;
        self.may(loc, &a, mask)
    }

    /// setattr of `loc` after the checks, forgetting its attributes.
    fn set(&self, loc: Loc, set: &SetAttr) -> Result<()> {
        let fs = self.vfs.mounted(loc.mount)?.fs.clone();
        let r = fs.setattr(&self.creds.request(), loc.ino, set, None);
        self.vfs.cache.forget_attr(loc);
        r.map(|_| ())
    }

    /// `fchmodat(2)`: owner or root (EPERM); a non-root caller outside
    /// the file's group loses setgid, as Linux does.
    pub fn chmod(&self, path: &[u8], mode: u32) -> Result<()> {
        let loc = self.resolve(None, path, true)?;
        let a = self.attr(loc)?;
        self.creds.owns(&a)?;
        let mut mode = mode & 0o7777;
        if !self.creds.is_root() && !self.creds.in_group(a.gid) && a.kind != FileType::Directory {
            mode &= !libc::S_ISGID;
        }
        self.set(
            loc,
            &SetAttr {
                mode: Some(mode),
                ..Default::default()
            },
        )
    }

    /// `fchownat(2)`: `follow` false is AT_SYMLINK_NOFOLLOW (`lchown`).
    pub fn chown(
        &self,
        path: &[u8],
        uid: Option<u32>,
        gid: Option<u32>,
        follow: bool,
    ) -> Result<()> {
        let loc = self.resolve(None, path, follow)?;
        let a = self.attr(loc)?;
        self.creds.may_chown(&a, uid, gid)?;
        self.set(
            loc,
            &SetAttr {
                uid,
                gid,
                ..Default::default()
            },
        )
    }

    /// `utimensat(2)`: `None` is UTIME_OMIT. Setting times to now needs
    /// ownership or write permission; explicit times ownership (or root).
    pub fn utimensat(
        &self,
        path: &[u8],
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        follow: bool,
    ) -> Result<()> {
        let loc = self.resolve(None, path, follow)?;
        let a = self.attr(loc)?;
        let explicit = [&atime, &mtime]
            .iter()
            .any(|t| matches!(t, Some(TimeOrNow::Time(_))));
        if explicit {
            self.creds.owns(&a)?;
        } else if atime.is_some() || mtime.is_some() {
            if self.creds.owns(&a).is_err() {
                self.may(loc, &a, libc::W_OK)?;
            }
        } else {
            return Ok(());
        }
        self.set(
            loc,
            &SetAttr {
                atime,
                mtime,
                ..Default::default()
            },
        )
    }

    /// `truncate(2)`: write permission, a regular file (EISDIR for a
    /// directory, EINVAL for others).
    pub fn truncate(&self, path: &[u8], len: u64) -> Result<()> {
        let loc = self.resolve(None, path, true)?;
        let a = self.attr(loc)?;
        match a.kind {
            FileType::RegularFile => {}
            FileType::Directory => return Err(FsError::IsDir),
            _ => return Err(FsError::InvalidArgument("not a regular file")),
        }
        self.may(loc, &a, libc::W_OK)?;
        self.set(
            loc,
            &SetAttr {
                size: Some(len),
                ..Default::default()
            },
        )
    }

    /// Who may read (`write` false) or change an xattr `name` of `loc`.
    fn xattr_permission(&self, loc: Loc, a: &Attr, name: &[u8], write: bool) -> Result<()> {
        if name.starts_with(b"trusted.") && !self.creds.is_root() {
            return Err(FsError::NotPermitted);
        }
        if name.starts_with(b"user.") {
            if !matches!(a.kind, FileType::RegularFile | FileType::Directory) {
                return Err(if write {
                    FsError::NotPermitted
                } else {
                    FsError::NoData
                });
            }
            return self.may(loc, a, if write { libc::W_OK } else { libc::R_OK });
        }
        Ok(())
    }

    /// `getxattr(2)` (`follow` false: `lgetxattr`): the whole value.
    pub fn getxattr(&self, path: &[u8], name: &[u8], follow: bool) -> Result<Vec<u8>> {
        let loc = self.resolve(None, path, follow)?;
        let a = self.attr(loc)?;
        self.xattr_permission(loc, &a, name, false)?;
        let fs = self.vfs.mounted(loc.mount)?.fs.clone();
        match fs.getxattr(
            loc.ino,
            OsStr::from_bytes(name),
            crate::types::XATTR_SIZE_MAX as u32,
        )? {
            XattrReply::Data(v) => Ok(v),
            XattrReply::Size(_) => Err(FsError::RangeTooSmall),
        }
    }

    /// `setxattr(2)`: `flags` XATTR_CREATE or XATTR_REPLACE.
    pub fn setxattr(
        &self,
        path: &[u8],
        name: &[u8],
        value: &[u8],
        flags: i32,
        follow: bool,
    ) -> Result<()> {
        let loc = self.resolve(None, path, follow)?;
        let a = self.attr(loc)?;
        self.xattr_permission(loc, &a, name, true)?;
        let fs = self.vfs.mounted(loc.mount)?.fs.clone();
        let r = fs.setxattr(
            &self.creds.request(),
            loc.ino,
            OsStr::from_bytes(name),
            value,
            flags,
        );
        // An ACL changes the mode.
        self.vfs.cache.forget_attr(loc);
        r
    }

    /// `listxattr(2)`: the names, each NUL-terminated. Names of
    /// namespaces this caller cannot read (`trusted.` for non-root) are
    /// left out, as Linux does.
    pub fn listxattr(&self, path: &[u8], follow: bool) -> Result<Vec<u8>> {
        let loc = self.resolve(None, path, follow)?;
        let fs = self.vfs.mounted(loc.mount)?.fs.clone();
        let all = match fs.listxattr(loc.ino, 1 << 16)? {
            XattrReply::Data(v) => v,
            XattrReply::Size(_) => return Err(FsError::RangeTooSmall),
        };
        if self.creds.is_root() {
            return Ok(all);
        }
        let mut out = Vec::new();
        for n in all.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            if !n.starts_with(b"trusted.") {
                out.extend_from_slice(n);
                out.push(0);
            }
        }
        Ok(out)
    }

    /// `removexattr(2)`.
    pub fn removexattr(&self, path: &[u8], name: &[u8], follow: bool) -> Result<()> {
        let loc = self.resolve(None, path, follow)?;
        let a = self.attr(loc)?;
        self.xattr_permission(loc, &a, name, true)?;
        if AclKind::of_xattr(name).is_some() {
            self.creds.owns(&a)?;
        }
        let fs = self.vfs.mounted(loc.mount)?.fs.clone();
        let r = fs.removexattr(loc.ino, OsStr::from_bytes(name));
        self.vfs.cache.forget_attr(loc);
        r
    }

    /// `statfs(2)` of the filesystem `path` is on.
    pub fn statfs(&self, path: &[u8]) -> Result<StatFs> {
        let loc = self.resolve(None, path, true)?;
        self.vfs.mounted(loc.mount)?.fs.statfs(loc.ino)
    }
}
