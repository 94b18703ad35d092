//! Attributes and extended attributes: setattr (mode, owner, size, times)
//! and the xattr changes. Reading them is short and stays in
//! [`filesystem`](super::filesystem).
//!
//! Rules kept here: ctime follows every change unless the caller sets it
//! itself; a size change goes through
//! [`State::with_file`](super::State::with_file) like any other
//! change of chunks; xattr names and values count against the byte capacity
//! ([`RamFsConfig::max_bytes`](super::RamFsConfig)), checked before the
//! change so ENOSPC leaves the inode as it was.

use std::ffi::OsStr;
use std::time::SystemTime;

use super::{bytes, RamFs};
use crate::error::{FsError, Result};
use crate::types::*;
use crate::validate::{check_range, check_xattr_name};

fn set_time(t: TimeOrNow, now: SystemTime) -> SystemTime {
    match t {
        TimeOrNow::Time(t) => t,
        TimeOrNow::Now => now,
    }
}

impl RamFs {
    pub(crate) fn set_attr(&self, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
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
        let inode = st.get_mut(ino)?;
        let mut changed = set.size.is_some();
        if let Some(mode) = set.mode {
            inode.perm = (mode & 0o7777) as u16;
            changed = true;
        }
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

    pub(crate) fn set_xattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        let name = bytes(name);
        let user = check_xattr_name(name)?;
        let mut st = self.state.lock();
        let inode = st.get(ino)?;
        if user && !matches!(inode.kind, FileType::RegularFile | FileType::Directory) {
            return Err(FsError::NotPermitted);
        }
        let old = inode.xattrs.get(name).map(|v| v.len() as u64).ok();
        let grow = (value.len() as u64 + name.len() as u64)
            .saturating_sub(old.map_or(0, |v| v + name.len() as u64));
        st.check_space(grow)?;
        let inode = st.inode(ino);
        let before = inode.xattrs.bytes();
        inode.xattrs.set(name, value, flags)?;
        let after = inode.xattrs.bytes();
        inode.ctime = SystemTime::now();
        st.used_bytes = st.used_bytes + after - before;
        Ok(())
    }

    pub(crate) fn remove_xattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let name = bytes(name);
        check_xattr_name(name)?;
        let mut st = self.state.lock();
        let inode = st.get_mut(ino)?;
        let before = inode.xattrs.bytes();
        inode.xattrs.remove(name)?;
        let after = inode.xattrs.bytes();
        inode.ctime = SystemTime::now();
        st.used_bytes -= before - after;
        Ok(())
    }
}
