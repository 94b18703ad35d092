//! `ramfs`: the in-memory [`FileSystem`], and the oracle of differential tests.
//!
//! Layout: one inode table (`HashMap<Ino, Inode>`) and one handle table
//! behind a single `parking_lot::Mutex`, so every operation is atomic with
//! respect to the others (finer locking can come later without changing
//! the trait). Concerns are split by file: [`inode`] (attributes,
//! reference counts), [`dir`] (entries and readdir cookies), [`file`]
//! (sparse chunked data, [`CHUNK`]-byte granularity), [`xattr`].
//!
//! Limits: names 255 bytes, symlink targets 4095 bytes, files
//! [`MAX_FILE_SIZE`] (EFBIG past it), and a capacity in bytes (file chunks
//! plus xattr names and values) and in inodes from [`RamFsConfig`]
//! (ENOSPC past them). Inode numbers are never reused.
//!
//! Not done (yet): clearing setuid/setgid on write or chown (the kernel
//! does it with FUSE `handle_killpriv` off), POSIX ACLs (`system.posix_acl_*`
//! are stored as opaque values), supplementary groups in `access`.

mod dir;
mod file;
mod inode;
mod xattr;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::SystemTime;

use parking_lot::Mutex;

pub use crate::validate::MAX_FILE_SIZE;
pub use file::CHUNK;

use self::dir::{Dir, DOTDOT_COOKIE, DOT_COOKIE};
use self::file::FileData;
use self::inode::{Data, Inode};
use self::xattr::Xattrs;
use crate::error::{FsError, Result};
use crate::filesystem::FileSystem;
use crate::types::*;
use crate::validate::{
    check_access, check_name, check_new_name, check_range, check_removable_name, check_rename,
    check_xattr_name, xattr_reply,
};

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

    fn handle(&self, ino: Ino, fh: Fh) -> Result<Handle> {
        match self.handles.get(&fh) {
            Some(h) if h.ino == ino => Ok(*h),
            _ => Err(FsError::BadHandle),
        }
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
            let mut freed = inode.xattrs.bytes();
            if let Data::File(f) = &inode.data {
                freed += f.chunk_count() * CHUNK;
            }
            self.used_bytes -= freed;
        }
    }

    /// Is `ancestor` equal to `ino` or one of its ancestors?
    fn is_ancestor(&self, ancestor: Ino, mut ino: Ino) -> bool {
        // Bounded by the number of inodes: a walk cannot loop forever.
        for _ in 0..=self.inodes.len() {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT_INO {
                return false;
            }
            match self.inodes.get(&ino).and_then(Inode::dir) {
                Some(d) => ino = d.parent,
                None => return false,
            }
        }
        false
    }

    /// Create an inode named `name` in `parent`, with one lookup.
    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        req: &Request,
        parent: Ino,
        name: &[u8],
        kind: FileType,
        perm: u32,
        rdev: u64,
        data: Data,
    ) -> Result<Attr> {
        check_new_name(name)?;
        let dir = self.live_dir(parent)?;
        if dir.get(name).is_some() {
            return Err(FsError::Exists);
        }
        if self.inodes.len() as u64 >= self.config.max_inodes {
            return Err(FsError::NoSpace);
        }
        let pinode = self.get(parent)?;
        let mut perm = (perm & 0o7777) as u16;
        let mut gid = req.gid;
        if pinode.perm & libc::S_ISGID as u16 != 0 {
            gid = pinode.gid;
            if kind == FileType::Directory {
                perm |= libc::S_ISGID as u16;
            }
        }
        let now = SystemTime::now();
        let ino = self.next_ino;
        self.next_ino += 1;
        let generation = self.next_generation;
        self.next_generation += 1;
        let is_dir = kind == FileType::Directory;
        let inode = Inode {
            ino,
            kind,
            perm,
            uid: req.uid,
            gid,
            rdev,
            nlink: if is_dir { 2 } else { 1 },
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            generation,
            lookups: 1,
            opens: 0,
            xattrs: Xattrs::default(),
            data,
        };
        let attr = inode.attr();
        self.inodes.insert(ino, inode);
        let p = self.inode(parent);
        p.dir_mut().expect("dir").insert(name, ino);
        p.touch_modified(now);
        if is_dir {
            p.nlink += 1;
        }
        Ok(attr)
    }

    fn new_handle(&mut self, h: Handle) -> Fh {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        self.inode(h.ino).opens += 1;
        fh
    }

    fn open(&mut self, ino: Ino, flags: i32) -> Result<Fh> {
        let inode = self.get(ino)?;
        let acc = flags & libc::O_ACCMODE;
        let read = acc == libc::O_RDONLY || acc == libc::O_RDWR;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        match inode.kind {
            FileType::Directory if write => return Err(FsError::IsDir),
            FileType::Symlink => return Err(FsError::Loop),
            _ => {}
        }
        if write && flags & libc::O_TRUNC != 0 && inode.kind == FileType::RegularFile {
            self.with_file(ino, |f| f.truncate(0))?;
            self.inode(ino).touch_modified(SystemTime::now());
        }
        Ok(self.new_handle(Handle {
            ino,
            dir: false,
            read,
            write,
            append: flags & libc::O_APPEND != 0,
        }))
    }

    fn regular(&self, ino: Ino) -> Result<&Inode> {
        let inode = self.get(ino)?;
        match inode.kind {
            FileType::RegularFile => Ok(inode),
            FileType::Directory => Err(FsError::IsDir),
            _ => Err(FsError::InvalidArgument("not a regular file")),
        }
    }

    fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<()> {
        let end = check_range(offset, data.len() as u64)?;
        let needed = self
            .regular(ino)?
            .file()
            .expect("file")
            .chunks_needed(offset, end);
        self.check_space(needed * CHUNK)?;
        self.with_file(ino, |f| f.write(offset, data))?;
        Ok(())
    }

    /// Entries of directory `ino` after cookie `offset`, with attributes.
    fn list(
        &mut self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        max: usize,
        plus: bool,
    ) -> Result<Vec<(DirEntry, Attr)>> {
        let h = self.handle(ino, fh)?;
        if !h.dir {
            return Err(FsError::BadHandle);
        }
        let dir = self.dir(ino)?;
        let mut out: Vec<(DirEntry, Ino)> = Vec::new();
        if offset < DOT_COOKIE {
            out.push((dot(ino, DOT_COOKIE, b"."), ino));
        }
        if offset < DOTDOT_COOKIE {
            out.push((dot(dir.parent, DOTDOT_COOKIE, b".."), dir.parent));
        }
        for (cookie, name, child) in dir.after(offset) {
            if out.len() >= max {
                break;
            }
            let kind = self.get(child)?.kind;
            let entry = DirEntry {
                ino: child,
                offset: cookie,
                kind,
                name: name.to_vec(),
            };
            out.push((entry, child));
        }
        out.truncate(max);
        let mut res = Vec::with_capacity(out.len());
        for (entry, child) in out {
            let counted = plus && entry.offset > DOTDOT_COOKIE;
            let inode = self.get_mut(child)?;
            if counted {
                inode.lookups += 1;
            }
            res.push((entry, inode.attr()));
        }
        Ok(res)
    }
}

