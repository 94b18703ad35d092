//! The INIT handshake: which capabilities and limits the adapter asks of
//! the kernel.
//!
//! Nothing asked for here is required: a capability the kernel lacks is
//! simply not used, and a limit out of its range becomes the nearest one
//! it accepts, so a mount on an older kernel gets less instead of failing.
//!
//! What is chosen, and why (measured for issue 12, one run each on this
//! project's 2-CPU machines, Linux 6.18; the commands and every number are
//! in `docs/perf.md`, "Issue 12: FUSE settings"):
//! - Requests of 1 MiB: `max_write` 1 MiB with `FUSE_MAX_PAGES`, and the
//!   kernel grants 256 pages (its `fs.fuse.max_pages_limit`): a 64 MiB
//!   sequential write arrives as 64 WRITE requests of 1 MiB. Reads come
//!   in 128 KiB requests whatever is asked: at INIT the kernel offers a
//!   readahead of at most its default 128 KiB. Raising the mount's
//!   `read_ahead_kb` to 1024 afterwards (root, sysfs) gives 1 MiB READs,
//!   but no gain could be told from the disk's noise, and neither could
//!   128 KiB writes from 1 MiB ones; 1 MiB stays, for the fewer requests.
//! - No writeback cache unless the mount asks for it (`writeback_cache`,
//!   see [`negotiate`]). With it the kernel keeps written pages and owns
//!   size and mtime until it writes them back, so the adapter opens files
//!   read-write and without `O_APPEND` ([`open_flags_for_writeback`]);
//!   fsync, close and unmount stay durable (the kernel writes its pages
//!   back before each, an e2e test checks it). It stays off because it did
//!   not pay and is not as correct: random 4 KiB writes with an fsync each
//!   ran at 0.02 of the speed without it, buffered ones 0.54, sequential
//!   writes 0.77 (only tar was faster, 2–3.6×); a write into a full
//!   filesystem succeeds and its ENOSPC reaches close or fsync instead,
//!   against issue 12's rule that it goes to the write; and after fsync
//!   and a crash, mtime reads a few milliseconds later than stat showed.
//! - Timeouts (`attr_timeout=`, `entry_timeout=`, in the replies, not
//!   here): entries 10 s, attributes 1 s by default (see
//!   `options::DEFAULT_ENTRY_TIMEOUT`).
//! - Worker threads (`threads=`, the session's): two per CPU by default,
//!   for the reads (see `options::default_threads`).
//!
//! - `HANDLE_KILLPRIV_V2`: without it the kernel asks for
//!   `security.capability` before every write (FUSE clears `SB_NOSEC`),
//!   a second round trip per write that halved buffered random 4 KiB
//!   writes (12,000-15,500 against 23,000-29,000 IOPS with the question
//!   answered ENOSYS, `docs/perf.md`, "Issue 12, session 8"). With it the
//!   kernel marks inodes that have nothing to drop after one check, and
//!   the adapter drops setuid and setgid itself (`kill_priv.rs`).
//!   `HANDLE_KILLPRIV` (v1) stays off: it would make the filesystem drop
//!   capabilities and the bits on every write, chown and truncate with no
//!   word from the kernel about the caller's CAP_FSETID.
//!
use fuser::{InitFlags, KernelConfig};

/// Largest write the kernel may send in one request: big requests mean
/// fewer round trips and let the filesystem see whole records.
const MAX_WRITE: u32 = 1 << 20;

/// Readahead the kernel may do, for the same reason.
const MAX_READAHEAD: u32 = 1 << 20;

/// Requests the kernel may keep queued in the background (readahead,
/// async reads) before it throttles: matches the default worker count scale.
const MAX_BACKGROUND: u16 = 64;

/// The open flags the filesystem must see under the writeback cache, as
/// libfuse's `passthrough_ll` sets them: the kernel may read a page
/// through any handle that writes (to fill a page a write covers only in
/// part), so write-only becomes read-write; and the kernel places every
/// write itself, `O_APPEND` ones at its own idea of the end of file, so
/// the filesystem must take each write's offset as it comes.
pub(crate) fn open_flags_for_writeback(flags: i32) -> i32 {
    let mut f = flags;
    if f & libc::O_ACCMODE == libc::O_WRONLY {
        f = (f & !libc::O_ACCMODE) | libc::O_RDWR;
    }
    f & !libc::O_APPEND
}

/// Ask for the capabilities and limits the adapter wants; the writeback
/// cache only if `writeback`. Returns whether the kernel granted it.
pub(crate) fn negotiate(config: &mut KernelConfig, writeback: bool) -> bool {
    // Asked for alone, like every capability: one the kernel lacks must
    // not cost the others.
    let writeback = writeback
        && config
            .add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE)
            .is_ok();
    // Each capability is asked for alone: one the kernel lacks must not
    // cost the others.
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
        // One privilege check per inode instead of one per write.
        InitFlags::FUSE_HANDLE_KILLPRIV_V2,
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
    writeback
}
