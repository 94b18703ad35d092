//! The descriptor calls: `open`/`openat`, `close`, `dup`, `read`,
//! `write`, `pread`, `pwrite`, `lseek`, `ftruncate`, `fsync`,
//! `fdatasync`, `getdents64`, `fchdir`/`chdir`, and the descriptor flags.
//!
//! `open` follows Linux's `do_last`: with `O_CREAT` the last component is
//! created when missing (write and search permission on the directory;
//! EEXIST with `O_EXCL`; a trailing slash EISDIR), a symlink there is
//! followed unless `O_NOFOLLOW` or `O_EXCL` (ELOOP), an existing file
//! needs read or write permission for its access mode (write for
//! `O_TRUNC` too), a directory opens only read-only (EISDIR), and
//! `O_DIRECTORY` refuses anything else (ENOTDIR).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use parking_lot::Mutex;

use super::fd_table::{Fd, OpenFile};
use super::linux_abi::{push_record, reclen};
use super::path_walk::SYMLINKS_MAX;
use super::{Loc, Process};
use crate::error::{FsError, Result};
use crate::types::{Attr, Fh, FileType, SetAttr, Whence};

/// Flags `open` accepts; others are EINVAL.
const OPEN_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_CREAT
    | libc::O_EXCL
    | libc::O_NOCTTY
    | libc::O_TRUNC
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_SYNC
    | libc::O_DIRECT
    | libc::O_LARGEFILE
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW
    | libc::O_NOATIME
    | libc::O_CLOEXEC;

impl Process {
    /// `open(2)`: relative paths from the working directory.
    pub fn open(&self, path: &[u8], flags: i32, mode: u32) -> Result<Fd> {
        self.openat(None, path, flags, mode)
    }

    /// `openat(2)`: relative paths from `dirfd` (None: AT_FDCWD).
    pub fn openat(&self, dirfd: Option<Fd>, path: &[u8], flags: i32, mode: u32) -> Result<Fd> {
        if flags & !OPEN_FLAGS != 0 || flags & libc::O_ACCMODE == libc::O_ACCMODE {
            return Err(FsError::InvalidArgument("open flags"));
        }
        let (loc, a, created) = self.open_target(dirfd, path, flags, mode)?;
        let file = self.open_loc(loc, &a, flags, created)?;
        let mut fds = self.fds.lock();
        fds.install(file, flags & libc::O_CLOEXEC != 0, 0)
    }

    /// The place `open` opens, creating it with `O_CREAT`; for a file it
    /// created, the handle the create gave (no further check is due).
    fn open_target(
        &self,
        dirfd: Option<Fd>,
        path: &[u8],
        flags: i32,
        mode: u32,
    ) -> Result<(Loc, Attr, Option<Fh>)> {
        let follow = flags & (libc::O_NOFOLLOW | libc::O_EXCL) == 0;
        if flags & libc::O_CREAT == 0 {
            let loc = self.resolve(dirfd, path, follow)?;
            let a = self.attr(loc)?;
            if a.kind == FileType::Symlink {
                return Err(FsError::Loop);
            }
            return Ok((loc, a, None));
        }
        let mut p = self.resolve_parent(dirfd, path)?;
        if let Some(made) = self.create_if_new(&p, mode, flags)? {
            return Ok(made);
        }
        // Bounded as every walk is: a symlink chain of at most 40.
        for _ in 0..=SYMLINKS_MAX {
            let existing = match p.name.as_slice() {
                b"." | b".." => Some(self.lookup_in(p.dir, &p.name)?),
                name => match self.lookup_in(p.dir, name) {
                    Ok(l) => Some(l),
                    Err(FsError::NotFound) => None,
                    Err(e) => return Err(e),
                },
            };
            let Some(loc) = existing else {
                if p.slash {
                    return Err(FsError::IsDir);
                }
                return self.create_file(p.dir, &p.name, mode, flags);
            };
            if flags & libc::O_EXCL != 0 {
                return Err(FsError::Exists);
            }
            let a = self.attr(loc)?;
            if a.kind != FileType::Symlink {
                if a.kind == FileType::Directory {
                    return Err(FsError::IsDir);
                }
                return Ok((loc, a, None));
            }
            if !follow {
                return Err(FsError::Loop);
            }
            // A symlink: create or open what it names, relative to p.dir.
            let target = self.vfs.mounted(loc.mount)?.fs.readlink(loc.ino)?;
            p = self.resolve_parent_from(p.dir, &target)?;
        }
        Err(FsError::Loop)
    }