fn dot(ino: Ino, cookie: u64, name: &[u8]) -> DirEntry {
    DirEntry {
        ino,
        offset: cookie,
        kind: FileType::Directory,
        name: name.to_vec(),
    }
}

fn set_time(t: TimeOrNow, now: SystemTime) -> SystemTime {
    match t {
        TimeOrNow::Time(t) => t,
        TimeOrNow::Now => now,
    }
}

impl FileSystem for RamFs {
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let name = bytes(name);
        check_name(name)?;
        let mut st = self.state.lock();
        let dir = st.dir(parent)?;
        let ino = match name {
            b"." => parent,
            b".." => dir.parent,
            _ => dir.get(name).ok_or(FsError::NotFound)?,
        };
        let inode = st.get_mut(ino)?;
        inode.lookups += 1;
        Ok(inode.attr())
    }

    fn forget(&self, ino: Ino, nlookup: u64) {
        let mut st = self.state.lock();
        if let Some(inode) = st.inodes.get_mut(&ino) {
            inode.lookups = inode.lookups.saturating_sub(nlookup);
            st.maybe_free(ino);
        }
    }

    fn getattr(&self, ino: Ino) -> Result<Attr> {
        Ok(self.state.lock().get(ino)?.attr())
    }

    fn setattr(&self, _req: &Request, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        let mut st = self.state.lock();
        if let Some(fh) = fh {
            st.handle(ino, fh)?;
        }
        let now = SystemTime::now();
        if let Some(size) = set.size {
            st.regular(ino)?;
            check_range(size, 0)?;
            st.with_file(ino, |f| f.truncate(size))?;
            st.inode(ino).touch_modified(now);
        }
        let inode = st.get_mut(ino)?;
        let mut changed = set.size.is_some();
        if let Some(mode) = set.mode {
            inode.perm = (mode & 0o7777) as u16;
            changed = true;
        }
        if let Some(uid) = set.uid {
            inode.uid = uid;
            changed = true;
        }
        if let Some(gid) = set.gid {
            inode.gid = gid;
            changed = true;
        }
        if let Some(t) = set.atime {
            inode.atime = set_time(t, now);
            changed = true;
        }
        if let Some(t) = set.mtime {
            inode.mtime = set_time(t, now);
            changed = true;
        }
        if let Some(t) = set.crtime {
            inode.crtime = t;
            changed = true;
        }
        if let Some(t) = set.ctime {
            inode.ctime = t;
        } else if changed {
            inode.ctime = now;
        }
        Ok(inode.attr())
    }

    fn mknod(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u64,
    ) -> Result<Attr> {
        let (kind, data, rdev) = match mode & libc::S_IFMT {
            0 | libc::S_IFREG => (FileType::RegularFile, Data::File(FileData::default()), 0),
            libc::S_IFDIR => return Err(FsError::NotPermitted),
            t => match FileType::from_mode(t) {
                Some(k @ (FileType::CharDevice | FileType::BlockDevice)) => {
                    (k, Data::Special, rdev)
                }
                Some(k @ (FileType::NamedPipe | FileType::Socket)) => (k, Data::Special, 0),
                _ => return Err(FsError::InvalidArgument("bad file type for mknod")),
            },
        };
        self.state
            .lock()
            .create_node(req, parent, bytes(name), kind, mode, rdev, data)
    }

    fn mkdir(&self, req: &Request, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr> {
        let data = Data::Dir(Dir::new(parent));
        self.state
            .lock()
            .create_node(req, parent, bytes(name), FileType::Directory, mode, 0, data)
    }

    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let name = bytes(name);
        check_removable_name(name)?;
        let mut st = self.state.lock();
        let ino = st.dir(parent)?.get(name).ok_or(FsError::NotFound)?;
        if st.get(ino)?.kind == FileType::Directory {
            return Err(FsError::IsDir);
        }
        let now = SystemTime::now();
        let p = st.inode(parent);
        p.dir_mut().expect("dir").remove(name);
        p.touch_modified(now);
        let inode = st.inode(ino);
        inode.nlink -= 1;
        inode.ctime = now;
        st.maybe_free(ino);
        Ok(())
    }

    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        let name = bytes(name);
        check_removable_name(name)?;
        let mut st = self.state.lock();
        let ino = st.dir(parent)?.get(name).ok_or(FsError::NotFound)?;
        if !st.dir(ino)?.is_empty() {
            return Err(FsError::NotEmpty);
        }
        let now = SystemTime::now();
        let p = st.inode(parent);
        p.dir_mut().expect("dir").remove(name);
        p.touch_modified(now);
        p.nlink -= 1;
        let inode = st.inode(ino);
        inode.nlink = 0;
        inode.ctime = now;
        st.maybe_free(ino);
        Ok(())
    }

    fn symlink(&self, req: &Request, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr> {
        let target = bytes(target);
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong);
        }
        let data = Data::Symlink(target.to_vec());
        self.state
            .lock()
            .create_node(req, parent, bytes(name), FileType::Symlink, 0o777, 0, data)
    }

    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        match &self.state.lock().get(ino)?.data {
            Data::Symlink(t) => Ok(t.clone()),
            _ => Err(FsError::InvalidArgument("not a symlink")),
        }
    }

    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        let (name, newname) = (bytes(name), bytes(newname));
        check_rename(name, newname, flags)?;
        let mut st = self.state.lock();
        let src = st.dir(parent)?.get(name).ok_or(FsError::NotFound)?;
        let dst = st.live_dir(newparent)?.get(newname);
        let src_is_dir = st.get(src)?.kind == FileType::Directory;
        let now = SystemTime::now();

        if flags == RENAME_EXCHANGE {
            let dst = dst.ok_or(FsError::NotFound)?;
            if src == dst {
                return Ok(());
            }
            let dst_is_dir = st.get(dst)?.kind == FileType::Directory;
            if parent != newparent
                && ((src_is_dir && st.is_ancestor(src, newparent))
                    || (dst_is_dir && st.is_ancestor(dst, parent)))
            {
                return Err(FsError::InvalidArgument(
                    "directory moved into its own subtree",
                ));
            }
            st.inode(parent).dir_mut().expect("dir").replace(name, dst);
            st.inode(newparent)
                .dir_mut()
                .expect("dir")
                .replace(newname, src);
            if parent != newparent {
                if let Some(d) = st.inode(src).dir_mut() {
                    d.parent = newparent;
                }
                if let Some(d) = st.inode(dst).dir_mut() {
                    d.parent = parent;
                }
                match (src_is_dir, dst_is_dir) {
                    (true, false) => {
                        st.inode(parent).nlink -= 1;
                        st.inode(newparent).nlink += 1;
                    }
                    (false, true) => {
                        st.inode(newparent).nlink -= 1;
                        st.inode(parent).nlink += 1;
                    }
                    _ => {}
                }
            }
            for ino in [src, dst] {
                st.inode(ino).ctime = now;
            }
            for ino in [parent, newparent] {
                st.inode(ino).touch_modified(now);
            }
            return Ok(());
        }

        if src_is_dir && st.is_ancestor(src, newparent) {
            return Err(FsError::InvalidArgument(
                "directory moved into its own subtree",
            ));
        }
        if let Some(dst) = dst {
            if flags == RENAME_NOREPLACE {
                return Err(FsError::Exists);
            }
            if dst == src {
                return Ok(());
            }
            let dst_inode = st.get(dst)?;
            match (src_is_dir, dst_inode.kind == FileType::Directory) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if !dst_inode.dir().expect("dir").is_empty() => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
        }
        st.inode(parent).dir_mut().expect("dir").remove(name);
        if let Some(dst) = dst {
            st.inode(newparent).dir_mut().expect("dir").remove(newname);
            let d = st.inode(dst);
            d.ctime = now;
            if d.kind == FileType::Directory {
                d.nlink = 0;
                st.inode(newparent).nlink -= 1;
            } else {
                d.nlink -= 1;
            }
        }
        st.inode(newparent)
            .dir_mut()
            .expect("dir")
            .insert(newname, src);
        if src_is_dir && parent != newparent {
            st.inode(src).dir_mut().expect("dir").parent = newparent;
            st.inode(parent).nlink -= 1;
            st.inode(newparent).nlink += 1;
        }
        st.inode(src).ctime = now;
        st.inode(parent).touch_modified(now);
        st.inode(newparent).touch_modified(now);
        if let Some(dst) = dst {
            st.maybe_free(dst);
        }
        Ok(())
    }

    fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        let newname = bytes(newname);
        check_new_name(newname)?;
        let mut st = self.state.lock();
        let inode = st.get(ino)?;
        if inode.kind == FileType::Directory {
            return Err(FsError::NotPermitted);
        }
        if inode.nlink == 0 {
            return Err(FsError::NotFound);
        }
        if st.live_dir(newparent)?.get(newname).is_some() {
            return Err(FsError::Exists);
        }
        let now = SystemTime::now();
        let p = st.inode(newparent);
        p.dir_mut().expect("dir").insert(newname, ino);
        p.touch_modified(now);
        let inode = st.inode(ino);
        inode.nlink += 1;
        inode.ctime = now;
        inode.lookups += 1;
        Ok(inode.attr())
    }

    fn open(&self, ino: Ino, flags: i32) -> Result<Fh> {
        self.state.lock().open(ino, flags)
    }

    fn create(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Fh)> {
        let name = bytes(name);
        check_new_name(name)?;
        let mut st = self.state.lock();
        if let Some(ino) = st.live_dir(parent)?.get(name) {
            if flags & libc::O_EXCL != 0 {
                return Err(FsError::Exists);
            }
            if st.get(ino)?.kind == FileType::Directory {
                return Err(FsError::IsDir);
            }
            let fh = st.open(ino, flags)?;
            let inode = st.inode(ino);
            inode.lookups += 1;
            return Ok((inode.attr(), fh));
        }
        let data = Data::File(FileData::default());
        let attr = st.create_node(req, parent, name, FileType::RegularFile, mode, 0, data)?;
        let fh = st.open(attr.ino, flags & !libc::O_TRUNC)?;
        Ok((attr, fh))
    }

    fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        let mut st = self.state.lock();
        let h = st.handle(ino, fh)?;
        st.regular(ino)?;
        if !h.read {
            return Err(FsError::BadHandle);
        }
        let inode = st.inode(ino);
        let out = inode.file().expect("file").read(offset, size);
        inode.touch_read(SystemTime::now());
        Ok(out)
    }

    fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        let len =
            u32::try_from(data.len()).map_err(|_| FsError::InvalidArgument("write over 4 GiB"))?;
        let mut st = self.state.lock();
        let h = st.handle(ino, fh)?;
        let size = st.regular(ino)?.file().expect("file").size;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let offset = if h.append { size } else { offset };
        st.write(ino, offset, data)?;
        st.inode(ino).touch_modified(SystemTime::now());
        Ok(len)
    }

    fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.state.lock().handle(ino, fh).map(|_| ())
    }

    fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        let mut st = self.state.lock();
        st.handle(ino, fh)?;
        st.handles.remove(&fh);
        st.inode(ino).opens -= 1;
        st.maybe_free(ino);
        Ok(())
    }

    fn fsync(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        self.state.lock().handle(ino, fh).map(|_| ())
    }

    fn opendir(&self, ino: Ino, _flags: i32) -> Result<Fh> {
        let mut st = self.state.lock();
        st.dir(ino)?;
        Ok(st.new_handle(Handle {
            ino,
            dir: true,
            read: true,
            write: false,
            append: false,
        }))
    }

    fn readdir(&self, ino: Ino, fh: Fh, offset: u64, max_entries: usize) -> Result<Vec<DirEntry>> {
        let mut st = self.state.lock();
        Ok(st
            .list(ino, fh, offset, max_entries, false)?
            .into_iter()
            .map(|(e, _)| e)
            .collect())
    }

    fn readdirplus(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        max_entries: usize,
    ) -> Result<Vec<(DirEntry, Attr)>> {
        self.state.lock().list(ino, fh, offset, max_entries, true)
    }

    fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.release(ino, fh)
    }

    fn fsyncdir(&self, ino: Ino, fh: Fh, _datasync: bool) -> Result<()> {
        self.state.lock().handle(ino, fh).map(|_| ())
    }

    fn statfs(&self, _ino: Ino) -> Result<StatFs> {
        let st = self.state.lock();
        let blocks = st.config.max_bytes / CHUNK;
        let used = st.used_bytes.div_ceil(CHUNK);
        let files = st.config.max_inodes;
        Ok(StatFs {
            blocks,
            bfree: blocks.saturating_sub(used),
            bavail: blocks.saturating_sub(used),
            files,
            ffree: files.saturating_sub(st.inodes.len() as u64),
            bsize: CHUNK as u32,
            namelen: NAME_MAX as u32,
            frsize: CHUNK as u32,
        })
    }

    fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        let name = bytes(name);
        let user = check_xattr_name(name)?;
        let mut st = self.state.lock();
        let inode = st.get(ino)?;
        if user && !matches!(inode.kind, FileType::RegularFile | FileType::Directory) {
            return Err(FsError::NotPermitted);
        }
        let old = inode.xattrs.get(name).map(|v| v.len() as u64).ok();
        let grow = (value.len() as u64 + name.len() as u64)
            .saturating_sub(old.map_or(0, |v| v + name.len() as u64));
        st.check_space(grow)?;
        let inode = st.inode(ino);
        let before = inode.xattrs.bytes();
        inode.xattrs.set(name, value, flags)?;
        let after = inode.xattrs.bytes();
        inode.ctime = SystemTime::now();
        st.used_bytes = st.used_bytes + after - before;
        Ok(())
    }

    fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<XattrReply> {
        let name = bytes(name);
        check_xattr_name(name)?;
        let st = self.state.lock();
        xattr_reply(st.get(ino)?.xattrs.get(name)?.to_vec(), size)
    }

    fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply> {
        let st = self.state.lock();
        xattr_reply(st.get(ino)?.xattrs.list(), size)
    }

    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        let name = bytes(name);
        check_xattr_name(name)?;
        let mut st = self.state.lock();
        let inode = st.get_mut(ino)?;
        let before = inode.xattrs.bytes();
        inode.xattrs.remove(name)?;
        let after = inode.xattrs.bytes();
        inode.ctime = SystemTime::now();
        st.used_bytes -= before - after;
        Ok(())
    }

    fn access(&self, req: &Request, ino: Ino, mask: i32) -> Result<()> {
        let st = self.state.lock();
        let inode = st.get(ino)?;
        let is_dir = inode.kind == FileType::Directory;
        check_access(req, inode.uid, inode.gid, inode.perm as u32, is_dir, mask)
    }

    fn fallocate(&self, ino: Ino, fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()> {
        let mut st = self.state.lock();
        let h = st.handle(ino, fh)?;
        st.regular(ino)?;
        if !h.write {
            return Err(FsError::BadHandle);
        }
        if length == 0 {
            return Err(FsError::InvalidArgument("fallocate length 0"));
        }
        let end = check_range(offset, length)?;
        let now = SystemTime::now();
        const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        match mode {
            0 | KEEP => {
                let file = st.get(ino)?.file().expect("file");
                let before = file.size;
                let needed = file.chunks_needed(offset, end);
                st.check_space(needed * CHUNK)?;
                let after = st.with_file(ino, |f| {
                    f.allocate(offset, end, mode == KEEP);
                    f.size
                })?;
                if after != before {
                    st.inode(ino).touch_modified(now);
                }
            }
            PUNCH => {
                st.with_file(ino, |f| f.punch(offset, end))?;
                st.inode(ino).touch_modified(now);
            }
            _ => return Err(FsError::NotSupported),
        }
        Ok(())
    }

    fn lseek(&self, ino: Ino, fh: Fh, offset: i64, whence: Whence) -> Result<u64> {
        let st = self.state.lock();
        st.handle(ino, fh)?;
        let file = st.regular(ino)?.file().expect("file");
        let neg = FsError::InvalidArgument("negative offset");
        match whence {
            Whence::Set => u64::try_from(offset).map_err(|_| neg),
            Whence::End => {
                let pos = (file.size as i128) + offset as i128;
                u64::try_from(pos).map_err(|_| neg)
            }
            Whence::Data | Whence::Hole => {
                let off = u64::try_from(offset).map_err(|_| FsError::NoSuchOffset)?;
                if whence == Whence::Data {
                    file.seek_data(off)
                } else {
                    file.seek_hole(off)
                }
            }
        }
    }

    fn copy_file_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
        flags: u32,
    ) -> Result<u64> {
        if flags != 0 {
            return Err(FsError::InvalidArgument("copy_file_range flags"));
        }
        let mut st = self.state.lock();
        let (hi, ho) = (st.handle(ino_in, fh_in)?, st.handle(ino_out, fh_out)?);
        let size_in = st.regular(ino_in)?.file().expect("file").size;
        st.regular(ino_out)?;
        if !hi.read || !ho.write || ho.append {
            return Err(FsError::BadHandle);
        }
        let n = len.min(size_in.saturating_sub(offset_in));
        check_range(offset_in, len)?;
        check_range(offset_out, n)?;
        if ino_in == ino_out
            && offset_in < offset_out.saturating_add(len)
            && offset_out < offset_in.saturating_add(len)
        {
            return Err(FsError::InvalidArgument(
                "overlapping copy_file_range in one file",
            ));
        }
        if n == 0 {
            return Ok(0);
        }
        // Copy chunk by chunk; all-zero source pieces become holes.
        let mut done = 0u64;
        while done < n {
            let piece = (n - done).min(CHUNK - (offset_out + done) % CHUNK);
            let buf = st
                .inode(ino_in)
                .file()
                .expect("file")
                .read(offset_in + done, piece as u32);
            let at = offset_out + done;
            if buf.iter().all(|&b| b == 0) {
                st.with_file(ino_out, |f| {
                    f.punch(at, at + piece);
                    f.size = f.size.max(at + piece);
                })?;
            } else {
                st.write(ino_out, at, &buf)?;
            }
            done += piece;
        }
        let now = SystemTime::now();
        st.inode(ino_in).touch_read(now);
        st.inode(ino_out).touch_modified(now);
        Ok(n)
    }
}
