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
//!   mode bits and POSIX ACLs (read through `getxattr`) before calling in
//!   and the filesystem does not. With the ACL capability the kernel also
//!   leaves the umask to the filesystem (`FUSE_DONT_MASK`): create, mknod
//!   and mkdir pass it on in the [`Request`](aegis_vfs::Request), unapplied.
//!
//! Layout: this file holds the one `impl fuser::Filesystem` block, request
//! by request; [`reply`] the conversions and shared replies, [`readdir`]
//! the paging of directories into reply buffers, [`init`] the INIT
//! handshake.
//!
//! [`FsError`]: aegis_vfs::FsError

mod init;
mod ioctl;
mod kill_priv;
mod readdir;
mod reply;
#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use aegis_vfs::{FileSystem, SetAttr, Whence};
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, FopenFlags, INodeNo,
    IoctlFlags, KernelConfig, LockOwner, Notifier, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, WriteFlags,
};

use self::init::negotiate;
use self::readdir::{reply_dir, reply_dir_plus};
use self::reply::{
    creator, errno, file_attr, generation, reply_empty, reply_entry, reply_xattr, request,
    setattr_caller, time, Ttls,
};

/// Largest copy_file_range count the 32-bit reply can carry, page aligned.
const MAX_COPY: u32 = 0xffff_f000;

/// Serves an `Arc<dyn FileSystem>` to the kernel.
pub(crate) struct FuseAdapter {
    fs: Arc<dyn FileSystem>,
    /// The session's channel for notifications to the kernel, set once the
    /// session exists (it is made after the adapter). Until then, and if
    /// never set, nothing is invalidated.
    notifier: Arc<OnceLock<Notifier>>,
    /// How opened files use the page cache: kept across opens, or direct
    /// I/O under `strictatime` (see [`open_flags`]).
    open_flags: FopenFlags,
    /// The options a remount cannot change (`MountConfig::fixed_options`).
    fixed_options: String,
    /// Attribute and entry timeouts of every reply.
    ttls: Ttls,
    /// Writeback cache asked for (`MountConfig::writeback_cache`).
    want_writeback: bool,
    /// Writeback cache granted by the kernel at INIT: open flags are then
    /// adjusted for it ([`init::open_flags_for_writeback`]).
    writeback: bool,
    /// Inodes known without setuid or setgid (`kill_priv.rs`).
    no_setid: kill_priv::NoSetId,
}

/// KEEP_CACHE: every change to a file passes through this mount's page
/// cache (written through, or with `writeback_cache` written back by the
/// kernel itself), hence cached pages stay valid across opens. Under `strictatime` a read served from
/// the page cache would never reach the filesystem, which keeps atime, so
/// files are opened for direct I/O instead: every read is seen, at the
/// price of the cache (mmap still works, with FUSE_DIRECT_IO_ALLOW_MMAP).
fn open_flags(strictatime: bool) -> FopenFlags {
    if strictatime {
        FopenFlags::FOPEN_DIRECT_IO
    } else {
        FopenFlags::FOPEN_KEEP_CACHE
    }
}

