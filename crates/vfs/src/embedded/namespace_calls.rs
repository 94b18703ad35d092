//! The calls that change names: `mkdir`, `mknod`, `symlink`, `link`,
//! `unlink`, `rmdir`, `renameat2`, and `readlink`. Each checks what Linux's
//! `may_create`/`may_delete` check (write and search permission on the
//! directory, the sticky bit, no change across mounts: EXDEV, mount
//! points: EBUSY) before the filesystem sees the call, and forgets the
//! names and attributes it changed.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::fd_table::Fd;
use super::path_walk::Parent;
use super::{Loc, Process};
use crate::error::{FsError, Result};
use crate::types::{Attr, FileType, ROOT_INO, SYMLINK_MAX};

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

impl Process {
    /// The parent of a new name: a writable, searchable directory, and a
    /// name that is not `.` or `..` (EEXIST, as Linux).
    fn new_name(&self, dirfd: Option<Fd>, path: &[u8]) -> Result<(Parent, Attr)> {
        let p = self.resolve_parent(dirfd, path)?;
        if p.name == b"." || p.name == b".." {
            return Err(FsError::Exists);
        }
        let d = self.attr(p.dir)?;
        self.may(p.dir, &d, libc::W_OK | libc::X_OK)?;
        Ok((p, d))
    }

    /// A name just made in `dir`: cache it, forget the directory's
    /// attributes (mtime, nlink).
    fn made(&self, dir: Loc, name: &[u8], a: &Attr) {
        let loc = Loc {
            mount: dir.mount,
            ino: a.ino,
        };
        self.vfs.cache.put_name(dir, name, Some(a.ino));
        self.vfs.cache.put_attr(loc, a.clone());
        self.vfs.cache.forget_attr(dir);
    }

    /// `mkdirat(2)`; a trailing slash is allowed.
    pub fn mkdirat(&self, dirfd: Option<Fd>, path: &[u8], mode: u32) -> Result<()> {
        let (p, _) = self.new_name(dirfd, path)?;
        let fs = self.vfs.mounted(p.dir.mount)?.fs.clone();
        let a = fs.mkdir(&self.creds.request(), p.dir.ino, os(&p.name), mode & 0o7777)?;
        fs.forget(a.ino, 1);
        self.made(p.dir, &p.name, &a);
        Ok(())
    }

    pub fn mkdir(&self, path: &[u8], mode: u32) -> Result<()> {
        self.mkdirat(None, path, mode)
    }

    /// `mknodat(2)`: regular files, FIFOs and sockets for anyone, devices
    /// for root only (EPERM, as without CAP_MKNOD).
    pub fn mknodat(&self, dirfd: Option<Fd>, path: &[u8], mode: u32, dev: u64) -> Result<()> {
        let kind = mode & libc::S_IFMT;
        let mode = match kind {
            0 => mode | libc::S_IFREG,
            libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK => mode,
            libc::S_IFCHR | libc::S_IFBLK if self.creds.is_root() => mode,
            libc::S_IFCHR | libc::S_IFBLK => return Err(FsError::NotPermitted),
            _ => return Err(FsError::InvalidArgument("mknod type")),
        };
        let (p, _) = self.new_name(dirfd, path)?;
        if p.slash {
            return Err(FsError::NotFound);
        }
        let fs = self.vfs.mounted(p.dir.mount)?.fs.clone();
        let a = fs.mknod(&self.creds.request(), p.dir.ino, os(&p.name), mode, dev)?;
        fs.forget(a.ino, 1);
        self.made(p.dir, &p.name, &a);
        Ok(())
    }

