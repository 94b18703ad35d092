//! Argument checks shared by every [`FileSystem`](crate::FileSystem)
//! implementation, so ramfs and the on-disk filesystem refuse the same
//! inputs with the same errno (the differential tests rely on it).

use crate::error::{FsError, Result};
use crate::types::{FileType, Request, SetAttr, XattrReply, NAME_MAX, XATTR_NAME_MAX};

/// Check one name for lookup: not empty, no '/' or NUL, at most 255 bytes.
/// "." and ".." pass (callers handle them).
pub fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() {
        return Err(FsError::InvalidArgument("empty name"));
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(FsError::InvalidArgument("name holds '/' or NUL"));
    }
    Ok(())
}

pub fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// Check a name for a new entry: as [`check_name`], and "."/".." exist.
pub fn check_new_name(name: &[u8]) -> Result<()> {
    check_name(name)?;
    if is_dot(name) {
        return Err(FsError::Exists);
    }
    Ok(())
}

/// Check a name of an entry to remove or rename: "." and ".." are refused.
pub fn check_removable_name(name: &[u8]) -> Result<()> {
    check_name(name)?;
    if is_dot(name) {
        return Err(FsError::InvalidArgument("cannot remove or rename . or .."));
    }
    Ok(())
}

const NAMESPACES: [&[u8]; 4] = [b"user.", b"trusted.", b"security.", b"system."];

/// Check an xattr name as Linux does: empty or longer than 255 bytes is
/// ERANGE, an unknown namespace EOPNOTSUPP, a bare prefix EINVAL.
/// Returns whether the name is in the `user.` namespace.
pub fn check_xattr_name(name: &[u8]) -> Result<bool> {
    if name.is_empty() || name.len() > XATTR_NAME_MAX {
        return Err(FsError::RangeTooSmall);
    }
    if name.contains(&0) {
        return Err(FsError::InvalidArgument("xattr name holds NUL"));
    }
    let prefix = NAMESPACES
        .iter()
        .find(|p| name.starts_with(p))
        .ok_or(FsError::NotSupported)?;
    if name.len() == prefix.len() {
        return Err(FsError::InvalidArgument(
            "xattr name empty after its namespace",
        ));
    }
    Ok(*prefix == b"user.")
}

/// Reply to a size-0 probe with the length, else the bytes or ERANGE.
pub fn xattr_reply(data: Vec<u8>, size: u32) -> Result<XattrReply> {
    if size == 0 {
        Ok(XattrReply::Size(data.len() as u32))
    } else if data.len() > size as usize {
        Err(FsError::RangeTooSmall)
    } else {
        Ok(XattrReply::Data(data))
    }
}

/// The xattr of file capabilities, removed with setuid (see [`killed_privileges`]).
pub const CAPABILITY_XATTR: &[u8] = b"security.capability";

/// The permission bits after a change that drops privileges (a write,
/// truncate or fallocate by an unprivileged caller, any chown of a
/// non-directory): setuid always, setgid when group-exec is set (without
/// it setgid marks mandatory locking, which Linux keeps), as
/// `setattr_should_drop_suidgid` decides. `security.capability` goes too.
pub fn killed_privileges(perm: u32) -> u32 {
    let mut perm = perm & !libc::S_ISUID;
    if perm & libc::S_IXGRP != 0 {
        perm &= !libc::S_ISGID;
    }
    perm
}

/// What a `setattr` leaves of the privilege bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privileges {
    /// The permission bits (`0o7777`) after the change.
    pub perm: u32,
    /// Whether `security.capability` goes.
    pub drop_caps: bool,
}

/// The privilege bits after `set` on an inode of `kind` with bits `perm`
/// and group `gid`, as Linux's `setattr_prepare` and
/// `setattr_should_drop_suidgid` decide:
/// - a mode given is taken, but a regular file's setgid only from root or
///   a member of the (new) group: this is also how the kernel's FUSE
///   client asks to drop privileges before a write by someone else;
/// - a chown of a non-directory drops setuid and setgid-with-group-exec
///   for everyone, and `security.capability`;
/// - a truncate of a regular file by a caller other than root, or an empty
///   setattr (FUSE's request to drop privileges before a write or
///   fallocate), drops them as that caller's write does: setuid, setgid
///   with group-exec or when the caller is not in the group, capabilities.
///
/// Group membership is the request's gid: the FUSE adapter puts the
/// file's group there when the caller holds it as a supplementary group.
pub fn setattr_privileges(
    req: &Request,
    perm: u32,
    gid: u32,
    kind: FileType,
    set: &SetAttr,
) -> Privileges {
    let regular = kind == FileType::RegularFile;
    let member = |gid: u32| req.uid == 0 || req.gid == gid;
    if let Some(mode) = set.mode {
        let mut perm = mode & 0o7777;
        if regular && !member(set.gid.unwrap_or(gid)) {
            perm &= !libc::S_ISGID;
        }
        return Privileges {
            perm,
            drop_caps: false,
        };
    }
    let chown = set.uid.is_some() || set.gid.is_some();
    if chown && kind != FileType::Directory {
        return Privileges {
            perm: killed_privileges(perm),
            drop_caps: true,
        };
    }
    let drop = set.size.is_some() || *set == SetAttr::default();
    if regular && drop && req.uid != 0 {
        let mut perm = killed_privileges(perm);
        if !member(gid) {
            perm &= !libc::S_ISGID;
        }
        return Privileges {
            perm,
            drop_caps: true,
        };
    }
    Privileges {
        perm,
        drop_caps: false,
    }
}

