//! The INIT handshake: which capabilities and limits the adapter asks of
//! the kernel.
//!
//! Nothing asked for here is required: a capability the kernel lacks is
//! simply not used, and a limit out of its range becomes the nearest one
//! it accepts, so a mount on an older kernel gets less instead of failing.
//! What is left out is as deliberate: no writeback cache, and no
//! `HANDLE_KILLPRIV(_V2)`. Without them the kernel drops privileges
//! before a write, truncate, fallocate or chown itself, having checked the
//! caller's CAP_FSETID, which the filesystem cannot see: it removes
//! `security.capability` and sends a setattr, with the mode to keep when
//! setuid or setgid-with-group-exec goes, or empty; the filesystem applies
//! the rest of Linux's rule there (setgid goes for a caller outside the
//! group). fuser 0.18 does not pass the setattr and open kill flags that
//! `HANDLE_KILLPRIV_V2` would need (see [`negotiate`]).

use fuser::{InitFlags, KernelConfig};

/// Largest write the kernel may send in one request: big requests mean
/// fewer round trips and let the filesystem see whole records.
const MAX_WRITE: u32 = 1 << 20;

/// Readahead the kernel may do, for the same reason.
const MAX_READAHEAD: u32 = 1 << 20;

/// Requests the kernel may keep queued in the background (readahead,
/// async reads) before it throttles: matches the default worker count scale.
const MAX_BACKGROUND: u16 = 64;

/// Ask for the capabilities and limits the adapter wants.
pub(crate) fn negotiate(config: &mut KernelConfig) {
    // Each capability is asked for alone: one the kernel lacks must not
    // cost the others. Writeback caching stays off on purpose: without
    // it a write reaches the filesystem before write(2) returns, so its
    // commits see everything applications were told was written, and
    // size and mtime stay the filesystem's own.
    for cap in [
        InitFlags::FUSE_ASYNC_READ,
        InitFlags::FUSE_BIG_WRITES,
        InitFlags::FUSE_MAX_PAGES,
        InitFlags::FUSE_ATOMIC_O_TRUNC,
        InitFlags::FUSE_DO_READDIRPLUS,
        InitFlags::FUSE_READDIRPLUS_AUTO,
        InitFlags::FUSE_PARALLEL_DIROPS,
        InitFlags::FUSE_AUTO_INVAL_DATA,
        InitFlags::FUSE_ASYNC_DIO,
        InitFlags::FUSE_CACHE_SYMLINKS,
        // File handles (name_to_handle_at, NFS export): the kernel looks
        // a handle's inode up as "." in it, which the filesystem answers.
        InitFlags::FUSE_EXPORT_SUPPORT,
        // mmap of files opened for direct I/O (strictatime mounts).
        InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP,
    ] {
        let _ = config.add_capabilities(cap);
    }
    // POSIX ACLs: the kernel enforces them in its permission checks and
    // hands the umask to the filesystem, which knows whether a default ACL
    // replaces it. Asked for as a pair: with ACLs but without DONT_MASK
    // the kernel would apply the umask under a default ACL too.
    let _ = config.add_capabilities(InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK);
    // Each setter returns the nearest acceptable value when ours is
    // out of the kernel's range; take that one instead.
    if let Err(nearest) = config.set_max_write(MAX_WRITE) {
        let _ = config.set_max_write(nearest);
    }
    if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
        let _ = config.set_max_readahead(nearest);
    }
    let _ = config.set_max_background(MAX_BACKGROUND);
}
