//! Dropping setuid and setgid when a file changes, under
//! `FUSE_HANDLE_KILLPRIV_V2`.
//!
//! Without that capability the kernel checks `security.capability` with a
//! GETXATTR before every write (FUSE clears `SB_NOSEC`, so no inode is
//! ever marked as having nothing to drop): one more round trip per write,
//! which halved buffered random 4 KiB writes. With it the kernel marks
//! inodes without setuid, setgid or capabilities (`S_NOSEC`) after one
//! check and leaves their writes alone, and the filesystem drops the bits
//! itself:
//! - a write carries `FUSE_WRITE_KILL_SUIDGID` when the writer lacks
//!   CAP_FSETID: the bits go before the data lands;
//! - fallocate and an `O_TRUNC` open carry nothing the adapter can see
//!   (fuser does not pass the open's kill flag), so a caller other than
//!   root stands for one without CAP_FSETID, as `setattr` already decides
//!   for truncate and chown (`aegis_vfs::validate::setattr_privileges`).
//!
//! The drop itself is the empty setattr the kernel sent before: the
//! filesystem applies Linux's rule (setuid always, setgid with group-exec
//! or for a caller outside the group, capabilities too). Capabilities need
//! nothing here: setting a `security.*` xattr clears `S_NOSEC` in the
//! kernel, whose next write checks and removes it as before.

use aegis_vfs::{FileSystem, SetAttr};

use super::reply::setattr_caller;

/// Before a change by `req` of `ino` that drops privileges (`drops`, as
/// [`write_drops`] or [`drops_for`] decide): drop its setuid and setgid
/// if it has either. A failure is the change's own.
pub(crate) fn drop_privileges(
    fs: &dyn FileSystem,
    req: &fuser::Request,
    ino: u64,
    drops: bool,
) -> aegis_vfs::Result<()> {
    if !drops {
        return Ok(());
    }
    let attr = fs.getattr(ino)?;
    if attr.perm as u32 & (libc::S_ISUID | libc::S_ISGID) == 0 {
        return Ok(());
    }
    let caller = setattr_caller(fs, req, ino, None, None);
    fs.setattr(&caller, ino, &SetAttr::default(), None)
        .map(|_| ())
}

/// Whether a write drops privileges: the kernel says so in its flags.
pub(crate) fn write_drops(flags: fuser::WriteFlags) -> bool {
    flags.contains(fuser::WriteFlags::FUSE_WRITE_KILL_SUIDGID)
}

/// Whether a change other than a write, by `req`, drops privileges (the
/// caller stands for one without CAP_FSETID unless it is root).
pub(crate) fn drops_for(req: &fuser::Request) -> bool {
    req.uid() != 0
}
