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
//! Asking the filesystem whether a file has the bits costs a getattr per
//! write, which writers other than root paid on every write (their
//! writes all carry the flag). [`NoSetId`] remembers the inodes seen
//! without either bit, as the kernel's `S_NOSEC` does, until something
//! that may set one reaches the adapter: a setattr (chmod, chown), a
//! setxattr or removexattr (an ACL sets mode bits), or the kernel's
//! forget (after which the number may name another inode). Nothing else
//! changes a mode under a mounted filesystem: every change comes through
//! here.
//!
//! The drop itself is the empty setattr the kernel sent before: the
//! filesystem applies Linux's rule (setuid always, setgid with group-exec
//! or for a caller outside the group, capabilities too). Capabilities need
//! nothing here: setting a `security.*` xattr clears `S_NOSEC` in the
//! kernel, whose next write checks and removes it as before.

use std::collections::HashSet;

use aegis_vfs::{FileSystem, SetAttr};
use parking_lot::Mutex;

use super::reply::setattr_caller;

/// Most inodes [`NoSetId`] remembers; past it the set starts over (a
/// miss costs one getattr, never a wrong answer).
const MAX_REMEMBERED: usize = 1 << 16;

/// Inodes known to have neither setuid nor setgid (see the module docs).
#[derive(Default)]
pub(crate) struct NoSetId(Mutex<HashSet<u64>>);

impl NoSetId {
    /// `ino` may have gained a bit, or be another inode now.
    pub(crate) fn forget(&self, ino: u64) {
        self.0.lock().remove(&ino);
    }

    fn known(&self, ino: u64) -> bool {
        self.0.lock().contains(&ino)
    }

    fn remember(&self, ino: u64) {
        let mut set = self.0.lock();
        if set.len() >= MAX_REMEMBERED {
            set.clear();
        }
        set.insert(ino);
    }
}

/// Before a change by `req` of `ino` that drops privileges (`drops`, as
/// [`write_drops`] or [`drops_for`] decide): drop its setuid and setgid
/// if it has either. A failure is the change's own.
pub(crate) fn drop_privileges(
    fs: &dyn FileSystem,
    seen: &NoSetId,
    req: &fuser::Request,
    ino: u64,
    drops: bool,
) -> aegis_vfs::Result<()> {
    if !drops || seen.known(ino) {
        return Ok(());
    }
    let attr = fs.getattr(ino)?;
    if attr.perm as u32 & (libc::S_ISUID | libc::S_ISGID) == 0 {
        seen.remember(ino);
        return Ok(());
    }
    let caller = setattr_caller(fs, req, ino, None, None);
    let after = fs.setattr(&caller, ino, &SetAttr::default(), None)?;
    if after.perm as u32 & (libc::S_ISUID | libc::S_ISGID) == 0 {
        seen.remember(ino);
    }
    Ok(())
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
