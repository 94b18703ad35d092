//! POSIX access control lists, as Linux keeps them in the
//! `system.posix_acl_access` and `system.posix_acl_default` xattrs.
//!
//! Job: the codec of the xattr format (`posix_acl_xattr.h`: a version 2
//! header, then 8-byte entries of tag, permission and id, little-endian)
//! with the kernel's validation (`posix_acl_from_xattr`,
//! `posix_acl_valid`), and the algorithms a filesystem applies with them:
//! an access ACL equivalent to the mode bits is not stored and sets the
//! mode (`posix_acl_update_mode`), chmod rewrites the ACL
//! (`posix_acl_chmod`), a new inode under a directory with a default ACL
//! inherits it instead of having the umask applied (`posix_acl_create`),
//! and permission checks consult the ACL (`posix_acl_permission`). Both
//! ramfs and the on-disk filesystem call these, so the two agree by
//! construction on what an ACL means while each stores it its own way.
//!
//! Invariants: an [`Acl`] exists only validated, its entries in the
//! canonical tag order with exactly one USER_OBJ, GROUP_OBJ and OTHER, and
//! a MASK whenever named entries exist; encoding it and decoding the bytes
//! gives it back. A stored value is decoded like a user's, so damaged bytes
//! give an error, never a panic.

use crate::error::{FsError, Result};
use crate::types::Request;

/// The xattr of the access ACL.
pub const ACCESS_XATTR: &[u8] = b"system.posix_acl_access";
/// The xattr of a directory's default ACL.
pub const DEFAULT_XATTR: &[u8] = b"system.posix_acl_default";

/// Version of the xattr format (`POSIX_ACL_XATTR_VERSION`).
const VERSION: u32 = 2;
const HEADER: usize = 4;
const ENTRY: usize = 8;
/// The id stored for the entries that name no user or group.
const UNDEFINED_ID: u32 = u32::MAX;

/// Most entries of one ACL: what fits in one page, the largest ACL the
/// Linux FUSE client sends (`fuse_set_acl` refuses a bigger one with E2BIG,
/// and ext4 runs out of xattr space at about the same size).
pub const ACL_MAX_ENTRIES: usize = (4096 - HEADER) / ENTRY;

const TAG_USER_OBJ: u16 = 0x01;
const TAG_USER: u16 = 0x02;
const TAG_GROUP_OBJ: u16 = 0x04;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;
const TAG_OTHER: u16 = 0x20;

/// Read, write and execute: the only permission bits an entry may hold.
const RWX: u16 = 0o7;

/// Which of the two ACLs an xattr name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclKind {
    Access,
    Default,
}

impl AclKind {
    /// The ACL an xattr name holds, if it is one of the two.
    pub fn of_xattr(name: &[u8]) -> Option<AclKind> {
        match name {
            ACCESS_XATTR => Some(AclKind::Access),
            DEFAULT_XATTR => Some(AclKind::Default),
            _ => None,
        }
    }

    /// The xattr that holds this ACL.
    pub fn xattr(self) -> &'static [u8] {
        match self {
            AclKind::Access => ACCESS_XATTR,
            AclKind::Default => DEFAULT_XATTR,
        }
    }
}

/// Who an entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    UserObj,
    User(u32),
    GroupObj,
    Group(u32),
    Mask,
    Other,
}

/// One entry: who, and `rwx` as the three low bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclEntry {
    pub tag: Tag,
    pub perm: u16,
}

/// A validated ACL; see the [module documentation](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<AclEntry>,
}

impl Acl {
    /// Decode and validate an xattr value as the kernel does. `None` is a
    /// header alone, which Linux takes as "no ACL" (setting it removes one).
    ///
    /// Errors: E2BIG (more than [`ACL_MAX_ENTRIES`]), EOPNOTSUPP (a version
    /// other than 2), EINVAL (short, a size not a whole number of entries,
    /// an unknown tag, permission bits beyond `rwx`, the id -1, entries out
    /// of order, a missing or repeated USER_OBJ, GROUP_OBJ or OTHER, named
    /// entries without a MASK).
    pub fn decode(value: &[u8]) -> Result<Option<Acl>> {
        if value.len() < HEADER {
            return Err(FsError::InvalidArgument("ACL shorter than its header"));
        }
        if u32::from_le_bytes(value[..HEADER].try_into().expect("4 bytes")) != VERSION {
            return Err(FsError::NotSupported);
        }
        let body = &value[HEADER..];
        if !body.len().is_multiple_of(ENTRY) {
            return Err(FsError::InvalidArgument("ACL size is not whole entries"));
        }
        if body.len() / ENTRY > ACL_MAX_ENTRIES {
            return Err(FsError::XattrTooBig);
        }
        if body.is_empty() {
            return Ok(None);
        }
        let entries = body
            .chunks_exact(ENTRY)
            .map(decode_entry)
            .collect::<Result<Vec<_>>>()?;
        let acl = Acl { entries };
        acl.validate()?;
        Ok(Some(acl))
    }

