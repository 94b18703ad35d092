//! Attributes and extended attributes: setattr (mode, owner, size, times)
//! and the xattr changes, ACLs among them. Reading them is short and stays
//! in [`filesystem`](super::filesystem).
//!
//! Rules kept here: ctime follows every change unless the caller sets it
//! itself; a size change goes through
//! [`State::with_file`](super::State::with_file) like any other
//! change of chunks; xattr names and values count against the byte capacity
//! ([`RamFsConfig::max_bytes`](super::RamFsConfig)), checked before the
//! change so ENOSPC leaves the inode as it was. The access ACL and the mode
//! bits change together (see [`acl`](crate::acl)), and so do the privilege
//! bits and `security.capability`.

use std::ffi::OsStr;
use std::time::SystemTime;

use super::{bytes, RamFs, State};
use crate::acl::{self, AclKind, AclTarget};
use crate::error::{FsError, Result};
use crate::types::*;
use crate::validate::{check_range, check_xattr_name, setattr_privileges, CAPABILITY_XATTR};

fn set_time(t: TimeOrNow, now: SystemTime) -> SystemTime {
    match t {
        TimeOrNow::Time(t) => t,
        TimeOrNow::Now => now,
    }
}

impl State {
    /// Set one xattr of `ino` under `flags`, accounting its bytes.
    fn put_xattr(&mut self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        let inode = self.get(ino)?;
        let old = inode.xattrs.get(name).map(|v| v.len() as u64).ok();
        let grow = (value.len() as u64 + name.len() as u64)
            .saturating_sub(old.map_or(0, |v| v + name.len() as u64));
        self.check_space(grow)?;
        let inode = self.inode(ino);
        let before = inode.xattrs.bytes();
        inode.xattrs.set(name, value, flags)?;
        let after = inode.xattrs.bytes();
        self.used_bytes = self.used_bytes + after - before;
        Ok(())
    }

    /// Remove one xattr of `ino`, accounting its bytes. ENODATA if missing.
    fn drop_xattr(&mut self, ino: Ino, name: &[u8]) -> Result<()> {
        let inode = self.get_mut(ino)?;
        let before = inode.xattrs.bytes();
        inode.xattrs.remove(name)?;
        let after = inode.xattrs.bytes();
        self.used_bytes -= before - after;
        Ok(())
    }

    /// A mode change: the bits, and the access ACL's entries with them.
    fn chmod(&mut self, ino: Ino, mode: u32) -> Result<()> {
        let inode = self.get_mut(ino)?;
        inode.perm = (mode & 0o7777) as u16;
        if let Ok(stored) = inode.xattrs.get(acl::ACCESS_XATTR) {
            if let Some(v) = acl::chmod_acl(stored, mode)? {
                self.put_xattr(ino, acl::ACCESS_XATTR, &v, 0)?;
            }
        }
        Ok(())
    }
}

impl RamFs {
    pub(crate) fn set_attr(
        &self,
        req: &Request,
        ino: Ino,
        set: &SetAttr,
        fh: Option<Fh>,
    ) -> Result<Attr> {
        let mut st = self.state.lock();
        if let Some(fh) = fh {
            st.handle(ino, fh)?;
        }
        let now = SystemTime::now();
        if let Some(size) = set.size {
            st.regular(ino)?;
            check_range(size, 0)?;
            st.with_file(ino, |f| f.truncate(size))?;
            st.inode(ino).touch_modified(now);
        }
        let inode = st.get(ino)?;
        let old = u32::from(inode.perm);
        let p = setattr_privileges(req, old, inode.gid, inode.kind, set);
        if set.mode.is_some() {
            st.chmod(ino, p.perm)?;
        } else {
            st.get_mut(ino)?.perm = p.perm as u16;
        }
        if p.drop_caps {
            match st.drop_xattr(ino, CAPABILITY_XATTR) {
                Ok(()) | Err(FsError::NoData) => {}
                Err(e) => return Err(e),
            }
        }
        let inode = st.get_mut(ino)?;
        let mut changed = set.size.is_some() || set.mode.is_some() || p.perm != old;
        if let Some(uid) = set.uid {
            inode.uid = uid;
            changed = true;
        }
        if let Some(gid) = set.gid {
            inode.gid = gid;
            changed = true;
        }
        if let Some(t) = set.atime {
            inode.atime = set_time(t, now);
            changed = true;
        }
        if let Some(t) = set.mtime {
            inode.mtime = set_time(t, now);
            changed = true;
        }
        if let Some(t) = set.crtime {
            inode.crtime = t;
            changed = true;
        }
        if let Some(t) = set.ctime {
            inode.ctime = t;
        } else if changed {
            inode.ctime = now;
        }
        Ok(inode.attr())
    }

    pub(crate) fn set_xattr(
        &self,
        req: &Request,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        let name = bytes(name);
        let user = check_xattr_name(name)?;
        let mut st = self.state.lock();
        if let Some(kind) = AclKind::of_xattr(name) {
            return st.set_acl(req, ino, kind, value);
        }
        let inode = st.get(ino)?;
        if user && !matches!(inode.kind, FileType::RegularFile | FileType::Directory) {
            return Err(FsError::NotPermitted);
        }
        st.put_xattr(ino, name, value, flags)?;
        st.inode(ino).ctime = SystemTime::now();
        Ok(())
    }

    pub(crate) fn remove_xattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let name = bytes(name);
        check_xattr_name(name)?;
        let mut st = self.state.lock();
        st.drop_xattr(ino, name)?;
        st.inode(ino).ctime = SystemTime::now();
        Ok(())
    }
}

impl State {
    /// `setxattr` of an ACL name: see [`acl::set_acl`].
    fn set_acl(&mut self, req: &Request, ino: Ino, kind: AclKind, value: &[u8]) -> Result<()> {
        let inode = self.get(ino)?;
        let target = AclTarget {
            uid: inode.uid,
            gid: inode.gid,
            perm: u32::from(inode.perm),
            is_dir: inode.kind == FileType::Directory,
        };
        let change = acl::set_acl(req, kind, value, target)?;
        let name = kind.xattr();
        match change.value {
            Some(v) => self.put_xattr(ino, name, &v, 0)?,
            None => match self.drop_xattr(ino, name) {
                Ok(()) | Err(FsError::NoData) => {}
                Err(e) => return Err(e),
            },
        }
        let inode = self.inode(ino);
        inode.perm = change.perm as u16;
        inode.ctime = SystemTime::now();
        Ok(())
    }
}
