//! `ramfs`: the in-memory [`FileSystem`], and the oracle of differential tests.
//!
//! Layout: one inode table (`HashMap<Ino, Inode>`) and one handle table
//! behind a single `parking_lot::Mutex`, so every operation is atomic with
//! respect to the others (finer locking can come later without changing
//! the trait). Concerns are split by file: [`inode`] (attributes,
//! reference counts), [`dir`] (entries and readdir cookies), [`file`]
//! (sparse chunked data, [`CHUNK`]-byte granularity), [`xattr`].
//!
//! The operations are split the same way: [`filesystem`] is the trait call
//! by call, with the longer calls in [`namespace`] (making and removing
//! names, listing), [`rename`], [`data`] (handles and file contents) and
//! [`attrs`] (attributes and xattrs). This file holds the state and the
//! helpers every operation shares: lookups that turn absence into an errno,
//! handles, and the space accounting.
//!
//! Limits: names 255 bytes, symlink targets 4095 bytes, files
//! [`MAX_FILE_SIZE`] (EFBIG past it), and a capacity in bytes (file chunks
//! plus xattr names and values) and in inodes from [`RamFsConfig`]
//! (ENOSPC past them). Inode numbers are never reused.
//!
//! POSIX ACLs are applied as Linux applies them, through [`acl`]: set
//! with the mode bits, inherited from default ACLs in place of the umask,
//! rewritten by chmod, and consulted by `access`. Privilege bits drop on
//! chown and on truncate by a caller other than root; for writes and
//! fallocate the trait carries no caller, so the kernel drops them first
//! (FUSE `handle_killpriv` off), as it does for every FUSE filesystem.
//!
//! Not done (yet): supplementary groups in `access` and ACL group entries.
//!
//! [`acl`]: crate::acl
//!
//! [`FileSystem`]: crate::FileSystem

mod attrs;
mod data;
mod dir;
mod file;
mod filesystem;
mod inode;
mod namespace;
mod rename;
mod xattr;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use parking_lot::Mutex;

pub use crate::validate::MAX_FILE_SIZE;
pub use file::CHUNK;

use self::dir::Dir;
use self::file::FileData;
use self::inode::{Data, Inode};
use self::xattr::Xattrs;
use crate::error::{FsError, Result};
use crate::types::*;

/// Capacity limits of a [`RamFs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamFsConfig {
    /// Bytes of file data (whole chunks) and xattrs the filesystem may hold.
    pub max_bytes: u64,
    /// Inodes the filesystem may hold, the root included.
    pub max_inodes: u64,
}