    /// The xattr value: header, then the entries in order.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ENTRY * self.entries.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            let (tag, id) = match e.tag {
                Tag::UserObj => (TAG_USER_OBJ, UNDEFINED_ID),
                Tag::User(id) => (TAG_USER, id),
                Tag::GroupObj => (TAG_GROUP_OBJ, UNDEFINED_ID),
                Tag::Group(id) => (TAG_GROUP, id),
                Tag::Mask => (TAG_MASK, UNDEFINED_ID),
                Tag::Other => (TAG_OTHER, UNDEFINED_ID),
            };
            out.extend_from_slice(&tag.to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        out
    }

    /// Build an ACL from entries, validated as [`Acl::decode`] does.
    pub fn from_entries(entries: Vec<AclEntry>) -> Result<Acl> {
        if entries.len() > ACL_MAX_ENTRIES {
            return Err(FsError::XattrTooBig);
        }
        let acl = Acl { entries };
        acl.validate()?;
        Ok(acl)
    }

    pub fn entries(&self) -> &[AclEntry] {
        &self.entries
    }

    /// `posix_acl_valid`: the order USER_OBJ, USER*, GROUP_OBJ, GROUP*,
    /// MASK, OTHER, a MASK required when any named entry exists.
    fn validate(&self) -> Result<()> {
        #[derive(PartialEq)]
        enum S {
            UserObj,
            User,
            Group,
            Other,
            Done,
        }
        let bad = FsError::InvalidArgument("ACL entries out of order or missing");
        let (mut state, mut needs_mask) = (S::UserObj, false);
        for e in &self.entries {
            if e.perm & !RWX != 0 {
                return Err(FsError::InvalidArgument("ACL permission beyond rwx"));
            }
            state = match (e.tag, state) {
                (Tag::UserObj, S::UserObj) => S::User,
                (Tag::User(_), S::User) => {
                    needs_mask = true;
                    S::User
                }
                (Tag::GroupObj, S::User) => S::Group,
                (Tag::Group(_), S::Group) => {
                    needs_mask = true;
                    S::Group
                }
                (Tag::Mask, S::Group) => S::Other,
                (Tag::Other, S::Other) => S::Done,
                (Tag::Other, S::Group) if !needs_mask => S::Done,
                _ => return Err(bad),
            };
        }
        if state == S::Done {
            Ok(())
        } else {
            Err(bad)
        }
    }

    /// The ACL of mode bits alone: owner, group and other entries.
    pub fn from_mode(mode: u32) -> Acl {
        let p = |shift: u32| ((mode >> shift) as u16) & RWX;
        Acl {
            entries: vec![
                AclEntry {
                    tag: Tag::UserObj,
                    perm: p(6),
                },
                AclEntry {
                    tag: Tag::GroupObj,
                    perm: p(3),
                },
                AclEntry {
                    tag: Tag::Other,
                    perm: p(0),
                },
            ],
        }
    }

    /// `posix_acl_equiv_mode`: the `0o777` bits the ACL shows as mode
    /// (the group bits are the MASK when there is one), and whether the
    /// mode says everything (no named entries, no MASK), so the ACL need
    /// not be stored.
    pub fn equiv_mode(&self) -> (u32, bool) {
        let (mut mode, mut equiv) = (0u32, true);
        for e in &self.entries {
            let p = u32::from(e.perm);
            match e.tag {
                Tag::UserObj => mode |= p << 6,
                Tag::GroupObj => mode |= p << 3,
                Tag::Other => mode |= p,
                Tag::Mask => {
                    mode = (mode & !0o070) | (p << 3);
                    equiv = false;
                }
                Tag::User(_) | Tag::Group(_) => equiv = false,
            }
        }
        (mode, equiv)
    }

    /// `posix_acl_chmod`: the owner, other and MASK (or GROUP_OBJ when
    /// there is no MASK) entries take the new mode's bits.
    pub fn chmod(&mut self, mode: u32) {
        let has_mask = self.entries.iter().any(|e| e.tag == Tag::Mask);
        for e in &mut self.entries {
            let bits = match e.tag {
                Tag::UserObj => mode >> 6,
                Tag::Other => mode,
                Tag::Mask => mode >> 3,
                Tag::GroupObj if !has_mask => mode >> 3,
                _ => continue,
            };
            e.perm = (bits as u16) & RWX;
        }
    }

    /// `posix_acl_create_masq`: restrict a copy of a default ACL by the
    /// mode a new inode was asked for. Returns the new mode (only the
    /// `0o777` bits change) and whether the mode says everything.
    pub fn create_masq(&mut self, mode: u32) -> (u32, bool) {
        let mut m = mode & 0o777;
        let (mut equiv, mut group_obj, mut mask) = (true, None, None);
        // Restrict entry `e` and the mode's bits at `shift` by each other.
        let masq = |e: &mut AclEntry, m: &mut u32, shift: u32| {
            e.perm &= ((*m >> shift) as u16) & RWX;
            *m &= !(0o7 << shift) | (u32::from(e.perm) << shift);
        };
        for (i, e) in self.entries.iter_mut().enumerate() {
            match e.tag {
                Tag::UserObj => masq(e, &mut m, 6),
                Tag::User(_) | Tag::Group(_) => equiv = false,
                Tag::GroupObj => group_obj = Some(i),
                Tag::Other => masq(e, &mut m, 0),
                Tag::Mask => {
                    mask = Some(i);
                    equiv = false;
                }
            }
        }
        // The group class is the MASK when there is one; a validated ACL
        // always has a GROUP_OBJ.
        if let Some(i) = mask.or(group_obj) {
            masq(&mut self.entries[i], &mut m, 3);
        }
        ((mode & !0o777) | m, equiv)
    }

    /// `posix_acl_permission` for a caller that is not the owner: whether
    /// the ACL grants all of `want` (`rwx` bits) to `req`. Group entries
    /// match the primary gid only (the trait's request carries no
    /// supplementary groups).
    fn permits(&self, req: &Request, file_gid: u32, want: u16) -> bool {
        let mask = self
            .entries
            .iter()
            .find(|e| e.tag == Tag::Mask)
            .map_or(RWX, |e| e.perm);
        let mut group_found = false;
        for e in &self.entries {
            let in_group = match e.tag {
                Tag::User(uid) if uid == req.uid => return e.perm & mask & want == want,
                Tag::GroupObj => req.gid == file_gid,
                Tag::Group(gid) => req.gid == gid,
                Tag::Other => return !group_found && e.perm & want == want,
                Tag::UserObj | Tag::User(_) | Tag::Mask => false,
            };
            // The first group entry that grants everything decides, through
            // the mask; a matching group that does not grant it keeps the
            // caller from falling through to OTHER.
            if in_group {
                group_found = true;
                if e.perm & want == want {
                    return e.perm & mask & want == want;
                }
            }
        }
        false
    }
}

