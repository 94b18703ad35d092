//! Path walk: bytes to places, as Linux's `namei` does it. Absolute paths
//! start at `/`, relative ones at the working directory or a directory
//! descriptor; empty components and `.` stay, `..` goes up (from a mount's
//! root to its mount point's parent, never above `/`); every directory
//! passed needs search (x) permission; a symlink in the middle of a path
//! is always followed, the last one only when asked (or when a trailing
//! slash asks for a directory); 40 symlinks per walk at most, the 41st is
//! ELOOP.
//!
//! Errors, as Linux gives them: empty path ENOENT, a NUL byte EINVAL, a
//! path of PATH_MAX (4096) bytes or more or a component over 255 bytes
//! ENAMETOOLONG, a non-directory in the middle ENOTDIR, a missing
//! component ENOENT.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::fd_table::Fd;
use super::{Loc, Process};
use crate::error::{FsError, Result};
use crate::types::{Attr, FileType, NAME_MAX};

/// Longest path, in bytes, with its terminating NUL (PATH_MAX).
pub const PATH_MAX: usize = 4096;

/// Symlinks one walk may follow (MAXSYMLINKS).
pub const SYMLINKS_MAX: u32 = 40;

/// Where the last component of a path goes: the directory holding it,
/// its name (`None` for a path that names `/` or ends in `.`/`..` only
/// when there is none), and whether a slash followed it.
pub(crate) struct Parent {
    pub(crate) dir: Loc,
    pub(crate) name: Vec<u8>,
    pub(crate) slash: bool,
}

fn check_path(path: &[u8]) -> Result<()> {
    if path.is_empty() {
        return Err(FsError::NotFound);
    }
    if path.contains(&0) {
        return Err(FsError::InvalidArgument("path holds a NUL byte"));
    }
    if path.len() >= PATH_MAX {
        return Err(FsError::NameTooLong);
    }
    if path.split(|&b| b == b'/').any(|c| c.len() > NAME_MAX) {
        return Err(FsError::NameTooLong);
    }
    Ok(())
}

/// The components of `path`, empty ones and `.` in the middle dropped
/// (a last `.` stays: `rmdir("a/.")` must see it), and whether it ends in
/// a slash.
fn components(path: &[u8]) -> (Vec<&[u8]>, bool) {
    let slash = path.len() > 1 && path.ends_with(b"/");
    let all: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    let n = all.len();
    let kept = all
        .into_iter()
        .enumerate()
        .filter(|&(i, c)| c != b"." || i + 1 == n)
        .map(|(_, c)| c)
        .collect();
    (kept, slash)
}

impl Process {
    /// Attributes of `loc`, from the cache or the filesystem.
    pub(crate) fn attr(&self, loc: Loc) -> Result<Attr> {
        if let Some(a) = self.vfs.cache.attr(loc) {
            return Ok(a);
        }
        let a = self.vfs.mounted(loc.mount)?.fs.getattr(loc.ino)?;
        self.vfs.cache.put_attr(loc, a.clone());
        Ok(a)
    }

    /// Where a walk of `path` starts: `/`, the working directory, or the
    /// directory `dirfd` names (None: AT_FDCWD).
    fn start(&self, dirfd: Option<Fd>, path: &[u8]) -> Result<Loc> {
        if path.first() == Some(&b'/') {
            return Ok(Loc::root_of(0));
        }
        match dirfd {
            None => Ok(*self.cwd.lock()),
            Some(fd) => {
                let f = self.fds.lock().get(fd)?;
                if !f.dir && self.attr(f.loc)?.kind != FileType::Directory {
                    return Err(FsError::NotDir);
                }
                Ok(f.loc)
            }
        }
    }

    /// The place `path` names; its last symlink followed if `follow`.
    pub(crate) fn resolve(&self, dirfd: Option<Fd>, path: &[u8], follow: bool) -> Result<Loc> {
        check_path(path)?;
        let start = self.start(dirfd, path)?;
        let mut links = 0;
        self.resolve_from(start, path, follow, &mut links)
    }

    /// The directory and name the last component of `path` goes into.
    pub(crate) fn resolve_parent(&self, dirfd: Option<Fd>, path: &[u8]) -> Result<Parent> {
        check_path(path)?;
        let start = self.start(dirfd, path)?;
        self.resolve_parent_from(start, path)
    }

    /// As [`Process::resolve_parent`], relative paths from `start` (a
    /// symlink's directory).
    pub(crate) fn resolve_parent_from(&self, start: Loc, path: &[u8]) -> Result<Parent> {
        check_path(path)?;
        let start = if path.first() == Some(&b'/') {
            Loc::root_of(0)
        } else {
            start
        };
        let mut links = 0;
        let (dir, last, slash) = self.walk_parent(start, path, &mut links)?;
        let name = match last {
            Some(n) => n,
            // "/" itself: a name that exists and cannot be made or removed.
            None => b".".to_vec(),
        };
        self.search(dir)?;
        Ok(Parent { dir, name, slash })
    }

