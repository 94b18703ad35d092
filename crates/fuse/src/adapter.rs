//! The `fuser::Filesystem` implementation over `Arc<dyn FileSystem>`.
//!
//! Every FUSE request maps onto one [`FileSystem`] call (two for `release`
//! with the flush flag): arguments are converted, the result becomes the
//! reply, and an [`FsError`] becomes its errno. The adapter holds no state
//! of its own besides the filesystem, so requests from all worker threads
//! run concurrently and the filesystem's own locking decides what
//! serialises.
//!
//! Invariants the kernel relies on:
//! - lookup counts: every reply carrying an entry (lookup, mknod, mkdir,
//!   symlink, link, create, and readdirplus entries other than `.`/`..`)
//!   matches one lookup counted by the filesystem. A readdirplus entry the
//!   filesystem returned but that did not fit in the reply buffer was never
//!   seen by the kernel, so the adapter forgets it right away.
//! - readdir cookies: an entry is only put in a reply with its own cookie;
//!   entries that do not fit are dropped, and the kernel continues from the
//!   last cookie it received, so nothing is lost or repeated.
//! - permissions: the mount uses `default_permissions`, so the kernel checks
//!   mode bits before calling in and the filesystem does not.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aegis_vfs::{
    Attr, DirEntry, FileSystem, FileType, FsError, Request, SetAttr, TimeOrNow, Whence, XattrReply,
};
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, WriteFlags,
};
use tracing::warn;

/// How long the kernel may cache attributes and name lookups. Every change
/// goes through this mount, so the kernel's caches are updated on the way;
/// the timeout only bounds staleness of `atime` and similar changes the
/// filesystem makes on its own.
const TTL: Duration = Duration::from_secs(1);

/// Largest write the kernel may send in one request: big requests mean
/// fewer round trips and let the filesystem see whole records.
const MAX_WRITE: u32 = 1 << 20;

/// Readahead the kernel may do, for the same reason.
const MAX_READAHEAD: u32 = 1 << 20;

/// Requests the kernel may keep queued in the background (readahead,
/// async reads) before it throttles: matches the default worker count scale.
const MAX_BACKGROUND: u16 = 64;

/// Largest copy_file_range count the 32-bit reply can carry, page aligned.
const MAX_COPY: u32 = 0xffff_f000;

/// Size of `struct fuse_dirent` without its name.
const DIRENT_HEADER: usize = 24;
/// Size of `struct fuse_direntplus` (`fuse_entry_out` + `fuse_dirent`)
/// without its name.
const DIRENTPLUS_HEADER: usize = 128 + DIRENT_HEADER;

/// The bytes one entry takes in a reply buffer: header, name, padding to 8.
fn entry_size(header: usize, name_len: usize) -> usize {
    (header + name_len).next_multiple_of(8)
}

/// Serves an `Arc<dyn FileSystem>` to the kernel.
pub(crate) struct FuseAdapter {
    fs: Arc<dyn FileSystem>,
}

impl FuseAdapter {
    pub(crate) fn new(fs: Arc<dyn FileSystem>) -> FuseAdapter {
        FuseAdapter { fs }
    }
}

fn errno(e: &FsError) -> Errno {
    if let FsError::Io(msg) = e {
        // The only errors worth an operator's attention: the rest are the
        // caller's mistakes and reach it as an errno.
        warn!("I/O error returned to the kernel: {msg}");
    }
    Errno::from_i32(e.errno())
}

fn request(req: &fuser::Request) -> Request {
    Request {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn file_type(kind: FileType) -> fuser::FileType {
    match kind {
        FileType::RegularFile => fuser::FileType::RegularFile,
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::NamedPipe => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
        FileType::CharDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
    }
}

pub(crate) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.crtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        // FUSE carries the kernel's 32-bit `new_encode_dev` form; that is
        // also what mknod handed the filesystem, so it round-trips.
        rdev: a.rdev as u32,
        blksize: a.blksize,
        flags: 0,
    }
}

fn reply_entry(reply: ReplyEntry, result: aegis_vfs::Result<Attr>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &file_attr(&attr), Generation(attr.generation)),
        Err(e) => reply.error(errno(&e)),
    }
}