    /// `symlinkat(2)`: `target` is stored as given (ENOENT if empty,
    /// ENAMETOOLONG past 4095 bytes).
    pub fn symlinkat(&self, target: &[u8], dirfd: Option<Fd>, path: &[u8]) -> Result<()> {
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong);
        }
        if target.contains(&0) {
            return Err(FsError::InvalidArgument("symlink target holds a NUL byte"));
        }
        let (p, _) = self.new_name(dirfd, path)?;
        let fs = self.vfs.mounted(p.dir.mount)?.fs.clone();
        let a = fs.symlink(&self.creds.request(), p.dir.ino, os(&p.name), os(target))?;
        fs.forget(a.ino, 1);
        self.made(p.dir, &p.name, &a);
        Ok(())
    }

    pub fn symlink(&self, target: &[u8], path: &[u8]) -> Result<()> {
        self.symlinkat(target, None, path)
    }

    /// `readlinkat(2)`: EINVAL if `path` is not a symlink.
    pub fn readlinkat(&self, dirfd: Option<Fd>, path: &[u8]) -> Result<Vec<u8>> {
        let loc = self.resolve(dirfd, path, false)?;
        if self.attr(loc)?.kind != FileType::Symlink {
            return Err(FsError::InvalidArgument("not a symlink"));
        }
        self.vfs.mounted(loc.mount)?.fs.readlink(loc.ino)
    }

    pub fn readlink(&self, path: &[u8]) -> Result<Vec<u8>> {
        self.readlinkat(None, path)
    }

    /// `linkat(2)`: `follow` is AT_SYMLINK_FOLLOW. Directories EPERM,
    /// another mount EXDEV.
    pub fn linkat(
        &self,
        olddirfd: Option<Fd>,
        old: &[u8],
        newdirfd: Option<Fd>,
        new: &[u8],
        follow: bool,
    ) -> Result<()> {
        let src = self.resolve(olddirfd, old, follow)?;
        if self.attr(src)?.kind == FileType::Directory {
            return Err(FsError::NotPermitted);
        }
        let (p, _) = self.new_name(newdirfd, new)?;
        if p.dir.mount != src.mount {
            return Err(FsError::CrossDevice);
        }
        let fs = self.vfs.mounted(src.mount)?.fs.clone();
        let a = fs.link(src.ino, p.dir.ino, os(&p.name))?;
        fs.forget(a.ino, 1);
        self.made(p.dir, &p.name, &a);
        Ok(())
    }

    pub fn link(&self, old: &[u8], new: &[u8]) -> Result<()> {
        self.linkat(None, old, None, new, false)
    }

    /// The entry `p` names, checked for removal: it exists, is no mount
    /// point (EBUSY), the directory is writable and searchable, and the
    /// sticky bit lets this caller remove it.
    fn victim(&self, p: &Parent) -> Result<(Loc, Attr)> {
        let d = self.attr(p.dir)?;
        let loc = self.lookup_in(p.dir, &p.name)?;
        if loc.mount != p.dir.mount {
            return Err(FsError::Busy);
        }
        let a = self.attr(loc)?;
        self.may(p.dir, &d, libc::W_OK | libc::X_OK)?;
        self.creds.may_remove_from(&d, &a)?;
        Ok((loc, a))
    }

    /// A name just removed from `dir`: remember its absence, forget the
    /// attributes of the directory and of the inode (nlink, ctime).
    fn removed(&self, dir: Loc, name: &[u8], loc: Loc) {
        self.vfs.cache.put_name(dir, name, None);
        self.vfs.cache.forget_attr(dir);
        self.vfs.cache.forget_attr(loc);
    }

    /// `unlinkat(2)`; `rmdir` with AT_REMOVEDIR.
    pub fn unlinkat(&self, dirfd: Option<Fd>, path: &[u8], remove_dir: bool) -> Result<()> {
        let p = self.resolve_parent(dirfd, path)?;
        if remove_dir {
            return self.rmdir_at(p);
        }
        if p.name == b"." || p.name == b".." {
            return Err(FsError::IsDir);
        }
        let (loc, a) = self.victim(&p)?;
        if a.kind == FileType::Directory {
            return Err(FsError::IsDir);
        }
        if p.slash {
            return Err(FsError::NotDir);
        }
        self.vfs
            .mounted(p.dir.mount)?
            .fs
            .unlink(p.dir.ino, os(&p.name))?;
        self.removed(p.dir, &p.name, loc);
        Ok(())
    }

    pub fn unlink(&self, path: &[u8]) -> Result<()> {
        self.unlinkat(None, path, false)
    }

    pub fn rmdir(&self, path: &[u8]) -> Result<()> {
        self.unlinkat(None, path, true)
    }

    fn rmdir_at(&self, p: Parent) -> Result<()> {
        match p.name.as_slice() {
            b"." => return Err(FsError::InvalidArgument("rmdir of .")),
            b".." => return Err(FsError::NotEmpty),
            _ => {}
        }
        let (loc, a) = self.victim(&p)?;
        if a.kind != FileType::Directory {
            return Err(FsError::NotDir);
        }
        if self.vfs.mounts.read().is_covered(loc) || loc.ino == ROOT_INO {
            return Err(FsError::Busy);
        }
        self.vfs
            .mounted(p.dir.mount)?
            .fs
            .rmdir(p.dir.ino, os(&p.name))?;
        self.removed(p.dir, &p.name, loc);
        Ok(())
    }

    /// `renameat2(2)` with RENAME_NOREPLACE, RENAME_EXCHANGE or
    /// RENAME_WHITEOUT as the filesystem supports them.
    pub fn renameat2(
        &self,
        olddirfd: Option<Fd>,
        old: &[u8],
        newdirfd: Option<Fd>,
        new: &[u8],
        flags: u32,
    ) -> Result<()> {
        let from = self.resolve_parent(olddirfd, old)?;
        let to = self.resolve_parent(newdirfd, new)?;
        let dots = |n: &[u8]| n == b"." || n == b"..";
        if dots(&from.name) || dots(&to.name) {
            return Err(FsError::Busy);
        }
        if from.dir.mount != to.dir.mount {
            return Err(FsError::CrossDevice);
        }
        let (src, sa) = self.victim(&from)?;
        let target = match self.lookup_in(to.dir, &to.name) {
            Ok(_) => Some(self.victim(&to)?),
            Err(FsError::NotFound) => {
                let d = self.attr(to.dir)?;
                self.may(to.dir, &d, libc::W_OK | libc::X_OK)?;
                None
            }
            Err(e) => return Err(e),
        };
        // A directory moving to another parent rewrites its "..".
        if sa.kind == FileType::Directory && from.dir != to.dir {
            self.may(src, &sa, libc::W_OK)?;
        }
        if self.vfs.mounts.read().is_covered(src) {
            return Err(FsError::Busy);
        }
        let fs = self.vfs.mounted(from.dir.mount)?.fs.clone();
        let r = fs.rename(
            from.dir.ino,
            os(&from.name),
            to.dir.ino,
            os(&to.name),
            flags,
        );
        for (dir, name) in [(from.dir, &from.name), (to.dir, &to.name)] {
            self.vfs.cache.forget_name(dir, name);
            self.vfs.cache.forget_attr(dir);
        }
        self.vfs.cache.forget_attr(src);
        if let Some((t, _)) = target {
            self.vfs.cache.forget_attr(t);
        }
        r
    }

    pub fn rename(&self, old: &[u8], new: &[u8]) -> Result<()> {
        self.renameat2(None, old, None, new, 0)
    }
}
