//! READDIR and READDIRPLUS: paging a directory into the kernel's reply
//! buffer.
//!
//! The kernel's buffer size is hidden from us (see [`Budget`]), so a reply
//! is filled by asking the filesystem for batches until an entry does not
//! fit. Two invariants follow from that:
//! - cookies: an entry is only put in a reply with its own cookie, and one
//!   that does not fit is dropped; the kernel continues from the last
//!   cookie it received, so nothing is lost or repeated.
//! - lookup counts: the filesystem counts a lookup for every readdirplus
//!   entry it returns other than `.` and `..`; an entry that did not fit
//!   was never seen by the kernel, which will never forget it, so it is
//!   forgotten here at once.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use aegis_vfs::{Attr, DirEntry, FileSystem};
use fuser::{FileHandle, INodeNo, ReplyDirectory, ReplyDirectoryPlus};

use super::reply::{errno, file_attr, file_type, generation, Ttls};

/// Size of `struct fuse_dirent` without its name.
pub(super) const DIRENT_HEADER: usize = 24;
/// Size of `struct fuse_direntplus` (`fuse_entry_out` + `fuse_dirent`)
/// without its name.
pub(super) const DIRENTPLUS_HEADER: usize = 128 + DIRENT_HEADER;

/// The bytes one entry takes in a reply buffer: header, name, padding to 8.
pub(super) fn entry_size(header: usize, name_len: usize) -> usize {
    (header + name_len).next_multiple_of(8)
}

pub(super) fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// How many entries to ask the filesystem for. fuser does not reveal the
/// size of the kernel's reply buffer (a page up to `max_pages` pages,
/// following the reader's buffer), so assume `guess` bytes at first.
/// Entries are counted at the average size seen so far, so a batch is about
/// what fits, not more: that matters for readdirplus, where every surplus
/// entry costs a lookup and a forget. Once the guess is used up without the
/// reply being full, a single entry probes for more room; only if it fits
/// does the guess double, so a wrong guess wastes at most that one entry.
pub(super) struct Budget {
    pub(super) guess: usize,
    used: usize,
    entries: usize,
    min_entry: usize,
}

impl Budget {
    pub(super) fn new(guess: usize, header: usize) -> Budget {
        Budget {
            guess: guess.max(1),
            used: 0,
            entries: 0,
            min_entry: entry_size(header, 1),
        }
    }

    pub(super) fn add(&mut self, size: usize) {
        self.used += size;
        self.entries += 1;
    }

    pub(super) fn want(&mut self) -> usize {
        let avg = match self.entries {
            0 => self.min_entry,
            n => self.used.div_ceil(n).max(self.min_entry),
        };
        let left = self.guess.saturating_sub(self.used);
        if left < avg {
            self.guess = self.guess.saturating_mul(2);
            return 1;
        }
        left / avg
    }
}

/// Fill a readdir reply from cookie `offset`. `add` puts one entry in the
/// reply and returns `true` if it did not fit (and so was not added). Asks
/// again while room is left, so a reply is full unless the directory ended.
/// An error after some entries were added ends the reply early instead: the
/// kernel comes back from the last cookie and then sees the error.
pub(crate) fn fill_dir(
    fs: &dyn FileSystem,
    ino: u64,
    fh: u64,
    mut offset: u64,
    guess: usize,
    mut add: impl FnMut(&DirEntry) -> bool,
) -> aegis_vfs::Result<()> {
    let mut budget = Budget::new(guess, DIRENT_HEADER);
    let mut first = true;
    loop {
        let entries = match fs.readdir(ino, fh, offset, budget.want()) {
            Ok(e) => e,
            Err(e) if first => return Err(e),
            Err(_) => return Ok(()),
        };
        first = false;
        if entries.is_empty() {
            return Ok(());
        }
        for e in &entries {
            if add(e) {
                return Ok(());
            }
            budget.add(entry_size(DIRENT_HEADER, e.name.len()));
            offset = e.offset;
        }
    }
}

/// As [`fill_dir`] for readdirplus. Each entry other than `.` and `..`
/// that the filesystem returned counted as a lookup; those that do not fit
/// are forgotten here because the kernel never learns of them.
pub(crate) fn fill_dir_plus(
    fs: &dyn FileSystem,
    ino: u64,
    fh: u64,
    mut offset: u64,
    guess: usize,
    mut add: impl FnMut(&DirEntry, &Attr) -> bool,
) -> aegis_vfs::Result<()> {
    let mut budget = Budget::new(guess, DIRENTPLUS_HEADER);
    let mut first = true;
    loop {
        let entries = match fs.readdirplus(ino, fh, offset, budget.want()) {
            Ok(e) => e,
            Err(e) if first => return Err(e),
            Err(_) => return Ok(()),
        };
        first = false;
        if entries.is_empty() {
            return Ok(());
        }
        for (i, (e, attr)) in entries.iter().enumerate() {
            if add(e, attr) {
                for (e, _) in &entries[i..] {
                    if !is_dot(&e.name) {
                        fs.forget(e.ino, 1);
                    }
                }
                return Ok(());
            }
            budget.add(entry_size(DIRENTPLUS_HEADER, e.name.len()));
            offset = e.offset;
        }
    }
}

/// The first guess at the kernel's readdir buffer: one page, which is what
/// it sends unless it has been told of larger pages (`FUSE_MAX_PAGES`) and
/// the reader asked for more.
fn dir_buffer_guess() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096).max(4096)
}

/// Answer a READDIR request from cookie `offset`.
pub(crate) fn reply_dir(
    fs: &dyn FileSystem,
    ino: INodeNo,
    fh: FileHandle,
    offset: u64,
    mut reply: ReplyDirectory,
) {
    let result = fill_dir(fs, ino.0, fh.0, offset, dir_buffer_guess(), |e| {
        reply.add(
            INodeNo(e.ino),
            e.offset,
            file_type(e.kind),
            OsStr::from_bytes(&e.name),
        )
    });
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

/// Answer a READDIRPLUS request from cookie `offset`.
pub(crate) fn reply_dir_plus(
    fs: &dyn FileSystem,
    ino: INodeNo,
    fh: FileHandle,
    offset: u64,
    ttls: &Ttls,
    mut reply: ReplyDirectoryPlus,
) {
    let ttl = ttls.both();
    let result = fill_dir_plus(fs, ino.0, fh.0, offset, dir_buffer_guess(), |e, attr| {
        reply.add(
            INodeNo(e.ino),
            e.offset,
            OsStr::from_bytes(&e.name),
            &ttl,
            &file_attr(attr),
            generation(attr),
        )
    });
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}