fn reply_empty(reply: ReplyEmpty, result: aegis_vfs::Result<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

fn reply_xattr(reply: ReplyXattr, result: aegis_vfs::Result<XattrReply>) {
    match result {
        Ok(XattrReply::Size(n)) => reply.size(n),
        Ok(XattrReply::Data(d)) => reply.data(&d),
        Err(e) => reply.error(errno(&e)),
    }
}

fn time(t: fuser::TimeOrNow) -> TimeOrNow {
    match t {
        fuser::TimeOrNow::SpecificTime(t) => TimeOrNow::Time(t),
        fuser::TimeOrNow::Now => TimeOrNow::Now,
    }
}

fn is_dot(name: &[u8]) -> bool {
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
struct Budget {
    guess: usize,
    used: usize,
    entries: usize,
    min_entry: usize,
}

impl Budget {
    fn new(guess: usize, header: usize) -> Budget {
        Budget {
            guess: guess.max(1),
            used: 0,
            entries: 0,
            min_entry: entry_size(header, 1),
        }
    }

    fn add(&mut self, size: usize) {
        self.used += size;
        self.entries += 1;
    }

    fn want(&mut self) -> usize {
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

impl fuser::Filesystem for FuseAdapter {
    fn init(&mut self, _req: &fuser::Request, config: &mut KernelConfig) -> io::Result<()> {
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
        ] {
            let _ = config.add_capabilities(cap);
        }
        // Each setter returns the nearest acceptable value when ours is
        // out of the kernel's range; take that one instead.
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(MAX_BACKGROUND);
        Ok(())
    }

    fn lookup(&self, _req: &fuser::Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, self.fs.lookup(parent.0, name));
    }

    fn forget(&self, _req: &fuser::Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    // batch_forget keeps fuser's default, which calls `forget` per node:
    // fuser 0.18 does not export the `ForgetOne` type an override would name.

    fn getattr(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        _fh: Option<FileHandle>,
        reply: ReplyAttr,
    ) {
        match self.fs.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        req: &fuser::Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<fuser::TimeOrNow>,
        mtime: Option<fuser::TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
            ctime,
            crtime,
        };
        match self.fs.setattr(&request(req), ino.0, &set, fh.map(|f| f.0)) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &fuser::Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &fuser::Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        // The kernel masks already unless FUSE_DONT_MASK is on; masking
        // again is harmless and keeps us right if that ever changes.
        let mode = mode & !(umask & 0o7777);
        reply_entry(
            reply,
            self.fs
                .mknod(&request(req), parent.0, name, mode, u64::from(rdev)),
        );
    }

    fn mkdir(
        &self,
        req: &fuser::Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mode = mode & 0o7777 & !umask;
        reply_entry(reply, self.fs.mkdir(&request(req), parent.0, name, mode));
    }

    fn unlink(&self, _req: &fuser::Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.fs.unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &fuser::Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.fs.rmdir(parent.0, name));
    }

    fn symlink(
        &self,
        req: &fuser::Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        reply_entry(
            reply,
            self.fs
                .symlink(&request(req), parent.0, link_name, target.as_os_str()),
        );
    }

    fn rename(
        &self,
        _req: &fuser::Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.fs
                .rename(parent.0, name, newparent.0, newname, flags.bits()),
        );
    }

    fn link(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply_entry(reply, self.fs.link(ino.0, newparent.0, newname));
    }

    fn open(&self, _req: &fuser::Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.open(ino.0, flags.0) {
            // KEEP_CACHE: every change to the file passes through this
            // mount's page cache (no writeback cache, so it is written
            // through), hence cached pages stay valid across opens.
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(ino.0, fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn write(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.fs.write(ino.0, fh.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.flush(ino.0, fh.0));
    }

    fn release(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        flush: bool,
        reply: ReplyEmpty,
    ) {
        // `flush` set means the kernel skipped the FLUSH of the last close
        // and folds it in here; the handle is released whatever it says,
        // since the kernel forgets the handle after this request.
        let flushed = if flush {
            self.fs.flush(ino.0, fh.0)
        } else {
            Ok(())
        };
        let released = self.fs.release(ino.0, fh.0);
        reply_empty(reply, flushed.and(released));
    }

    fn fsync(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.fsync(ino.0, fh.0, datasync));
    }

    fn opendir(&self, _req: &fuser::Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = fill_dir(&*self.fs, ino.0, fh.0, offset, dir_buffer_guess(), |e| {
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

    fn readdirplus(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let result = fill_dir_plus(
            &*self.fs,
            ino.0,
            fh.0,
            offset,
            dir_buffer_guess(),
            |e, attr| {
                reply.add(
                    INodeNo(e.ino),
                    e.offset,
                    OsStr::from_bytes(&e.name),
                    &TTL,
                    &file_attr(attr),
                    Generation(attr.generation),
                )
            },
        );
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn releasedir(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.releasedir(ino.0, fh.0));
    }

    fn fsyncdir(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.fsyncdir(ino.0, fh.0, datasync));
    }

    fn statfs(&self, _req: &fuser::Request, ino: INodeNo, reply: ReplyStatfs) {
        match self.fs.statfs(ino.0) {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setxattr(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        if position != 0 {
            // Only macOS resource forks use a position.
            reply.error(Errno::EINVAL);
            return;
        }
        reply_empty(reply, self.fs.setxattr(ino.0, name, value, flags));
    }

    fn getxattr(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        reply_xattr(reply, self.fs.getxattr(ino.0, name, size));
    }

    fn listxattr(&self, _req: &fuser::Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, self.fs.listxattr(ino.0, size));
    }

    fn removexattr(&self, _req: &fuser::Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.fs.removexattr(ino.0, name));
    }

    fn access(&self, req: &fuser::Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        reply_empty(reply, self.fs.access(&request(req), ino.0, mask.bits()));
    }

    fn create(
        &self,
        req: &fuser::Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mode = mode & 0o7777 & !umask;
        match self.fs.create(&request(req), parent.0, name, mode, flags) {
            Ok((attr, fh)) => reply.created(
                &TTL,
                &file_attr(&attr),
                Generation(attr.generation),
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fallocate(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.fs.fallocate(ino.0, fh.0, offset, length, mode));
    }

    fn lseek(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        // SEEK_CUR never comes here (the kernel owns the file position);
        // anything Whence cannot name is the caller's error.
        let Some(whence) = Whence::from_raw(whence) else {
            reply.error(Errno::EINVAL);
            return;
        };
        match self.fs.lseek(ino.0, fh.0, offset, whence) {
            Ok(pos) => match i64::try_from(pos) {
                Ok(pos) => reply.offset(pos),
                Err(_) => reply.error(Errno::EOVERFLOW),
            },
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn copy_file_range(
        &self,
        _req: &fuser::Request,
        ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let Ok(flags) = u32::try_from(flags.bits()) else {
            reply.error(Errno::EINVAL);
            return;
        };
        // The reply carries a 32-bit count; the kernel already caps `len`
        // below that, this keeps a short copy honest if one ever does not.
        let len = len.min(u64::from(MAX_COPY));
        match self.fs.copy_file_range(
            ino_in.0, fh_in.0, offset_in, ino_out.0, fh_out.0, offset_out, len, flags,
        ) {
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(MAX_COPY)),
            Err(e) => reply.error(errno(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use aegis_vfs::{RamFs, ROOT_INO};

    use super::*;

    /// A directory with `n` files whose names vary in length, so entries
    /// take different room in a reply.
    fn populated(n: usize) -> (RamFs, u64, Vec<u64>) {
        let fs = RamFs::new();
        let req = Request::root();
        let dir = fs
            .mkdir(&req, ROOT_INO, OsStr::new("d"), 0o755)
            .unwrap()
            .ino;
        let inos = (0..n)
            .map(|i| {
                let name = format!("f{i}-{}", "x".repeat(i % 40));
                let (attr, fh) = fs
                    .create(&req, dir, OsStr::new(&name), 0o644, libc::O_RDWR)
                    .unwrap();
                fs.release(attr.ino, fh).unwrap();
                // Drop the lookup create counted: only readdirplus counts below.
                fs.forget(attr.ino, 1);
                attr.ino
            })
            .collect();
        (fs, dir, inos)
    }

    /// Reads the whole directory through `fill` in replies of `size` bytes
    /// with a first guess of `guess`, as the kernel would: each request
    /// continues from the last cookie received. Returns names, and the inos
    /// of entries the "kernel" received.
    fn list_plus(fs: &RamFs, dir: u64, size: usize, guess: usize) -> (Vec<Vec<u8>>, Vec<u64>) {
        let fh = fs.opendir(dir, libc::O_RDONLY).unwrap();
        let (mut names, mut seen) = (Vec::new(), Vec::new());
        let mut offset = 0;
        loop {
            let mut used = 0;
            let mut batch = Vec::new();
            fill_dir_plus(fs, dir, fh, offset, guess, |e, attr| {
                assert_eq!(e.ino, attr.ino);
                let need = entry_size(DIRENTPLUS_HEADER, e.name.len());
                if used + need > size {
                    return true;
                }
                used += need;
                batch.push(e.clone());
                false
            })
            .unwrap();
            if batch.is_empty() {
                break;
            }
            offset = batch.last().unwrap().offset;
            for e in batch {
                if !is_dot(&e.name) {
                    seen.push(e.ino);
                }
                names.push(e.name);
            }
        }
        fs.releasedir(dir, fh).unwrap();
        (names, seen)
    }

    /// An inode's lookup count is observable through unlink: once its
    /// links are gone it lives exactly as long as lookups remain.
    fn alive(fs: &RamFs, ino: u64) -> bool {
        fs.getattr(ino).is_ok()
    }

    #[test]
    fn readdirplus_forgets_entries_that_did_not_fit() {
        for (size, guess) in [
            (4096, 4096),
            (4096, 512),
            (1000, 4096),
            (20_000, 4096),
            (200, 100),
        ] {
            let (fs, dir, inos) = populated(300);
            let (names, seen) = list_plus(&fs, dir, size, guess);
            // Every name exactly once, `.` and `..` first.
            assert_eq!(names.len(), 302, "size {size} guess {guess}");
            assert_eq!(&names[..2], &[b".".to_vec(), b"..".to_vec()]);
            let unique: HashSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len());
            assert_eq!(seen.len(), 300);
            // Unlink everything: each file now lives only by the lookup the
            // "kernel" holds; one forget each must free it, so none was
            // over- or under-counted.
            for e in fs
                .readdir(dir, fs.opendir(dir, 0).unwrap(), 2, 1000)
                .unwrap()
            {
                fs.unlink(dir, OsStr::from_bytes(&e.name)).unwrap();
            }
            for &ino in &inos {
                assert!(alive(&fs, ino), "ino {ino} lost its lookup (size {size})");
                fs.forget(ino, 1);
                assert!(
                    !alive(&fs, ino),
                    "ino {ino} kept a stray lookup (size {size})"
                );
            }
        }
    }

    #[test]
    fn readdir_fills_and_continues_from_cookies() {
        let (fs, dir, _) = populated(500);
        let fh = fs.opendir(dir, 0).unwrap();
        for (size, guess) in [(4096, 4096), (4096, 256), (65536, 4096), (128, 4096)] {
            let mut offset = 0;
            let mut names = Vec::new();
            let mut ended = false;
            loop {
                let mut used = 0;
                let mut batch = Vec::new();
                let mut full = false;
                fill_dir(&fs, dir, fh, offset, guess, |e| {
                    let need = entry_size(DIRENT_HEADER, e.name.len());
                    if used + need > size {
                        full = true;
                        return true;
                    }
                    used += need;
                    batch.push(e.clone());
                    false
                })
                .unwrap();
                let Some(last) = batch.last() else { break };
                // A reply is full unless the directory ended there.
                assert!(
                    !ended,
                    "size {size}: a reply that was not full was not the last"
                );
                ended = !full;
                offset = last.offset;
                names.extend(batch.into_iter().map(|e| e.name));
            }
            assert_eq!(names.len(), 502);
            let unique: HashSet<_> = names.iter().collect();
            assert_eq!(unique.len(), 502);
        }
    }

    #[test]
    fn readdir_errors_on_first_call_only() {
        let fs = RamFs::new();
        let err = fill_dir(&fs, ROOT_INO, 999, 0, 4096, |_| false).unwrap_err();
        assert_eq!(err.errno(), libc::EBADF);
        let err = fill_dir_plus(&fs, ROOT_INO, 999, 0, 4096, |_, _| false).unwrap_err();
        assert_eq!(err.errno(), libc::EBADF);
    }

    #[test]
    fn budget_probes_past_the_guess_and_follows_entry_sizes() {
        let mut b = Budget::new(100, DIRENT_HEADER);
        assert_eq!(b.want(), 3);
        for _ in 0..3 {
            b.add(32);
        }
        assert_eq!(b.want(), 1); // 4 bytes left: probe, guess doubles
        assert_eq!(b.guess, 200);
        b.add(32);
        assert_eq!(b.want(), (200 - 128) / 32);
        let mut b = Budget::new(4096, DIRENT_HEADER);
        b.add(64);
        b.add(64);
        assert_eq!(b.want(), (4096 - 128) / 64);
    }

    #[test]
    fn attr_conversion() {
        let fs = RamFs::new();
        let req = Request {
            uid: 7,
            gid: 8,
            pid: 9,
        };
        let a = fs
            .mknod(
                &req,
                ROOT_INO,
                OsStr::new("dev"),
                libc::S_IFCHR | 0o600,
                0x0501,
            )
            .unwrap();
        let f = file_attr(&a);
        assert_eq!(f.ino, INodeNo(a.ino));
        assert_eq!(f.kind, fuser::FileType::CharDevice);
        assert_eq!((f.uid, f.gid, f.perm, f.rdev), (7, 8, 0o600, 0x0501));
        assert_eq!(
            (f.blocks, f.blksize, f.crtime),
            (a.blocks, a.blksize, a.crtime)
        );
    }
}