    /// The common case of `O_CREAT` without a lookup first: a name the
    /// dentry cache knows nothing of, in a directory this caller may
    /// write, is created exclusively; `None` (the name exists after all,
    /// or the case does not apply) sends the caller to the full path.
    fn create_if_new(
        &self,
        p: &super::path_walk::Parent,
        mode: u32,
        flags: i32,
    ) -> Result<Option<(Loc, Attr, Option<Fh>)>> {
        let plain = !matches!(p.name.as_slice(), b"." | b"..") && !p.slash;
        if !plain || self.vfs.cache.name(p.dir, &p.name).is_some() {
            return Ok(None);
        }
        let d = self.attr(p.dir)?;
        if self.may(p.dir, &d, libc::W_OK | libc::X_OK).is_err() {
            return Ok(None);
        }
        match self.create_file(p.dir, &p.name, mode, flags | libc::O_EXCL) {
            Ok(made) => Ok(Some(made)),
            Err(FsError::Exists) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_file(
        &self,
        dir: Loc,
        name: &[u8],
        mode: u32,
        flags: i32,
    ) -> Result<(Loc, Attr, Option<Fh>)> {
        let d = self.attr(dir)?;
        self.may(dir, &d, libc::W_OK | libc::X_OK)?;
        let fs = self.vfs.mounted(dir.mount)?.fs.clone();
        let req = self.creds.request();
        let (a, fh) = fs.create(
            &req,
            dir.ino,
            OsStr::from_bytes(name),
            mode & 0o7777,
            flags & !libc::O_TRUNC,
        )?;
        // The handle keeps the inode; the create's lookup is not needed.
        fs.forget(a.ino, 1);
        let loc = Loc {
            mount: dir.mount,
            ino: a.ino,
        };
        self.vfs.cache.put_name(dir, name, Some(a.ino));
        self.vfs.cache.forget_attr(dir);
        self.vfs.cache.put_attr(loc, a.clone());
        Ok((loc, a, Some(fh)))
    }

    /// The open file of `loc` for `flags`: with the handle a create gave,
    /// or one opened now after the checks of an ordinary open.
    fn open_loc(
        &self,
        loc: Loc,
        a: &Attr,
        flags: i32,
        created: Option<Fh>,
    ) -> Result<Arc<OpenFile>> {
        let mounted = self.vfs.mounted(loc.mount)?;
        if let Some(fh) = created {
            return Ok(Arc::new(OpenFile {
                mount: mounted,
                loc,
                fh,
                dir: false,
                flags,
                pos: Mutex::new(0),
            }));
        }
        let acc = flags & libc::O_ACCMODE;
        let dir = a.kind == FileType::Directory;
        if flags & libc::O_DIRECTORY != 0 && !dir {
            return Err(FsError::NotDir);
        }
        if dir && (acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0) {
            return Err(FsError::IsDir);
        }
        let mut want = 0;
        if acc == libc::O_RDONLY || acc == libc::O_RDWR {
            want |= libc::R_OK;
        }
        if acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            want |= libc::W_OK;
        }
        self.may(loc, a, want)?;
        let fh = if dir {
            mounted.fs.opendir(loc.ino, flags)?
        } else {
            mounted
                .fs
                .open(loc.ino, flags & !(libc::O_CREAT | libc::O_EXCL))?
        };
        if flags & libc::O_TRUNC != 0 {
            self.vfs.cache.forget_attr(loc);
        }
        Ok(Arc::new(OpenFile {
            mount: mounted,
            loc,
            fh,
            dir,
            flags,
            pos: Mutex::new(0),
        }))
    }

    /// `close(2)`.
    pub fn close(&self, fd: Fd) -> Result<()> {
        let file = self.fds.lock().remove(fd)?;
        drop(file);
        Ok(())
    }

    /// `dup(2)`: the lowest free descriptor for the same open file.
    pub fn dup(&self, fd: Fd) -> Result<Fd> {
        let mut fds = self.fds.lock();
        let f = fds.get(fd)?;
        fds.install(f, false, 0)
    }

    /// `dup3(2)`: `new` names the open file of `old` (closing what `new`
    /// named); `O_CLOEXEC` is the only flag; `old == new` is EINVAL.
    pub fn dup3(&self, old: Fd, new: Fd, flags: i32) -> Result<Fd> {
        if old == new || flags & !libc::O_CLOEXEC != 0 {
            return Err(FsError::InvalidArgument("dup3"));
        }
        let mut fds = self.fds.lock();
        let f = fds.get(old)?;
        let min = usize::try_from(new).map_err(|_| FsError::BadHandle)?;
        let closed = fds.remove(new).ok();
        let got = fds.install(f, flags & libc::O_CLOEXEC != 0, min)?;
        drop(fds);
        drop(closed);
        Ok(got)
    }

    /// `fcntl(F_GETFD)`: whether `fd` is close-on-exec.
    pub fn cloexec(&self, fd: Fd) -> Result<bool> {
        self.fds.lock().cloexec(fd)
    }

    /// `fcntl(F_SETFD, FD_CLOEXEC or 0)`.
    pub fn set_cloexec(&self, fd: Fd, on: bool) -> Result<()> {
        self.fds.lock().set_cloexec(fd, on)
    }

    /// `setrlimit(RLIMIT_NOFILE)`: how many descriptors may be open.
    pub fn set_fd_limit(&self, limit: usize) {
        self.fds.lock().set_limit(limit);
    }

    fn file(&self, fd: Fd) -> Result<Arc<OpenFile>> {
        self.fds.lock().get(fd)
    }

    /// `read(2)` of up to `len` bytes at the file's offset.
    pub fn read(&self, fd: Fd, len: usize) -> Result<Vec<u8>> {
        let f = self.file(fd)?;
        let mut pos = f.pos.lock();
        let out = self.read_at(&f, *pos, len)?;
        *pos += out.len() as u64;
        Ok(out)
    }

    /// `pread(2)`: at `offset`, the file's offset unchanged.
    pub fn pread(&self, fd: Fd, len: usize, offset: u64) -> Result<Vec<u8>> {
        let f = self.file(fd)?;
        self.read_at(&f, offset, len)
    }

    fn read_at(&self, f: &OpenFile, offset: u64, len: usize) -> Result<Vec<u8>> {
        if f.dir {
            return Err(FsError::IsDir);
        }
        if !f.readable() {
            return Err(FsError::BadHandle);
        }
        let len = u32::try_from(len.min(i32::MAX as usize & !4095)).unwrap_or(u32::MAX);
        let out = f.mount.fs.read(f.loc.ino, f.fh, offset, len)?;
        // A read may move atime.
        self.vfs.cache.forget_attr(f.loc);
        Ok(out)
    }

    /// `write(2)` at the file's offset (at the end with `O_APPEND`).
    pub fn write(&self, fd: Fd, data: &[u8]) -> Result<usize> {
        let f = self.file(fd)?;
        let mut pos = f.pos.lock();
        let at = if f.flags & libc::O_APPEND != 0 {
            f.mount.fs.getattr(f.loc.ino)?.size
        } else {
            *pos
        };
        let n = self.write_at(&f, at, data)?;
        *pos = at + n as u64;
        Ok(n)
    }

    /// `pwrite(2)`: at `offset` (the end with `O_APPEND`, as on Linux).
    pub fn pwrite(&self, fd: Fd, data: &[u8], offset: u64) -> Result<usize> {
        let f = self.file(fd)?;
        self.write_at(&f, offset, data)
    }

    fn write_at(&self, f: &OpenFile, offset: u64, data: &[u8]) -> Result<usize> {
        if f.dir {
            return Err(FsError::IsDir);
        }
        if !f.writable() {
            return Err(FsError::BadHandle);
        }
        let mut done = 0;
        // Bounded: each round writes at least one byte or returns.
        while done < data.len() {
            let piece = &data[done..data.len().min(done + (1 << 30))];
            let n = f
                .mount
                .fs
                .write(f.loc.ino, f.fh, offset + done as u64, piece)? as usize;
            if n == 0 {
                break;
            }
            done += n;
            if n < piece.len() {
                break;
            }
        }
        self.vfs.cache.forget_attr(f.loc);
        Ok(done)
    }

    /// `lseek(2)`: `whence` one of SEEK_SET, SEEK_CUR, SEEK_END,
    /// SEEK_DATA, SEEK_HOLE. A directory seeks to cookies (SEEK_SET and
    /// SEEK_CUR only).
    pub fn lseek(&self, fd: Fd, offset: i64, whence: i32) -> Result<u64> {
        let f = self.file(fd)?;
        let mut pos = f.pos.lock();
        let bad = FsError::InvalidArgument("lseek");
        let new = match whence {
            libc::SEEK_SET => u64::try_from(offset).map_err(|_| bad)?,
            libc::SEEK_CUR => pos.checked_add_signed(offset).ok_or(bad)?,
            _ if f.dir => return Err(bad),
            w => {
                let w = Whence::from_raw(w).ok_or(bad)?;
                f.mount.fs.lseek(f.loc.ino, f.fh, offset, w)?
            }
        };
        if new > i64::MAX as u64 {
            return Err(FsError::InvalidArgument("lseek"));
        }
        *pos = new;
        Ok(new)
    }

    /// `ftruncate(2)`: EINVAL unless open for writing.
    pub fn ftruncate(&self, fd: Fd, len: u64) -> Result<()> {
        let f = self.file(fd)?;
        if f.dir || !f.writable() {
            return Err(FsError::InvalidArgument("not open for writing"));
        }
        let set = SetAttr {
            size: Some(len),
            ..Default::default()
        };
        let r = f
            .mount
            .fs
            .setattr(&self.creds.request(), f.loc.ino, &set, Some(f.fh));
        self.vfs.cache.forget_attr(f.loc);
        r.map(|_| ())
    }

    /// `fsync(2)`.
    pub fn fsync(&self, fd: Fd) -> Result<()> {
        self.sync_fd(fd, false)
    }

    /// `fdatasync(2)`.
    pub fn fdatasync(&self, fd: Fd) -> Result<()> {
        self.sync_fd(fd, true)
    }

    fn sync_fd(&self, fd: Fd, datasync: bool) -> Result<()> {
        let f = self.file(fd)?;
        if f.dir {
            f.mount.fs.fsyncdir(f.loc.ino, f.fh, datasync)
        } else {
            f.mount.fs.fsync(f.loc.ino, f.fh, datasync)
        }
    }

    /// `getdents64(2)`: as many `linux_dirent64` records as fit in
    /// `count` bytes (EINVAL if not even one does); empty at the end.
    pub fn getdents64(&self, fd: Fd, count: usize) -> Result<Vec<u8>> {
        let f = self.file(fd)?;
        if !f.dir {
            return Err(FsError::NotDir);
        }
        let mut pos = f.pos.lock();
        let want = (count / reclen(1)).clamp(1, 4096);
        let entries = f.mount.fs.readdir(f.loc.ino, f.fh, *pos, want)?;
        let mut buf = Vec::with_capacity(count.min(1 << 20));
        for e in &entries {
            if buf.len() + reclen(e.name.len()) > count {
                break;
            }
            let mut e = e.clone();
            e.ino = self.shown_ino(f.loc, &e.name, e.ino);
            push_record(&mut buf, &e);
            *pos = e.offset;
        }
        if buf.is_empty() && !entries.is_empty() {
            return Err(FsError::InvalidArgument("buffer too small"));
        }
        self.vfs.cache.forget_attr(f.loc);
        Ok(buf)
    }

    /// The inode number a directory entry shows: the root of a mount on
    /// it for a mount point (as `stat` would see), else its own.
    fn shown_ino(&self, dir: Loc, name: &[u8], ino: u64) -> u64 {
        if name == b"." || name == b".." {
            return ino;
        }
        let at = Loc {
            mount: dir.mount,
            ino,
        };
        self.vfs.mounts.read().cross_down(at).ino
    }

    /// `chdir(2)`: search permission on the new directory.
    pub fn chdir(&self, path: &[u8]) -> Result<()> {
        let loc = self.resolve(None, path, true)?;
        self.search(loc)?;
        *self.cwd.lock() = loc;
        Ok(())
    }

    /// `fchdir(2)`.
    pub fn fchdir(&self, fd: Fd) -> Result<()> {
        let f = self.file(fd)?;
        self.search(f.loc)?;
        *self.cwd.lock() = f.loc;
        Ok(())
    }
}