    fn resolve_from(&self, start: Loc, path: &[u8], follow: bool, links: &mut u32) -> Result<Loc> {
        let start = if path.first() == Some(&b'/') {
            Loc::root_of(0)
        } else {
            start
        };
        let (dir, last, slash) = self.walk_parent(start, path, links)?;
        let Some(name) = last else {
            return Ok(dir);
        };
        self.search(dir)?;
        let child = self.lookup_in(dir, &name)?;
        let a = self.attr(child)?;
        if a.kind == FileType::Symlink && (follow || slash) {
            return self.follow(dir, child, links);
        }
        if slash && a.kind != FileType::Directory {
            return Err(FsError::NotDir);
        }
        Ok(child)
    }

    /// Walk every component of `path` but the last from `start`.
    fn walk_parent(
        &self,
        start: Loc,
        path: &[u8],
        links: &mut u32,
    ) -> Result<(Loc, Option<Vec<u8>>, bool)> {
        let (comps, slash) = components(path);
        let mut cur = start;
        let Some((last, middle)) = comps.split_last() else {
            return Ok((cur, None, slash));
        };
        for c in middle {
            self.search(cur)?;
            let next = self.lookup_in(cur, c)?;
            cur = match self.attr(next)?.kind {
                FileType::Symlink => self.follow(cur, next, links)?,
                FileType::Directory => next,
                _ => return Err(FsError::NotDir),
            };
        }
        Ok((cur, Some(last.to_vec()), slash))
    }

    /// Follow the symlink `link` found in `dir`.
    fn follow(&self, dir: Loc, link: Loc, links: &mut u32) -> Result<Loc> {
        *links += 1;
        if *links > SYMLINKS_MAX {
            return Err(FsError::Loop);
        }
        let target = self.vfs.mounted(link.mount)?.fs.readlink(link.ino)?;
        check_path(&target)?;
        self.resolve_from(dir, &target, true, links)
    }

    /// `dir` is a directory this caller may search.
    pub(crate) fn search(&self, dir: Loc) -> Result<()> {
        let a = self.attr(dir)?;
        if a.kind != FileType::Directory {
            return Err(FsError::NotDir);
        }
        self.may(dir, &a, libc::X_OK)
    }

    /// The place `name` names in directory `dir`: `.` and `..` (across
    /// mounts), else the dentry cache or the filesystem, then down into a
    /// mount on it.
    pub(crate) fn lookup_in(&self, dir: Loc, name: &[u8]) -> Result<Loc> {
        match name {
            b"." => return Ok(dir),
            b".." => return self.dotdot(dir),
            _ => {}
        }
        let ino = match self.vfs.cache.name(dir, name) {
            Some(Some(ino)) => ino,
            Some(None) => return Err(FsError::NotFound),
            None => self.lookup_uncached(dir, name)?,
        };
        let at = Loc {
            mount: dir.mount,
            ino,
        };
        Ok(self.vfs.mounts.read().cross_down(at))
    }

    fn lookup_uncached(&self, dir: Loc, name: &[u8]) -> Result<u64> {
        let fs = self.vfs.mounted(dir.mount)?.fs.clone();
        match fs.lookup(dir.ino, OsStr::from_bytes(name)) {
            Ok(a) => {
                fs.forget(a.ino, 1);
                let loc = Loc {
                    mount: dir.mount,
                    ino: a.ino,
                };
                self.vfs.cache.put_name(dir, name, Some(a.ino));
                self.vfs.cache.put_attr(loc, a.clone());
                Ok(a.ino)
            }
            Err(FsError::NotFound) => {
                self.vfs.cache.put_name(dir, name, None);
                Err(FsError::NotFound)
            }
            Err(e) => Err(e),
        }
    }

    fn dotdot(&self, dir: Loc) -> Result<Loc> {
        let up = self.vfs.mounts.read().cross_up(dir);
        if up == Loc::root_of(0) {
            return Ok(up);
        }
        let fs = self.vfs.mounted(up.mount)?.fs.clone();
        let a = fs.lookup(up.ino, OsStr::from_bytes(b".."))?;
        fs.forget(a.ino, 1);
        Ok(Loc {
            mount: up.mount,
            ino: a.ino,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_keep_a_last_dot_and_see_the_slash() {
        let (c, s) = components(b"//a/./b//");
        assert_eq!((c, s), (vec![&b"a"[..], b"b"], true));
        let (c, s) = components(b"a/.");
        assert_eq!((c, s), (vec![&b"a"[..], b"."], false));
        assert_eq!(components(b"/"), (vec![], false));
    }

    #[test]
    fn bad_paths_get_linux_errors() {
        assert_eq!(check_path(b""), Err(FsError::NotFound));
        assert!(matches!(
            check_path(b"a\0b"),
            Err(FsError::InvalidArgument(_))
        ));
        assert_eq!(check_path(&[b'a'; 256]), Err(FsError::NameTooLong));
        assert!(check_path(&[b'a'; 255]).is_ok());
        let long: Vec<u8> = b"ab/".iter().copied().cycle().take(PATH_MAX).collect();
        assert_eq!(check_path(&long), Err(FsError::NameTooLong));
        assert!(check_path(&long[..PATH_MAX - 1]).is_ok());
    }
}
