//! Attributes kept in xattrs: the intent log policy of a file or
//! directory, POSIX ACLs, and the privilege bits that go with file
//! capabilities.
//!
//! ACLs stay plain xattrs on disk (`system.posix_acl_*`, the Linux value
//! format); what they mean comes from [`aegis_vfs::acl`], shared with
//! ramfs. Each change here is one transaction that keeps the mode bits and
//! the ACL xattrs in step, and logs records whose replay, run as root,
//! ends in the same state: an ACL's setxattr is followed by the mode it
//! left, a dropped `security.capability` by its own removal.

use aegis_fs::intent_log::{LogPolicy, LogRec};
use aegis_fs::posix::inode::S_IFMT;
use aegis_fs::posix::InodeRecord;
use aegis_fs::{AllocClass, ObjectRead, Tx};
use aegis_vfs::acl::{self, Acl, AclKind, AclTarget};
use aegis_vfs::validate::{setattr_privileges, CAPABILITY_XATTR};
use aegis_vfs::*;

use crate::diskfs::*;
use crate::error::TxResult;
use crate::inode::kind_of;
use crate::POLICY_XATTR;

impl DiskFs {
    /// Set the intent log policy of a file or directory (`full`,
    /// `metadata`, `none`); logged like any change.
    pub(crate) fn set_policy(&self, ino: Ino, value: &[u8]) -> Result<()> {
        let p = std::str::from_utf8(value)
            .ok()
            .and_then(|v| LogPolicy::parse(v.trim_end_matches(['\n', '\0'])))
            .ok_or(FsError::InvalidArgument(
                "logging policy is full, metadata or none",
            ))?;
        let _st = self.state.lock();
        self.tx(2, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            if !(r.is_reg() || r.is_dir()) {
                return Err(FsError::NotPermitted.into());
            }
            tx.set_log_policy(ino, p)?;
            r.ctime = tx.now;
            tx.put_inode(ino, &r)?;
            tx.log(LogRec::SetXattr {
                ino,
                name: POLICY_XATTR.to_vec(),
                value: p.name().as_bytes().to_vec(),
                flags: 0,
            });
            Ok(())
        })
    }

    /// `setxattr` of an ACL name: see [`acl::set_acl`].
    pub(crate) fn set_acl(
        &self,
        req: &Request,
        ino: Ino,
        kind: AclKind,
        value: &[u8],
    ) -> Result<()> {
        // A create in this directory reads its default ACL under this lock.
        let _dir = self.dirs.lock(ino);
        let _st = self.state.lock();
        let ops = 6 + value.len() as u64 / 128;
        self.tx(ops, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            let target = AclTarget {
                uid: r.uid,
                gid: r.gid,
                perm: r.mode & 0o7777,
                is_dir: r.is_dir(),
            };
            let change = acl::set_acl(req, kind, value, target)?;
            let name = kind.xattr();
            match &change.value {
                Some(v) => {
                    let names = tx.xattr_names(ino)?;
                    let list_len: usize = names.iter().map(|n| n.len() + 1).sum();
                    if !names.iter().any(|n| n == name)
                        && list_len + name.len() + 1 > XATTR_LIST_MAX
                    {
                        return Err(FsError::NoSpace.into());
                    }
                    tx.set_xattr(ino, name, v)?
                }
                None => {
                    tx.remove_xattr(ino, name)?;
                }
            }
            r.mode = (r.mode & S_IFMT) | change.perm;
            r.ctime = tx.now;
            tx.put_inode(ino, &r)?;
            tx.log(LogRec::SetXattr {
                ino,
                name: name.to_vec(),
                value: value.to_vec(),
                flags: 0,
            });
            // Replay runs as root, which keeps a setgid bit this caller lost.
            tx.log(LogRec::SetAttr {
                ino,
                mode: Some(change.perm),
                uid: None,
                gid: None,
                size: None,
                times: [None, None, Some(r.ctime), None],
            });
            Ok(())
        })
    }

    /// The default ACL of directory `dir`, if it has one.
    pub(crate) fn default_acl(&self, dir: Ino) -> Result<Option<Acl>> {
        match self.view(|t| Ok(t.xattr(dir, acl::DEFAULT_XATTR)?))? {
            Some(v) => acl::decode_stored(&v),
            None => Ok(None),
        }
    }
}

/// Tree operations the ACLs a new inode inherits from `default` may take.
pub(crate) fn inherit_ops(default: Option<&Acl>) -> u64 {
    default.map_or(0, |a| 2 * (4 + a.encode().len() as u64 / 128))
}

/// Store the ACLs a new inode inherited.
pub(crate) fn write_inherited(tx: &mut Tx<'_>, ino: Ino, got: &acl::Inherited) -> TxResult<()> {
    for (name, value) in [
        (acl::ACCESS_XATTR, &got.access),
        (acl::DEFAULT_XATTR, &got.default),
    ] {
        if let Some(v) = value {
            tx.set_xattr(ino, name, v)?;
        }
    }
    Ok(())
}

/// Tree operations [`apply_mode`] may add to a `setattr`: rewriting the
/// access ACL, dropping `security.capability`.
pub(crate) fn mode_ops(set: &SetAttr) -> u64 {
    if set.mode.is_some() || set.uid.is_some() || set.gid.is_some() {
        4 + acl::ACL_MAX_ENTRIES as u64 * 8 / 128
    } else if set.size.is_some() || *set == SetAttr::default() {
        2
    } else {
        0
    }
}

/// The mode part of a `setattr`, inside its transaction: the privilege
/// bits as [`setattr_privileges`] decides (dropping `security.capability`
/// with a logged removal), and a chmod rewrites the access ACL. Returns
/// the mode to log: the caller's as applied, or the one privileges
/// dropped to, so that replay, run as root, ends the same.
pub(crate) fn apply_mode(
    tx: &mut Tx<'_>,
    ino: Ino,
    r: &mut InodeRecord,
    req: &Request,
    set: &SetAttr,
) -> TxResult<Option<u32>> {
    let old = r.mode & 0o7777;
    let p = setattr_privileges(req, old, r.gid, kind_of(r.mode), set);
    if p.drop_caps && tx.remove_xattr(ino, CAPABILITY_XATTR)? {
        tx.log(LogRec::RemoveXattr {
            ino,
            name: CAPABILITY_XATTR.to_vec(),
        });
    }
    r.mode = (r.mode & S_IFMT) | p.perm;
    if set.mode.is_some() {
        if let Some(stored) = tx.xattr(ino, acl::ACCESS_XATTR)? {
            if let Some(v) = acl::chmod_acl(&stored, p.perm)? {
                tx.set_xattr(ino, acl::ACCESS_XATTR, &v)?;
            }
        }
    }
    Ok((set.mode.is_some() || p.perm != old).then_some(p.perm))
}
