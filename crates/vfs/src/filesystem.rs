//! The inode-level [`FileSystem`] trait.
//!
//! It mirrors the FUSE low-level API: objects are named by inode number,
//! names are raw bytes (`&OsStr`, never containing `/` or NUL), and the
//! kernel (FUSE `default_permissions`) checks permission bits before calling
//! in, so implementations do not check them except in [`FileSystem::access`].
//!
//! # Reference counting
//!
//! Every operation that returns an [`Attr`] for a named inode
//! (`lookup`, `mknod`, `mkdir`, `symlink`, `link`, `create`, and every entry
//! except `.` and `..` of `readdirplus`) adds one to that inode's lookup
//! count, exactly as a FUSE reply entry does; [`FileSystem::forget`] takes
//! it away. Open handles (`open`, `create`, `opendir`) hold a reference
//! until `release`/`releasedir`. An inode whose link count reached zero is
//! freed only when both its lookup count and its open handles are gone, so
//! an unlinked but open file stays readable and writable.
//!
//! # Errors
//!
//! Every method returns [`FsError`]; the errno cases each method documents
//! are the ones Linux returns for the same call. Common to all methods:
//! `NotFound` (ENOENT) for an unknown inode, `BadHandle` (EBADF) for an
//! unknown handle or one opened on another inode.

use std::ffi::OsStr;

use crate::error::Result;
use crate::types::{Attr, DirEntry, Fh, Ino, Request, SetAttr, StatFs, Whence, XattrReply};

/// An inode-level filesystem. Object safe, `Send + Sync`; every method takes
/// `&self` and implementations lock internally.
/// Why a [`FileSystem::control`] command failed: an errno for the
/// caller's exit, and a message naming what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlError {
    pub errno: i32,
    pub message: String,
}

pub trait FileSystem: Send + Sync {
    /// Find `name` in directory `parent` and return its attributes, adding
    /// one to its lookup count. `.` and `..` resolve to the directory and
    /// its parent (the root's parent is the root). `.` also resolves any
    /// other inode that still has a name to itself (ENOENT once it has
    /// none): the kernel turns file handles into inodes this way.
    ///
    /// Errors: ENOENT (no such entry), ENOTDIR (`parent` is not a
    /// directory), ENAMETOOLONG (name over 255 bytes), EINVAL (name holds `/`
    /// or NUL or is empty).
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr>;

    /// Drop `nlookup` lookups of `ino`. Never fails; unknown inodes and
    /// counts larger than held are ignored (saturating).
    fn forget(&self, ino: Ino, nlookup: u64);

    /// Attributes of `ino`. Errors: ENOENT.
    fn getattr(&self, ino: Ino) -> Result<Attr>;

