//! The embedded VFS: what a kernel does above a filesystem, for a Rust
//! program that links AegisFS with no FUSE and no kernel mount.
//!
//! A [`Vfs`] holds the mount table (any [`FileSystem`] at any directory,
//! for example `ramfs` at `/` and a disk image at `/data`) and the dentry
//! and attribute caches. A [`Process`] is one caller: its credentials,
//! working directory and descriptor table; its methods have the shape of
//! the Linux system calls (`open`, `read`, `getdents64`, `renameat2`, …),
//! take paths as bytes, and return the errno Linux would give as an
//! [`FsError`]. Permission checks are made here, against the caller's
//! uid, gid and groups, with Linux's rules (`creds.rs`).
//!
//! The layout: `mount_table.rs` (mounts and crossings), `path_walk.rs`
//! (names to places), `name_cache.rs` (the caches), `fd_table.rs`
//! (descriptors and open files), `creds.rs` (permissions),
//! `linux_abi.rs` (`struct stat`, `linux_dirent64`), and the calls in
//! `file_calls.rs`, `namespace_calls.rs` and `attr_calls.rs`.
//!
//! Invariants: every call that changes a name or attributes invalidates
//! the caches for them before it returns; a lookup's count on the
//! filesystem below is given back (`forget`) once the walk is past it,
//! open files keep their inode alive through their handle instead.

mod attr_calls;
mod creds;
mod fd_table;
mod file_calls;
mod linux_abi;
mod mount_table;
mod name_cache;
mod namespace_calls;
mod path_walk;

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use creds::{Creds, GROUPS_MAX};
pub use fd_table::{Fd, FDS_MAX};
pub use linux_abi::{dirent64_records, Dirent64};
pub use mount_table::{MountId, Mounted, MOUNTS_MAX};
pub use name_cache::CACHE_ENTRIES;
pub use path_walk::{PATH_MAX, SYMLINKS_MAX};

use crate::error::{FsError, Result};
use crate::filesystem::FileSystem;
use crate::types::{FileType, Ino, ROOT_INO};
use fd_table::FdTable;
use mount_table::MountTable;
use name_cache::NameCache;

/// A place in the VFS: an inode of one mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Loc {
    pub mount: MountId,
    pub ino: Ino,
}

impl Loc {
    pub fn root_of(mount: MountId) -> Loc {
        Loc {
            mount,
            ino: ROOT_INO,
        }
    }
}

/// The mount table and the caches, shared by every [`Process`].
pub struct Vfs {
    mounts: RwLock<MountTable>,
    cache: NameCache,
}

impl Vfs {
    /// A VFS with `root` mounted at `/`.
    pub fn new(root: Arc<dyn FileSystem>) -> Arc<Vfs> {
        Vfs::with_cache(root, CACHE_ENTRIES)
    }

    /// As [`Vfs::new`], with caches of `entries` entries each.
    pub fn with_cache(root: Arc<dyn FileSystem>, entries: usize) -> Arc<Vfs> {
        Arc::new(Vfs {
            mounts: RwLock::new(MountTable::new(root)),
            cache: NameCache::new(entries),
        })
    }

    /// A caller with `creds`, working directory `/` and no descriptors.
    pub fn process(self: &Arc<Self>, creds: Creds) -> Process {
        Process {
            vfs: self.clone(),
            creds,
            cwd: Mutex::new(Loc::root_of(0)),
            fds: Mutex::new(FdTable::new(FDS_MAX)),
        }
    }

    pub(crate) fn mounted(&self, id: MountId) -> Result<Arc<Mounted>> {
        self.mounts.read().get(id).cloned()
    }

    /// `sync(2)`: commit every mounted filesystem.
    pub fn sync(&self) -> Result<()> {
        let all = self.mounts.read().all();
        let mut first = None;
        for m in all {
            if let Err(e) = m.fs.syncfs() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Entries in the dentry and attribute caches (for tests and stats).
    pub fn cached(&self) -> (usize, usize) {
        self.cache.len()
    }
}

/// One caller of the VFS: credentials, working directory, descriptors.
/// Its methods may be called from several threads at once, like the
/// threads of one process.
pub struct Process {
    vfs: Arc<Vfs>,
    creds: Creds,
    cwd: Mutex<Loc>,
    fds: Mutex<FdTable>,
}

impl Process {
    pub fn creds(&self) -> &Creds {
        &self.creds
    }

    pub fn vfs(&self) -> &Arc<Vfs> {
        &self.vfs
    }

    /// `fork(2)`: a child with the same credentials, working directory and
    /// descriptors (sharing their open files and offsets).
    pub fn fork(&self) -> Process {
        Process {
            vfs: self.vfs.clone(),
            creds: self.creds.clone(),
            cwd: Mutex::new(*self.cwd.lock()),
            fds: Mutex::new(self.fds.lock().clone()),
        }
    }

    /// The descriptor table as `execve(2)` leaves it: `O_CLOEXEC`
    /// descriptors closed.
    pub fn exec(&self) {
        let closed = self.fds.lock().close_on_exec();
        drop(closed);
    }

    /// A child as `fork` then `execve` make it (`posix_spawn`).
    pub fn spawn(&self) -> Process {
        let child = self.fork();
        child.exec();
        child
    }

    /// The same process with other credentials (`setuid`, `setgroups`).
    pub fn set_creds(&mut self, creds: Creds) -> Result<()> {
        if creds.groups.len() > GROUPS_MAX {
            return Err(FsError::InvalidArgument("too many groups"));
        }
        self.creds = creds;
        Ok(())
    }

    /// `mount(2)` of `fs` on the directory `path` (root only).
    pub fn mount(&self, path: &[u8], fs: Arc<dyn FileSystem>) -> Result<MountId> {
        if !self.creds.is_root() {
            return Err(FsError::NotPermitted);
        }
        let at = self.resolve(None, path, true)?;
        if self.attr(at)?.kind != FileType::Directory {
            return Err(FsError::NotDir);
        }
        let mut t = self.vfs.mounts.write();
        // The place itself, not what is mounted on it (a mount on a mount
        // root is a mount over that root: EBUSY as a mount on a place).
        let id = t.mount(at, fs)?;
        self.vfs.cache.forget_attr(at);
        Ok(id)
    }

    /// `umount2(2)` of the mount whose root `path` names (root only):
    /// syncs it first; EBUSY while in use unless `force`. Returns the
    /// filesystem, for its owner to close.
    pub fn umount(&self, path: &[u8], force: bool) -> Result<Arc<dyn FileSystem>> {
        if !self.creds.is_root() {
            return Err(FsError::NotPermitted);
        }
        let at = self.resolve(None, path, true)?;
        if at.ino != ROOT_INO || at.mount == 0 {
            return Err(FsError::InvalidArgument("not a mount point"));
        }
        let m = self.vfs.mounted(at.mount)?;
        m.fs.syncfs()?;
        drop(m);
        let gone = self.vfs.mounts.write().unmount(at.mount, force)?;
        self.vfs.cache.forget_mount(at.mount);
        Ok(gone.fs.clone())
    }
}