fn decode_entry(b: &[u8]) -> Result<AclEntry> {
    let tag = u16::from_le_bytes([b[0], b[1]]);
    let perm = u16::from_le_bytes([b[2], b[3]]);
    let id = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let named = |id: u32| match id {
        UNDEFINED_ID => Err(FsError::InvalidArgument("ACL names user or group -1")),
        id => Ok(id),
    };
    let tag = match tag {
        TAG_USER_OBJ => Tag::UserObj,
        TAG_USER => Tag::User(named(id)?),
        TAG_GROUP_OBJ => Tag::GroupObj,
        TAG_GROUP => Tag::Group(named(id)?),
        TAG_MASK => Tag::Mask,
        TAG_OTHER => Tag::Other,
        _ => return Err(FsError::InvalidArgument("unknown ACL tag")),
    };
    Ok(AclEntry { tag, perm })
}

/// Decode an ACL a filesystem stored itself: damage is EIO, not the
/// caller's EINVAL, since the caller never gave these bytes.
pub fn decode_stored(value: &[u8]) -> Result<Option<Acl>> {
    Acl::decode(value).map_err(|e| FsError::Io(format!("stored ACL does not decode: {e}")))
}

/// What setting an ACL xattr does to an inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclChange {
    /// The value to store, or `None` to remove the xattr (absent is fine).
    pub value: Option<Vec<u8>>,
    /// The inode's new permission bits (`0o7777`).
    pub perm: u32,
}

