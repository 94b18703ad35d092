//! Who is calling, and what Linux lets them do: there is no kernel under
//! the embedded VFS to check permissions, so every call checks here, with
//! the rules of `fs/namei.c` (`generic_permission`, `may_delete`,
//! `may_create`) and `fs/attr.c` (`setattr_prepare`).
//!
//! Group membership is the primary gid plus the supplementary groups: an
//! inode's group class applies when any of them is the owning group or a
//! named group of its access ACL (then the group class alone decides, as
//! on Linux, even when "other" would grant more).

use crate::acl::{Acl, Tag};
use crate::error::{FsError, Result};
use crate::types::{Attr, FileType, Request};
use crate::validate::check_access;

/// Supplementary groups a caller may carry (NGROUPS_MAX).
pub const GROUPS_MAX: usize = 65536;

/// A caller's identity: uid, primary gid, supplementary groups, umask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: u32,
}

impl Creds {
    /// The superuser, umask 022.
    pub fn root() -> Creds {
        Creds::user(0, 0)
    }

    /// An ordinary user with no supplementary groups, umask 022.
    pub fn user(uid: u32, gid: u32) -> Creds {
        Creds {
            uid,
            gid,
            groups: Vec::new(),
            umask: 0o022,
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// The request passed to the filesystem below, acting as group `gid`.
    pub(crate) fn request_as(&self, gid: u32) -> Request {
        Request {
            uid: self.uid,
            gid,
            pid: 0,
            umask: self.umask,
        }
    }

    pub(crate) fn request(&self) -> Request {
        self.request_as(self.gid)
    }

    /// `access(2)`: may this caller `mask` (R_OK | W_OK | X_OK) on `a`,
    /// whose access ACL is `acl`?
    pub fn may(&self, a: &Attr, acl: Option<&Acl>, mask: i32) -> Result<()> {
        let is_dir = a.kind == FileType::Directory;
        let perm = a.perm as u32;
        let check =
            |gid: u32| check_access(&self.request_as(gid), a.uid, a.gid, perm, is_dir, mask, acl);
        if self.is_root() || self.uid == a.uid {
            return check(self.gid);
        }
        // The group class applies if any of the caller's groups matches
        // the owning group or a named group entry; then only those decide.
        let mut matched = false;
        for g in std::iter::once(self.gid).chain(self.groups.iter().copied()) {
            let named = |acl: &Acl| acl.entries().iter().any(|e| e.tag == Tag::Group(g));
            let matches = g == a.gid || acl.is_some_and(named);
            if matches {
                matched = true;
                if check(g).is_ok() {
                    return Ok(());
                }
            }
        }
        if matched {
            return Err(FsError::Permission);
        }
        check(self.gid)
    }

    /// Owner or root: chmod, utimes with explicit times, setting ACLs.
    pub fn owns(&self, a: &Attr) -> Result<()> {
        if self.is_root() || self.uid == a.uid {
            Ok(())
        } else {
            Err(FsError::NotPermitted)
        }
    }

    /// `may_delete`'s sticky rule: in a sticky directory only the file's
    /// owner, the directory's owner or root may remove or rename it.
    pub fn may_remove_from(&self, dir: &Attr, victim: &Attr) -> Result<()> {
        let sticky = dir.perm as u32 & libc::S_ISVTX != 0;
        if sticky && !self.is_root() && self.uid != dir.uid && self.uid != victim.uid {
            return Err(FsError::NotPermitted);
        }
        Ok(())
    }

    /// chown: root changes anything; the owner may change the group to
    /// one of its own groups (and "change" to the same ids).
    pub fn may_chown(&self, a: &Attr, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        if self.is_root() {
            return Ok(());
        }
        let uid_ok = uid.is_none_or(|u| u == a.uid);
        let gid_ok = gid.is_none_or(|g| g == a.gid || (self.uid == a.uid && self.in_group(g)));
        if uid_ok && gid_ok && (self.uid == a.uid || (uid.is_none() && gid.is_none())) {
            Ok(())
        } else {
            Err(FsError::NotPermitted)
        }
    }
}
