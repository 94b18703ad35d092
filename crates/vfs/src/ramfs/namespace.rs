//! The namespace: making a node (file, directory, symlink, device) under a
//! name, adding a hard link, removing a name (unlink, rmdir), and listing
//! a directory.
//!
//! Every change here keeps three counts true together, under the one lock:
//! a directory's entries, the link counts (a directory has one link per
//! subdirectory, for their `..`, plus two), and the lookups the client
//! holds. An inode that loses its last name is not freed here unless
//! nothing else holds it ([`State::maybe_free`]): open handles and lookups
//! keep an unlinked inode alive, as POSIX requires.

use std::ffi::OsStr;
use std::time::SystemTime;

use super::dir::{DOTDOT_COOKIE, DOT_COOKIE};
use super::file::FileData;
use super::inode::{Data, Inode};
use super::xattr::Xattrs;
use super::{bytes, RamFs, State};
use crate::acl;
use crate::error::{FsError, Result};
use crate::types::*;
use crate::validate::{check_new_name, check_removable_name};

impl State {
    /// Create an inode named `name` in `parent`, with one lookup.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_node(
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
        let ino = self.new_inode(req, parent, kind, perm, rdev, data)?;
        let now = self.get(ino)?.ctime;
        let p = self.inode(parent);
        p.dir_mut().expect("dir").insert(name, ino);
        p.touch_modified(now);
        if kind == FileType::Directory {
            p.nlink += 1;
        }
        Ok(self.get(ino)?.attr())
    }

    /// O_TMPFILE: a regular file in no directory (link count 0, one
    /// lookup) that `link` may name later.
    pub(super) fn create_unnamed(&mut self, req: &Request, parent: Ino, perm: u32) -> Result<Attr> {
        self.live_dir(parent)?;
        let data = Data::File(FileData::default());
        let ino = self.new_inode(req, parent, FileType::RegularFile, perm, 0, data)?;
        self.inode(ino).nlink = 0;
        self.linkable.insert(ino);
        Ok(self.get(ino)?.attr())
    }

    /// A new inode with one lookup, owned by the caller (the group of a
    /// setgid `parent`, which subdirectories inherit).
    fn new_inode(
        &mut self,
        req: &Request,
        parent: Ino,
        kind: FileType,
        perm: u32,
        rdev: u64,
        data: Data,
    ) -> Result<Ino> {
        if self.inodes.len() as u64 >= self.config.max_inodes {
            return Err(FsError::NoSpace);
        }
        let pinode = self.get(parent)?;
        let xattrs = inherited_xattrs(pinode, kind, perm, req.umask)?;
        let mut perm = xattrs.0;
        let mut gid = req.gid;
        if pinode.perm & libc::S_ISGID as u16 != 0 {
            gid = pinode.gid;
            if kind == FileType::Directory {
                perm |= libc::S_ISGID as u16;
            }
        }
        self.check_space(xattrs.1.bytes())?;
        let now = SystemTime::now();
        let ino = self.next_ino;
        self.next_ino += 1;
        let generation = self.next_generation;
        self.next_generation += 1;
        let inode = Inode {
            ino,
            kind,
            perm,
            uid: req.uid,
            gid,
            rdev,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            generation,
            lookups: 1,
            opens: 0,
            xattrs: xattrs.1,
            data,
        };
        self.used_bytes += inode.xattrs.bytes();
        self.inodes.insert(ino, inode);
        Ok(ino)
    }

    /// Entries of directory `ino` after cookie `offset` and before the
    /// stream's end, with attributes. Offset 0 (a rewind) moves the end to
    /// what the directory holds now.
    pub(super) fn list(
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
        let mut end = h.dir_end;
        if offset == 0 {
            end = self.dir(ino)?.next_cookie();
            if let Some(h) = self.handles.get_mut(&fh) {
                h.dir_end = end;
            }
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
            if out.len() >= max || cookie >= end {
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

/// The permission bits and ACL xattrs of a new inode of `kind` asked for
/// with `perm` under `parent`: the umask, or the parent's default ACL.
fn inherited_xattrs(
    parent: &Inode,
    kind: FileType,
    perm: u32,
    umask: u32,
) -> Result<(u16, Xattrs)> {
    let default = match parent.xattrs.get(acl::DEFAULT_XATTR) {
        Ok(v) => acl::decode_stored(v)?,
        Err(_) => None,
    };
    let is_dir = kind == FileType::Directory;
    let got = acl::inherit(
        default.as_ref(),
        is_dir,
        kind == FileType::Symlink,
        perm & 0o7777,
        umask,
    );
    let mut xattrs = Xattrs::default();
    for (name, value) in [
        (acl::ACCESS_XATTR, got.access),
        (acl::DEFAULT_XATTR, got.default),
    ] {
        if let Some(v) = value {
            xattrs.set(name, &v, 0)?;
        }
    }
    Ok((got.perm as u16, xattrs))
}

fn dot(ino: Ino, cookie: u64, name: &[u8]) -> DirEntry {
    DirEntry {
        ino,
        offset: cookie,
        kind: FileType::Directory,
        name: name.to_vec(),
    }
}

impl RamFs {
    /// mknod(2): a regular file, device, FIFO or socket (not a directory).
    pub(crate) fn make_node(
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

    pub(crate) fn make_symlink(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
    ) -> Result<Attr> {
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

    /// create(2) with O_CREAT: open the file if the name exists (unless
    /// O_EXCL), else make it and open it.
    pub(crate) fn create_file(
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

    /// O_TMPFILE: an unnamed file in `parent`, open with `flags`.
    pub(crate) fn create_tmpfile(
        &self,
        req: &Request,
        parent: Ino,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Fh)> {
        let mut st = self.state.lock();
        let attr = st.create_unnamed(req, parent, mode)?;
        let fh = st.open(attr.ino, flags & (libc::O_ACCMODE | libc::O_APPEND))?;
        Ok((attr, fh))
    }

    pub(crate) fn link_entry(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        let newname = bytes(newname);
        check_new_name(newname)?;
        let mut st = self.state.lock();
        let inode = st.get(ino)?;
        if inode.kind == FileType::Directory {
            return Err(FsError::NotPermitted);
        }
        // Only an O_TMPFILE file may get its first name.
        if inode.nlink == 0 && !st.linkable.contains(&ino) {
            return Err(FsError::NotFound);
        }
        if st.live_dir(newparent)?.get(newname).is_some() {
            return Err(FsError::Exists);
        }
        st.linkable.remove(&ino);
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

    pub(crate) fn unlink_entry(&self, parent: Ino, name: &OsStr) -> Result<()> {
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

    pub(crate) fn rmdir_entry(&self, parent: Ino, name: &OsStr) -> Result<()> {
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
}