/// The inode an ACL is set on, as [`set_acl`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct AclTarget {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`0o7777`).
    pub perm: u32,
    pub is_dir: bool,
}

/// `setxattr` of an ACL name, as `set_posix_acl` and
/// `posix_acl_update_mode` do it: a default ACL only on a directory
/// (EACCES, though removing one elsewhere succeeds), only the owner or root
/// (EPERM), an access ACL the mode bits can say is not stored and the mode
/// takes its bits, and setgid is dropped for a caller outside the group.
pub fn set_acl(req: &Request, kind: AclKind, value: &[u8], t: AclTarget) -> Result<AclChange> {
    let acl = Acl::decode(value)?;
    let unchanged = AclChange {
        value: None,
        perm: t.perm,
    };
    if kind == AclKind::Default && !t.is_dir {
        return match acl {
            Some(_) => Err(FsError::Permission),
            None => Ok(unchanged),
        };
    }
    if req.uid != 0 && req.uid != t.uid {
        return Err(FsError::NotPermitted);
    }
    let Some(acl) = acl else {
        return Ok(unchanged);
    };
    if kind == AclKind::Default {
        return Ok(AclChange {
            value: Some(acl.encode()),
            perm: t.perm,
        });
    }
    let (bits, equiv) = acl.equiv_mode();
    let mut perm = (t.perm & !0o777) | bits;
    if req.uid != 0 && req.gid != t.gid {
        perm &= !libc::S_ISGID;
    }
    Ok(AclChange {
        value: (!equiv).then(|| acl.encode()),
        perm,
    })
}

/// The ACL-derived parts of a new inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inherited {
    /// Permission bits (`0o7777`), after the umask or the default ACL.
    pub perm: u32,
    /// An access ACL to store, when the inherited one says more than `perm`.
    pub access: Option<Vec<u8>>,
    /// A default ACL to store (directories under a default ACL).
    pub default: Option<Vec<u8>>,
}

/// `posix_acl_create`: a new inode with permission bits `perm` (as asked,
/// not masked) under a parent whose default ACL is `parent_default`. With
/// none the umask applies; with one the umask does not, the inode's access
/// ACL is the default masked by `perm`, and a directory also gets the
/// default ACL. Symlinks take neither.
pub fn inherit(
    parent_default: Option<&Acl>,
    is_dir: bool,
    is_symlink: bool,
    perm: u32,
    umask: u32,
) -> Inherited {
    let none = |perm| Inherited {
        perm,
        access: None,
        default: None,
    };
    if is_symlink {
        return none(perm);
    }
    let Some(default) = parent_default else {
        return none(perm & !(umask & 0o777));
    };
    let mut access = default.clone();
    let (perm, equiv) = access.create_masq(perm);
    Inherited {
        perm,
        access: (!equiv).then(|| access.encode()),
        default: is_dir.then(|| default.encode()),
    }
}

/// `posix_acl_chmod` of a stored access ACL: the value after a chmod to
/// `perm`.
pub fn chmod_acl(stored: &[u8], perm: u32) -> Result<Option<Vec<u8>>> {
    Ok(decode_stored(stored)?.map(|mut acl| {
        acl.chmod(perm);
        acl.encode()
    }))
}

/// Whether `want` (`rwx` bits) is granted to a non-root caller who is not
/// the owner, as `acl_permission_check` decides: the access ACL when there
/// is one and the group bits are not all clear, else the group bits for a
/// member of the file's group, else the other bits.
pub(crate) fn non_owner_permits(
    req: &Request,
    gid: u32,
    perm: u32,
    acl: Option<&Acl>,
    want: u16,
) -> bool {
    if let Some(acl) = acl {
        if perm & 0o070 != 0 {
            return acl.permits(req, gid, want);
        }
    }
    let bits = if req.gid == gid { perm >> 3 } else { perm };
    (bits as u16) & want == want
}

#[cfg(test)]
mod tests;