impl Default for RamFsConfig {
    /// 4 GiB and one million inodes.
    fn default() -> Self {
        RamFsConfig {
            max_bytes: 4 << 30,
            max_inodes: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Handle {
    ino: Ino,
    dir: bool,
    read: bool,
    write: bool,
    append: bool,
    /// Directory streams end before this cookie: the directory's next
    /// cookie when the stream was opened or last rewound. An entry renamed
    /// during the read gets a newer cookie, so without the bound a reader
    /// could meet it again and again, forever (btrfs's fix, kernel commit
    /// 9b378f6ad48c). 0 for files.
    dir_end: u64,
}

#[derive(Debug)]
struct State {
    config: RamFsConfig,
    inodes: HashMap<Ino, Inode>,
    handles: HashMap<Fh, Handle>,
    next_ino: Ino,
    next_fh: Fh,
    next_generation: u64,
    /// Bytes of chunks and xattrs in use.
    used_bytes: u64,
    /// O_TMPFILE files not yet named: the only unnamed inodes `link` takes.
    linkable: HashSet<Ino>,
}

/// The in-memory filesystem. See the [module documentation](self).
#[derive(Debug)]
pub struct RamFs {
    state: Mutex<State>,
}

impl Default for RamFs {
    fn default() -> Self {
        RamFs::new()
    }
}

impl RamFs {
    /// An empty filesystem: a root directory owned by uid 0, mode 0o755.
    pub fn new() -> RamFs {
        RamFs::with_config(RamFsConfig::default())
    }

    /// An empty filesystem with the given limits.
    pub fn with_config(config: RamFsConfig) -> RamFs {
        let now = SystemTime::now();
        let root = Inode {
            ino: ROOT_INO,
            kind: FileType::Directory,
            perm: 0o755,
            uid: 0,
            gid: 0,
            rdev: 0,
            nlink: 2,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            generation: 1,
            lookups: 0,
            opens: 0,
            xattrs: Xattrs::default(),
            data: Data::Dir(Dir::new(ROOT_INO)),
        };
        let mut inodes = HashMap::new();
        inodes.insert(ROOT_INO, root);
        RamFs {
            state: Mutex::new(State {
                config,
                inodes,
                handles: HashMap::new(),
                next_ino: ROOT_INO + 1,
                next_fh: 1,
                next_generation: 2,
                used_bytes: 0,
                linkable: HashSet::new(),
            }),
        }
    }
}

fn bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

impl State {
    fn get(&self, ino: Ino) -> Result<&Inode> {
        self.inodes.get(&ino).ok_or(FsError::NotFound)
    }

    fn get_mut(&mut self, ino: Ino) -> Result<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or(FsError::NotFound)
    }

    fn inode(&mut self, ino: Ino) -> &mut Inode {
        self.inodes.get_mut(&ino).expect("inode checked present")
    }

    fn dir(&self, ino: Ino) -> Result<&Dir> {
        self.get(ino)?.dir().ok_or(FsError::NotDir)
    }

    /// A directory that can take new entries (not removed).
    fn live_dir(&self, ino: Ino) -> Result<&Dir> {
        let inode = self.get(ino)?;
        let dir = inode.dir().ok_or(FsError::NotDir)?;
        if inode.nlink == 0 {
            return Err(FsError::NotFound);
        }
        Ok(dir)
    }

    fn regular(&self, ino: Ino) -> Result<&Inode> {
        let inode = self.get(ino)?;
        match inode.kind {
            FileType::RegularFile => Ok(inode),
            FileType::Directory => Err(FsError::IsDir),
            _ => Err(FsError::InvalidArgument("not a regular file")),
        }
    }

    fn handle(&self, ino: Ino, fh: Fh) -> Result<Handle> {
        match self.handles.get(&fh) {
            Some(h) if h.ino == ino => Ok(*h),
            _ => Err(FsError::BadHandle),
        }
    }

    fn new_handle(&mut self, h: Handle) -> Fh {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        self.inode(h.ino).opens += 1;
        fh
    }

    fn check_space(&self, more: u64) -> Result<()> {
        if self.used_bytes.saturating_add(more) > self.config.max_bytes {
            Err(FsError::NoSpace)
        } else {
            Ok(())
        }
    }

    /// Run `f` on a regular file's data and account the change of chunks.
    fn with_file<T>(&mut self, ino: Ino, f: impl FnOnce(&mut FileData) -> T) -> Result<T> {
        let file = self
            .get_mut(ino)?
            .file_mut()
            .ok_or(FsError::InvalidArgument("not a regular file"))?;
        let before = file.chunk_count();
        let out = f(file);
        let after = file.chunk_count();
        self.used_bytes = self.used_bytes + after * CHUNK - before * CHUNK;
        Ok(out)
    }

    /// Free `ino` if nothing references it any more.
    fn maybe_free(&mut self, ino: Ino) {
        if ino == ROOT_INO {
            return;
        }
        if self.inodes.get(&ino).is_some_and(Inode::is_dead) {
            let inode = self.inodes.remove(&ino).expect("present");
            self.linkable.remove(&ino);
            let mut freed = inode.xattrs.bytes();
            if let Data::File(f) = &inode.data {
                freed += f.chunk_count() * CHUNK;
            }
            self.used_bytes -= freed;
        }
    }
}