impl FuseAdapter {
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        notifier: Arc<OnceLock<Notifier>>,
        config: &crate::MountConfig,
    ) -> FuseAdapter {
        FuseAdapter {
            fs,
            notifier,
            open_flags: open_flags(config.strictatime),
            fixed_options: config.fixed_options.clone(),
            ttls: Ttls {
                attr: config.attr_timeout,
                entry: config.entry_timeout,
            },
            // Nothing to cache on a read-only mount.
            want_writeback: config.writeback_cache && !config.read_only,
            writeback: false,
            no_setid: kill_priv::NoSetId::default(),
        }
    }

    /// The open flags the filesystem gets for `flags` from the kernel.
    fn fs_open_flags(&self, flags: i32) -> i32 {
        if self.writeback {
            init::open_flags_for_writeback(flags)
        } else {
            flags
        }
    }

    /// The entry and open handle of a create or tmpfile.
    fn reply_created(&self, reply: ReplyCreate, result: aegis_vfs::Result<(aegis_vfs::Attr, u64)>) {
        match result {
            Ok((attr, fh)) => reply.created(
                &self.ttls.both(),
                &file_attr(&attr),
                generation(&attr),
                FileHandle(fh),
                self.open_flags,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Drop the kernel's cached pages of `[offset, offset + len)` after an
    /// O_DIRECT write, before it is acknowledged. The kernel invalidates
    /// them itself before a direct write, and after a synchronous one, but
    /// not when an asynchronous one (io_submit) completes: a buffered
    /// reader that refilled the cache meanwhile would keep old bytes for
    /// good. Safe to call from a request: it waits only on page locks,
    /// which reads served by other workers release.
    fn drop_cached_pages(&self, ino: u64, offset: u64, len: u64) {
        let Some(n) = self.notifier.get() else { return };
        let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // ENOENT: the kernel holds no pages of this inode; nothing to drop.
        if let Err(e) = n.inval_inode(INodeNo(ino), off, len) {
            if e.raw_os_error() != Some(libc::ENOENT) {
                tracing::warn!("invalidating cached pages of inode {ino}: {e}");
            }
        }
    }
}

impl FuseAdapter {
    /// Tell the kernel to drop the entries a live command made stale
    /// (`FileSystem::take_stale_entries`), before the command's caller
    /// hears back, so its next lookup asks again. The ioctl holds no lock
    /// on those directories, so this cannot wait on itself.
    fn drop_stale_entries(&self) {
        let stale = self.fs.take_stale_entries();
        let Some(n) = self.notifier.get() else { return };
        for (dir, name) in stale {
            let name = std::ffi::OsStr::from_bytes(&name);
            if let Err(e) = n.inval_entry(INodeNo(dir), name) {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    tracing::warn!("invalidating entry {name:?} of inode {dir}: {e}");
                }
            }
        }
    }
}

impl fuser::Filesystem for FuseAdapter {
    fn init(&mut self, _req: &fuser::Request, config: &mut KernelConfig) -> io::Result<()> {
        self.writeback = negotiate(config, self.want_writeback);
        Ok(())
    }

    fn lookup(&self, _req: &fuser::Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        reply_entry(reply, &self.ttls, self.fs.lookup(parent.0, name));
    }

    fn forget(&self, _req: &fuser::Request, ino: INodeNo, nlookup: u64) {
        self.no_setid.forget(ino.0);
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
            Ok(attr) => reply.attr(&self.ttls.attr, &file_attr(&attr)),
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
        if mode.is_some() || uid.is_some() || gid.is_some() {
            self.no_setid.forget(ino.0);
        }
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
        let req = setattr_caller(&*self.fs, req, ino.0, mode, gid);
        match self.fs.setattr(&req, ino.0, &set, fh.map(|f| f.0)) {
            Ok(attr) => reply.attr(&self.ttls.attr, &file_attr(&attr)),
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
        let req = creator(req, umask);
        reply_entry(
            reply,
            &self.ttls,
            self.fs.mknod(&req, parent.0, name, mode, u64::from(rdev)),
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
        let req = creator(req, umask);
        reply_entry(
            reply,
            &self.ttls,
            self.fs.mkdir(&req, parent.0, name, mode & 0o7777),
        );
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
            &self.ttls,
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
        reply_entry(reply, &self.ttls, self.fs.link(ino.0, newparent.0, newname));
    }

    fn open(&self, req: &fuser::Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.open(ino.0, self.fs_open_flags(flags.0)) {
            Ok(fh) => {
                // The truncation of an `O_TRUNC` open drops privileges as
                // a truncate does (FUSE_ATOMIC_O_TRUNC: the kernel sends
                // no setattr for it).
                let trunc = flags.0 & libc::O_TRUNC != 0 && kill_priv::drops_for(req);
                if let Err(e) =
                    kill_priv::drop_privileges(&*self.fs, &self.no_setid, req, ino.0, trunc)
                {
                    let _ = self.fs.release(ino.0, fh);
                    reply.error(errno(&e));
                    return;
                }
                reply.opened(FileHandle(fh), self.open_flags)
            }
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
        req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let drops = kill_priv::write_drops(write_flags);
        if let Err(e) = kill_priv::drop_privileges(&*self.fs, &self.no_setid, req, ino.0, drops) {
            reply.error(errno(&e));
            return;
        }
        match self.fs.write(ino.0, fh.0, offset, data) {
            Ok(n) => {
                if flags.0 & libc::O_DIRECT != 0 {
                    self.drop_cached_pages(ino.0, offset, n.into());
                }
                reply.written(n)
            }
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
        reply: ReplyDirectory,
    ) {
        reply_dir(&*self.fs, ino, fh, offset, reply);
    }

    fn readdirplus(
        &self,
        _req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        reply_dir_plus(&*self.fs, ino, fh, offset, &self.ttls, reply);
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
        req: &fuser::Request,
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
        self.no_setid.forget(ino.0);
        reply_empty(
            reply,
            self.fs.setxattr(&request(req), ino.0, name, value, flags),
        );
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
        self.no_setid.forget(ino.0);
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
        let req = creator(req, umask);
        self.reply_created(
            reply,
            self.fs.create(
                &req,
                parent.0,
                name,
                mode & 0o7777,
                self.fs_open_flags(flags),
            ),
        );
    }

    fn tmpfile(
        &self,
        req: &fuser::Request,
        parent: INodeNo,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let req = creator(req, umask);
        let flags = self.fs_open_flags(flags);
        self.reply_created(reply, self.fs.tmpfile(&req, parent.0, mode & 0o7777, flags));
    }

    fn fallocate(
        &self,
        req: &fuser::Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let drops = kill_priv::drops_for(req);
        if let Err(e) = kill_priv::drop_privileges(&*self.fs, &self.no_setid, req, ino.0, drops) {
            reply.error(errno(&e));
            return;
        }
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
        req: &fuser::Request,
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
        let drops = kill_priv::drops_for(req);
        if let Err(e) = kill_priv::drop_privileges(&*self.fs, &self.no_setid, req, ino_out.0, drops)
        {
            reply.error(errno(&e));
            return;
        }
        match self.fs.copy_file_range(
            ino_in.0, fh_in.0, offset_in, ino_out.0, fh_out.0, offset_out, len, flags,
        ) {
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(MAX_COPY)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn ioctl(
        &self,
        req: &fuser::Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        let served = ioctl::serve(&*self.fs, &self.fixed_options, req.uid(), cmd, in_data);
        self.drop_stale_entries();
        match served {
            Ok(out) => reply.ioctl(0, &out),
            Err(e) => reply.error(e),
        }
    }

    /// Only fuseblk mounts get it: sync(2) and syncfs(2) commit.
    fn syncfs(&self, _req: &fuser::Request, _ino: INodeNo, reply: ReplyEmpty) {
        reply_empty(reply, self.fs.syncfs());
    }

    /// A fuseblk umount waits for this: the last commit is made before it
    /// returns. (A plain `fuse` umount does not wait; the caller commits
    /// when the session ends.)
    fn before_destroy(&self) {
        if let Err(e) = self.fs.syncfs() {
            tracing::warn!("committing at unmount: {e}");
        }
    }
}
