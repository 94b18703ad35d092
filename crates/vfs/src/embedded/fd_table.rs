//! Descriptors and open files. A descriptor is a small number naming an
//! *open file* (an open file description: the filesystem handle, the
//! access mode, the offset); `dup` and `fork` share one open file, so they
//! share its offset, and the handle is released when its last descriptor
//! closes. `O_CLOEXEC` belongs to the descriptor, not the open file.
//!
//! Invariants: a new descriptor is the lowest free number; at most
//! `limit` descriptors are open (EMFILE past it, as RLIMIT_NOFILE); an
//! open file holds its mount's [`Mounted`] handle, which keeps the mount
//! busy.

use std::sync::Arc;

use parking_lot::Mutex;

use super::mount_table::Mounted;
use super::Loc;
use crate::error::{FsError, Result};
use crate::types::Fh;

/// A descriptor number.
pub type Fd = i32;

/// Descriptors one process may hold by default (the usual RLIMIT_NOFILE).
pub const FDS_MAX: usize = 1024;

/// One open file description.
pub(crate) struct OpenFile {
    pub(crate) mount: Arc<Mounted>,
    pub(crate) loc: Loc,
    pub(crate) fh: Fh,
    pub(crate) dir: bool,
    /// `O_ACCMODE` bits, `O_APPEND`, `O_NONBLOCK`, … as opened.
    pub(crate) flags: i32,
    /// The offset: a byte position, or for a directory the cookie after
    /// the last entry given out.
    pub(crate) pos: Mutex<u64>,
}

impl OpenFile {
    pub(crate) fn readable(&self) -> bool {
        let m = self.flags & libc::O_ACCMODE;
        m == libc::O_RDONLY || m == libc::O_RDWR
    }
    pub(crate) fn writable(&self) -> bool {
        let m = self.flags & libc::O_ACCMODE;
        m == libc::O_WRONLY || m == libc::O_RDWR
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        let fs = &self.mount.fs;
        let r = if self.dir {
            fs.releasedir(self.loc.ino, self.fh)
        } else {
            fs.flush(self.loc.ino, self.fh)
                .and_then(|()| fs.release(self.loc.ino, self.fh))
        };
        // close(2) cannot report this to anyone who could act on it.
        let _ = r;
    }
}

#[derive(Clone)]
struct Slot {
    file: Arc<OpenFile>,
    cloexec: bool,
}

#[derive(Clone)]
pub(crate) struct FdTable {
    slots: Vec<Option<Slot>>,
    open: usize,
    limit: usize,
}

impl FdTable {
    pub(crate) fn new(limit: usize) -> FdTable {
        FdTable {
            slots: Vec::new(),
            open: 0,
            limit,
        }
    }

    /// Install `file` at the lowest free number at or above `min`.
    pub(crate) fn install(&mut self, file: Arc<OpenFile>, cloexec: bool, min: usize) -> Result<Fd> {
        if self.open >= self.limit || min >= self.limit {
            return Err(FsError::TooManyFiles);
        }
        let n = (min..self.slots.len())
            .find(|&i| self.slots[i].is_none())
            .unwrap_or(self.slots.len().max(min));
        if n >= self.limit {
            return Err(FsError::TooManyFiles);
        }
        if n >= self.slots.len() {
            self.slots.resize(n + 1, None);
        }
        self.slots[n] = Some(Slot { file, cloexec });
        self.open += 1;
        Ok(n as Fd)
    }

    pub(crate) fn get(&self, fd: Fd) -> Result<Arc<OpenFile>> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.as_ref())
            .map(|s| s.file.clone())
            .ok_or(FsError::BadHandle)
    }

    /// Take descriptor `fd` out; the open file goes when its last
    /// descriptor does (the caller drops what this returns).
    pub(crate) fn remove(&mut self, fd: Fd) -> Result<Arc<OpenFile>> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .and_then(|s| s.take())
            .ok_or(FsError::BadHandle)?;
        self.open -= 1;
        Ok(slot.file)
    }

    pub(crate) fn set_cloexec(&mut self, fd: Fd, on: bool) -> Result<()> {
        let slot = usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .and_then(|s| s.as_mut())
            .ok_or(FsError::BadHandle)?;
        slot.cloexec = on;
        Ok(())
    }

    pub(crate) fn cloexec(&self, fd: Fd) -> Result<bool> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.slots.get(i))
            .and_then(|s| s.as_ref())
            .map(|s| s.cloexec)
            .ok_or(FsError::BadHandle)
    }

    /// Close every `O_CLOEXEC` descriptor (exec); returns their files.
    pub(crate) fn close_on_exec(&mut self) -> Vec<Arc<OpenFile>> {
        let mut out = Vec::new();
        for s in self.slots.iter_mut() {
            if s.as_ref().is_some_and(|s| s.cloexec) {
                out.push(s.take().expect("checked").file);
                self.open -= 1;
            }
        }
        out
    }

    /// Set the descriptor limit (setrlimit RLIMIT_NOFILE); open ones stay.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }
}