/// Largest file size of every AegisFS filesystem (`i64::MAX`, as `off_t`); past it, EFBIG.
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// Check that `[offset, offset + len)` stays within the maximum file size.
pub fn check_range(offset: u64, len: u64) -> Result<u64> {
    match offset.checked_add(len) {
        Some(end) if end <= MAX_FILE_SIZE => Ok(end),
        _ => Err(FsError::TooBig),
    }
}

/// What a `fallocate(2)` mode asks for, once [`fallocate_mode`] accepted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Falloc {
    /// Mode 0 (`keep_size` false) or KEEP_SIZE: reserve the range.
    Allocate { keep_size: bool },
    /// PUNCH_HOLE | KEEP_SIZE.
    Punch,
    /// ZERO_RANGE, with or without KEEP_SIZE: zeroes, reserved.
    Zero { keep_size: bool },
    /// COLLAPSE_RANGE: remove the range, moving what follows down.
    Collapse,
    /// INSERT_RANGE: insert a hole, moving what follows up.
    Insert,
}

/// Decode a `fallocate(2)` mode and check its range in the order Linux's
/// VFS does: length 0 EINVAL; unknown bits, PUNCH_HOLE without KEEP_SIZE
/// and ZERO_RANGE with PUNCH_HOLE EOPNOTSUPP; COLLAPSE/INSERT with any
/// other bit EINVAL; a range past the largest file EFBIG. Returns the
/// operation and the range's end.
pub fn fallocate_mode(mode: i32, offset: u64, len: u64) -> Result<(Falloc, u64)> {
    use libc::{
        FALLOC_FL_COLLAPSE_RANGE as COLLAPSE, FALLOC_FL_INSERT_RANGE as INSERT,
        FALLOC_FL_KEEP_SIZE as KEEP, FALLOC_FL_PUNCH_HOLE as PUNCH, FALLOC_FL_ZERO_RANGE as ZERO,
    };
    if len == 0 {
        return Err(FsError::InvalidArgument("fallocate length 0"));
    }
    if mode & !(KEEP | PUNCH | ZERO | COLLAPSE | INSERT) != 0 {
        return Err(FsError::NotSupported);
    }
    let op = match mode {
        0 | KEEP => Falloc::Allocate {
            keep_size: mode == KEEP,
        },
        m if m == PUNCH | KEEP => Falloc::Punch,
        m if m == ZERO || m == ZERO | KEEP => Falloc::Zero {
            keep_size: m & KEEP != 0,
        },
        COLLAPSE => Falloc::Collapse,
        INSERT => Falloc::Insert,
        m if m & (COLLAPSE | INSERT) != 0 && m & (PUNCH | ZERO) == 0 => {
            return Err(FsError::InvalidArgument(
                "COLLAPSE_RANGE and INSERT_RANGE take no other flag",
            ))
        }
        _ => return Err(FsError::NotSupported),
    };
    Ok((op, check_range(offset, len)?))
}

/// The range checks of COLLAPSE_RANGE and INSERT_RANGE on a file of
/// `size` bytes, in ext4's order: offset and length multiples of `unit`
/// (the allocation unit) or EINVAL; insert growing the file past the
/// largest size EFBIG; collapse reaching the end of file, and insert at
/// or past it, EINVAL.
pub fn check_shift(op: Falloc, offset: u64, len: u64, size: u64, unit: u64) -> Result<()> {
    if !offset.is_multiple_of(unit) || !len.is_multiple_of(unit) {
        return Err(FsError::InvalidArgument(
            "collapse or insert range not aligned to the allocation unit",
        ));
    }
    match op {
        Falloc::Collapse if offset.saturating_add(len) >= size => Err(FsError::InvalidArgument(
            "collapse range reaches the end of file",
        )),
        Falloc::Insert if len > MAX_FILE_SIZE - size.min(MAX_FILE_SIZE) => Err(FsError::TooBig),
        Falloc::Insert if offset >= size => Err(FsError::InvalidArgument(
            "insert range at or past the end of file",
        )),
        _ => Ok(()),
    }
}

/// Check `rename`'s flags and both names, in the order Linux does.
pub fn check_rename(name: &[u8], newname: &[u8], flags: u32) -> Result<()> {
    use crate::types::{RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT};
    if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0 {
        return Err(FsError::InvalidArgument("unsupported rename flags"));
    }
    if flags & RENAME_EXCHANGE != 0 && flags != RENAME_EXCHANGE {
        return Err(FsError::InvalidArgument(
            "RENAME_EXCHANGE with RENAME_NOREPLACE or RENAME_WHITEOUT",
        ));
    }
    check_removable_name(name)?;
    check_removable_name(newname)
}

/// `access(2)` against mode bits and the access ACL: owner bits for the
/// owner, then the ACL when there is one (see [`acl`](crate::acl)), else
/// group by primary gid, then other; uid 0 passes except X on a
/// non-directory without any x bit.
pub fn check_access(
    req: &Request,
    uid: u32,
    gid: u32,
    perm: u32,
    is_dir: bool,
    mask: i32,
    acl: Option<&crate::acl::Acl>,
) -> Result<()> {
    let want = (mask & (libc::R_OK | libc::W_OK | libc::X_OK)) as u32;
    if want == 0 {
        return Ok(());
    }
    if req.uid == 0 {
        let x = want & libc::X_OK as u32 != 0;
        if x && !is_dir && perm & 0o111 == 0 {
            return Err(FsError::Permission);
        }
        return Ok(());
    }
    let granted = if req.uid == uid {
        want & !(perm >> 6) & 0o7 == 0
    } else {
        crate::acl::non_owner_permits(req, gid, perm, acl, want as u16)
    };
    if granted {
        Ok(())
    } else {
        Err(FsError::Permission)
    }
}