    /// Change attributes; see [`SetAttr`]. `size` truncates or extends a
    /// regular file (the new range reads as zeroes); a size change sets
    /// mtime. ctime is set to now on any change unless given. `fh` is the
    /// handle for `ftruncate`/`futimens`, when there is one. A mode change
    /// rewrites the access ACL's owner, mask and other entries. The
    /// privilege bits follow Linux (see
    /// [`setattr_privileges`](crate::validate::setattr_privileges)): a
    /// chown of a non-directory drops setuid, setgid-with-group-exec and
    /// `security.capability`; a truncate by a caller other than root, or an
    /// empty `SetAttr` from one (how FUSE asks before a write or
    /// fallocate), drops them as that caller's write would; a regular
    /// file's setgid is kept from a mode only for root or a group member.
    ///
    /// Errors: EISDIR (size on a directory), EINVAL (size on another
    /// non-regular inode), EFBIG (size above the maximum file size), ENOSPC.
    fn setattr(&self, req: &Request, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr>;

    /// Create a regular file, FIFO, socket, or character or block device.
    /// `mode` holds the `S_IFMT` type (0 means regular) and permission bits;
    /// `req.umask` masks them unless `parent` has a default ACL, which the
    /// new inode inherits instead (see [`acl::inherit`]). `rdev` is kept
    /// for devices only. Owner is `req.uid`; group is `req.gid`, or the
    /// parent's group when the parent is setgid.
    ///
    /// [`acl::inherit`]: crate::acl::inherit
    ///
    /// Errors: EEXIST (name exists, or is `.`/`..`), ENOTDIR, ENOENT (parent
    /// unlinked), ENAMETOOLONG, EINVAL (bad name, unknown type or
    /// `S_IFLNK`), EPERM (`S_IFDIR`: use mkdir), ENOSPC (inode limit).
    fn mknod(&self, req: &Request, parent: Ino, name: &OsStr, mode: u32, rdev: u64)
        -> Result<Attr>;

    /// Create a directory (nlink 2, parent's nlink + 1). Inherits the setgid
    /// bit and group from a setgid parent, and the parent's default ACL as
    /// its own default and (masked) access ACL. Errors as `mknod`.
    fn mkdir(&self, req: &Request, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr>;

    /// Remove a non-directory entry; the inode lives on while its link
    /// count, lookups or handles are non-zero. Updates ctime of the inode and
    /// mtime/ctime of the parent.
    ///
    /// Errors: ENOENT, ENOTDIR (`parent`), EISDIR (entry is a directory),
    /// EINVAL (`.`/`..` or bad name), ENAMETOOLONG.
    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()>;

    /// Remove an empty directory.
    ///
    /// Errors: ENOENT, ENOTDIR (`parent`, or entry is not a directory),
    /// ENOTEMPTY, EINVAL (`.`/`..`, bad name), ENAMETOOLONG.
    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()>;

    /// Create a symbolic link named `name` pointing at `target` (stored
    /// verbatim, never resolved). Mode is always `0o777`.
    ///
    /// Errors: as `mknod`; ENOENT for an empty target, ENAMETOOLONG for a
    /// target over 4095 bytes.
    fn symlink(&self, req: &Request, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr>;

    /// The target of a symlink. Errors: EINVAL (not a symlink).
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>>;

    /// Rename `parent/name` to `newparent/newname`. `flags` is 0,
    /// `RENAME_NOREPLACE` or `RENAME_EXCHANGE`. Renaming an entry onto a
    /// link of the same inode succeeds and does nothing. Updates ctime of
    /// the moved inode(s), mtime/ctime of both parents, and `..` of a moved
    /// directory.
    ///
    /// Errors: ENOENT (source missing, or target missing with EXCHANGE),
    /// EEXIST (target exists with NOREPLACE), EINVAL (both flags, unknown
    /// flags, a directory moved into its own subtree, `.`/`..`), ENOTDIR
    /// (directory over non-directory, or a parent not a directory), EISDIR
    /// (non-directory over directory), ENOTEMPTY (over a non-empty
    /// directory), ENAMETOOLONG.
    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()>;

    /// Make a new name `newparent/newname` for `ino`; nlink + 1, ctime.
    ///
    /// Errors: EPERM (`ino` is a directory), EEXIST, ENOTDIR, ENOENT
    /// (`newparent` unlinked, or `ino` already has no links and is not an
    /// O_TMPFILE), ENAMETOOLONG, EINVAL.
    fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr>;

    /// Open `ino` with `open(2)` `flags` (`O_ACCMODE`, `O_APPEND`,
    /// `O_TRUNC`). The handle remembers the access mode and `O_APPEND`:
    /// writes through an append handle go to the end of file whatever
    /// offset the caller passes. `O_TRUNC` on a writable handle of a
    /// regular file truncates it to 0.
    ///
    /// Errors: EISDIR (directory opened for writing), ELOOP (symlink).
    fn open(&self, ino: Ino, flags: i32) -> Result<Fh>;

    /// Create and open a regular file. With `O_EXCL` an existing name fails
    /// with EEXIST; without it an existing name is opened as `open` would
    /// (and still counts as a lookup). `mode` holds permission bits, masked
    /// by `req.umask` or the default ACL as for `mknod`.
    ///
    /// Errors: as `mknod` and `open`; EISDIR if the existing entry is a
    /// directory.
    fn create(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Fh)>;

    /// Read up to `size` bytes at `offset`; short only at end of file;
    /// holes read as zeroes. May update atime (relatime).
    ///
    /// Errors: EBADF (handle not readable), EISDIR (directory), EINVAL
    /// (not a regular file).
    fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>>;

    /// Write `data` at `offset` (or at end of file for an `O_APPEND`
    /// handle), extending the file. Returns the bytes written, always all of
    /// `data`. Sets mtime and ctime.
    ///
    /// Errors: EBADF (handle not writable), EFBIG (past the maximum file
    /// size), ENOSPC, EISDIR, EINVAL (not a regular file).
    fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32>;

    /// Called on each `close(2)` of a descriptor of the handle.
    fn flush(&self, ino: Ino, fh: Fh) -> Result<()>;

    /// Drop an open handle (last close). May free an unlinked inode.
    fn release(&self, ino: Ino, fh: Fh) -> Result<()>;

    /// Make the file's data (and metadata unless `datasync`) durable.
    fn fsync(&self, ino: Ino, fh: Fh, datasync: bool) -> Result<()>;

    /// Open a directory for reading. Errors: ENOTDIR.
    fn opendir(&self, ino: Ino, flags: i32) -> Result<Fh>;

    /// Up to `max_entries` entries following cookie `offset` (0 means from
    /// the start). `.` and `..` come first with cookies 1 and 2. Cookies are
    /// stable: an entry keeps its cookie until removed, new entries get
    /// larger cookies, so a listing continued from a cookie returns every
    /// entry that existed throughout exactly once, whatever is created or
    /// removed in between. An empty result means the end.
    ///
    /// Errors: ENOTDIR, EBADF.
    fn readdir(&self, ino: Ino, fh: Fh, offset: u64, max_entries: usize) -> Result<Vec<DirEntry>>;

    /// As `readdir`, with each entry's attributes; every entry other than
    /// `.` and `..` counts as a lookup (FUSE readdirplus semantics).
    fn readdirplus(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        max_entries: usize,
    ) -> Result<Vec<(DirEntry, Attr)>>;

    /// Drop a directory handle.
    fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()>;

    /// Make the directory durable.
    fn fsyncdir(&self, ino: Ino, fh: Fh, datasync: bool) -> Result<()>;

    /// Filesystem statistics.
    fn statfs(&self, ino: Ino) -> Result<StatFs>;

    /// Set an extended attribute. Names carry a namespace prefix: `user.`,
    /// `trusted.`, `security.` or `system.`. `flags`: 0, `XATTR_CREATE`,
    /// `XATTR_REPLACE`. Sets ctime.
    ///
    /// Errors: ERANGE (name empty or over 255 bytes, as Linux), E2BIG (value
    /// over 64 KiB), EOPNOTSUPP (unknown namespace), EINVAL (empty name after
    /// the prefix, unknown or both flags), EEXIST (CREATE and exists),
    /// ENODATA (REPLACE and missing), EPERM (`user.` on an inode other than a
    /// regular file or directory), ENOSPC (names list over 64 KiB).
    ///
    /// `system.posix_acl_access` and `system.posix_acl_default` are ACLs,
    /// applied as Linux applies them ([`acl::set_acl`]): validated (EINVAL,
    /// E2BIG, EOPNOTSUPP for another version), set by the owner or root
    /// only (EPERM), a default ACL on directories only (EACCES); an access
    /// ACL sets the mode's bits and is not stored when they say it all.
    /// `flags` are ignored for them, as Linux does.
    ///
    /// [`acl::set_acl`]: crate::acl::set_acl
    fn setxattr(
        &self,
        req: &Request,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()>;

    /// Get an extended attribute: `size == 0` asks for the value's length.
    ///
    /// Errors: ENODATA (missing), ERANGE (value longer than `size`, or name
    /// too long), EOPNOTSUPP (unknown namespace).
    fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<XattrReply>;

    /// The NUL-terminated names of all extended attributes, sorted;
    /// `size == 0` asks for the length. Errors: ERANGE (longer than `size`).
    fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply>;

    /// Remove an extended attribute. Sets ctime. Removing an ACL leaves the
    /// mode bits as they are, as on Linux; who may do it is not checked
    /// here (the call carries no caller: the kernel checks ownership first).
    /// Errors: ENODATA, ERANGE (name too long), EOPNOTSUPP.
    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()>;

    /// Check `access(2)` `mask` (`F_OK`, or `R_OK|W_OK|X_OK`) for the
    /// requester against the mode bits and the access ACL (owner, then the
    /// ACL's entries, then group by primary gid, then other; uid 0 passes
    /// except X on a file without any x bit).
    ///
    /// Errors: EACCES.
    fn access(&self, req: &Request, ino: Ino, mask: i32) -> Result<()>;

    /// fallocate(2): `mode` 0 reserves the range (later writes into it
    /// cannot fail for space; counted in `st_blocks` and `statfs`) and
    /// extends the size, `FALLOC_FL_KEEP_SIZE` reserves without changing
    /// the size, `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE` deallocates
    /// (reads as zeroes), `FALLOC_FL_ZERO_RANGE` (optionally with
    /// KEEP_SIZE) zeroes and reserves, `FALLOC_FL_COLLAPSE_RANGE` and
    /// `FALLOC_FL_INSERT_RANGE` remove or insert a range of whole
    /// allocation units (ramfs chunks, on-disk records), moving what
    /// follows. Sets mtime/ctime when the content or size changes. Checks
    /// as [`fallocate_mode`](crate::validate::fallocate_mode) and
    /// [`check_shift`](crate::validate::check_shift).
    ///
    /// Errors: EINVAL (length 0, COLLAPSE/INSERT misaligned, combined with
    /// other flags, or reaching the end of file), EOPNOTSUPP (unknown
    /// bits, PUNCH_HOLE without KEEP_SIZE, PUNCH_HOLE with ZERO_RANGE),
    /// EFBIG (past the largest file), ENOSPC (the reservation cannot be
    /// held), EISDIR, EINVAL for other non-regular files (Linux: ENODEV),
    /// EBADF (handle not writable).
    fn fallocate(&self, ino: Ino, fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()>;

    /// Reposition within a file: `Set` returns `offset`, `End` returns
    /// size + offset, `Data`/`Hole` find the next data or hole at or after
    /// `offset` (the end of file counts as a hole). The granularity of
    /// data and holes is the implementation's allocation unit.
    ///
    /// Errors: ENXIO (`Data`/`Hole` with `offset` at or past end of file,
    /// or no data after it), EINVAL (negative result).
    fn lseek(&self, ino: Ino, fh: Fh, offset: i64, whence: Whence) -> Result<u64>;

    /// Copy up to `len` bytes from one file to another (or within one
    /// file, ranges not overlapping) without passing through the caller.
    /// Returns bytes copied: fewer than `len` only at the source's end of
    /// file. `flags` must be 0.
    ///
    /// Errors: EINVAL (flags, overlapping ranges in one file, non-regular
    /// files), EISDIR, EBADF (handles' access modes), EFBIG, ENOSPC.
    #[allow(clippy::too_many_arguments)]
    fn copy_file_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
        flags: u32,
    ) -> Result<u64>;

    /// FICLONERANGE (FICLONE: offsets 0, `len` 0): make `len` bytes of
    /// the target at `offset_out` (0: from `offset_in` to the source's end
    /// of file) share the source's storage instead of copying it, so both
    /// read the same bytes until either is written. Grows the target as
    /// needed; updates its mtime and ctime. Returns the bytes cloned.
    ///
    /// Errors: EINVAL (a range the implementation cannot share whole:
    /// offsets or length off its sharing unit, which a length may end off
    /// only at the source's end of file; overlapping ranges in one file;
    /// non-regular files), EISDIR, EBADF (handles' access modes), EFBIG,
    /// ENOSPC, EOPNOTSUPP (by default).
    #[allow(clippy::too_many_arguments)]
    fn clone_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> Result<u64> {
        let _ = (ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len);
        Err(crate::FsError::NotSupported)
    }

    /// FIDEDUPERANGE for one target: if `len` bytes of the source at
    /// `offset_in` equal the target's at `offset_out`, make the target
    /// share the source's storage for them (what the implementation's
    /// sharing unit allows; the contents do not change, nor the times).
    /// Returns `Some(bytes shared)`, or `None` if the bytes differ. At most
    /// 16 MiB are looked at per call (Linux's cap); `len` past the
    /// source's end of file is cut to it.
    ///
    /// Errors: EINVAL (overlapping ranges in one file, non-regular files),
    /// EISDIR, EBADF (the target not open for writing), EOPNOTSUPP (by
    /// default).
    #[allow(clippy::too_many_arguments)]
    fn dedupe_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
    ) -> Result<Option<u64>> {
        let _ = (ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len);
        Err(crate::FsError::NotSupported)
    }

    /// Remount: `writable` false makes every change durable, then refuses
    /// all later changes with EROFS (and updates no atime) until called
    /// with true again.
    ///
    /// Errors: EROFS (making writable a filesystem opened read-only), EIO
    /// (the commit failed; nothing changed), EOPNOTSUPP (by default).
    fn set_writable(&self, writable: bool) -> Result<()> {
        let _ = writable;
        Err(crate::FsError::NotSupported)
    }

    /// Stop the filesystem as a crash would (`FS_IOC_SHUTDOWN`): nothing
    /// more reaches its storage, and every later operation but `forget`,
    /// `release` and `releasedir` fails with EIO. The next mount shows
    /// what was durable at this moment.
    ///
    /// Errors: EOPNOTSUPP (by default).
    fn shutdown(&self) -> Result<()> {
        Err(crate::FsError::NotSupported)
    }

    /// A live administrative command for the mounted filesystem (the
    /// CLI's channel to a running daemon, `AEGIS_IOC_COMMAND`): `words`
    /// such as `["snapshot", "create", "NAME"]`. Returns the reply text,
    /// or an errno with a message for the user.
    ///
    /// Errors: ENOTTY (by default: no commands), whatever the command
    /// itself refuses with.
    fn control(&self, words: &[&str]) -> std::result::Result<String, ControlError> {
        let _ = words;
        Err(ControlError {
            errno: libc::ENOTTY,
            message: "this filesystem takes no commands".into(),
        })
    }

    /// O_TMPFILE: make an unnamed regular file in directory `parent` with
    /// permission bits `mode` and open it with `flags` (access mode and
    /// O_APPEND count), adding one lookup as `create` does. It has link
    /// count 0: it goes when its handles and lookups do, unless `link`
    /// names it first (the kernel decides whether it may: O_EXCL).
    ///
    /// Errors: ENOTDIR, ENOENT (`parent` removed), ENOSPC, EOPNOTSUPP (by
    /// default).
    fn tmpfile(&self, req: &Request, parent: Ino, mode: u32, flags: i32) -> Result<(Attr, Fh)> {
        let _ = (req, parent, mode, flags);
        Err(crate::FsError::NotSupported)
    }

    /// Names a [`FileSystem::control`] command made wrong in the kernel's
    /// caches (a name it removed, or one it made that a lookup found
    /// missing before), as (directory, name): the caller invalidates each
    /// once the command returns, and this forgets them. The default has
    /// none.
    fn take_stale_entries(&self) -> Vec<(Ino, Vec<u8>)> {
        Vec::new()
    }

    /// syncfs(2): make every change durable now. The default has nothing
    /// to make durable.
    fn syncfs(&self) -> Result<()> {
        Ok(())
    }
}
