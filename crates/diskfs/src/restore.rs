//! Bringing a file or a tree back from a snapshot into the live dataset
//! (time travel's `restore`): a copy through the `FileSystem` calls of
//! both, keeping contents (holes stay holes), modes, owners, times,
//! xattrs, symlinks, special files and the hard links inside the tree.
//!
//! The copy is made as root and its owners and modes set afterwards
//! (mode last: a chown clears setuid). It is bounded: at most
//! [`MAX_DEPTH`] levels and [`MAX_OBJECTS`] objects, refused past them.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use aegis_vfs::{
    Attr, FileSystem, FileType, FsError, Ino, Request, Result, SetAttr, TimeOrNow, Whence,
    XattrReply,
};

pub const MAX_DEPTH: usize = 256;
pub const MAX_OBJECTS: u64 = 10_000_000;
/// Bytes one read and write move.
const CHUNK_BYTES: u32 = 1 << 20;

/// What a restore copied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub objects: u64,
    pub bytes: u64,
}

struct Copy<'a> {
    from: &'a dyn FileSystem,
    to: &'a dyn FileSystem,
    /// Source inode → its copy, for hard links inside the tree.
    links: HashMap<Ino, Ino>,
    done: Restored,
}

/// Copy `src` of `from` (a file or directory tree) to `name` in
/// directory `dest` of `to`, which must not hold that name.
pub fn restore(
    from: &dyn FileSystem,
    src: Ino,
    to: &dyn FileSystem,
    dest: Ino,
    name: &OsStr,
) -> Result<Restored> {
    let mut c = Copy {
        from,
        to,
        links: HashMap::new(),
        done: Restored::default(),
    };
    c.object(src, dest, name, 0)?;
    Ok(c.done)
}

impl Copy<'_> {
    fn object(&mut self, src: Ino, dest: Ino, name: &OsStr, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH || self.done.objects >= MAX_OBJECTS {
            return Err(FsError::InvalidArgument(
                "the tree is too deep or too large to restore",
            ));
        }
        self.done.objects += 1;
        let a = self.from.getattr(src)?;
        if a.kind != FileType::Directory {
            if let Some(&first) = self.links.get(&src) {
                let made = self.to.link(first, dest, name)?;
                self.to.forget(made.ino, 1);
                return Ok(());
            }
        }
        let root = Request::root();
        let made = match a.kind {
            FileType::Directory => self.to.mkdir(&root, dest, name, 0o700)?,
            FileType::RegularFile => self.file(src, dest, name)?,
            FileType::Symlink => {
                let target = self.from.readlink(src)?;
                self.to
                    .symlink(&root, dest, name, OsStr::from_bytes(&target))?
            }
            kind => self
                .to
                .mknod(&root, dest, name, node_type(kind) | 0o600, a.rdev)?,
        };
        if a.kind == FileType::Directory {
            self.children(src, made.ino, depth)?;
        } else if a.nlink > 1 {
            self.links.insert(src, made.ino);
        }
        self.xattrs(src, made.ino)?;
        self.attributes(&a, made.ino)?;
        self.to.forget(made.ino, 1);
        Ok(())
    }

    fn children(&mut self, src: Ino, dest: Ino, depth: usize) -> Result<()> {
        let fh = self.from.opendir(src, 0)?;
        let entries = self.from.readdir(src, fh, 0, usize::MAX);
        self.from.releasedir(src, fh)?;
        for e in entries? {
            if e.name == b"." || e.name == b".." {
                continue;
            }
            let name = OsStr::from_bytes(&e.name);
            let child = self.from.lookup(src, name)?;
            let r = self.object(child.ino, dest, name, depth + 1);
            self.from.forget(child.ino, 1);
            r?;
        }
        Ok(())
    }

    /// A regular file's data, range by range of what `SEEK_DATA` finds.
    fn file(&mut self, src: Ino, dest: Ino, name: &OsStr) -> Result<Attr> {
        let size = self.from.getattr(src)?.size;
        let (made, wfh) = self
            .to
            .create(&Request::root(), dest, name, 0o600, libc::O_WRONLY)?;
        let rfh = self.from.open(src, libc::O_RDONLY)?;
        let copied = self.data(src, rfh, made.ino, wfh, size);
        self.from.release(src, rfh)?;
        let truncated = self.to.setattr(
            &Request::root(),
            made.ino,
            &SetAttr {
                size: Some(size),
                ..Default::default()
            },
            Some(wfh),
        );
        self.to.release(made.ino, wfh)?;
        copied?;
        truncated?;
        Ok(made)
    }

    fn data(&mut self, src: Ino, rfh: u64, dst: Ino, wfh: u64, size: u64) -> Result<()> {
        let mut off = 0u64;
        while off < size {
            let start = match self.from.lseek(src, rfh, off as i64, Whence::Data) {
                Ok(s) => s,
                Err(FsError::NoSuchOffset) => break,
                Err(e) => return Err(e),
            };
            let end = self
                .from
                .lseek(src, rfh, start as i64, Whence::Hole)?
                .min(size);
            let mut at = start;
            while at < end {
                let n = ((end - at).min(CHUNK_BYTES as u64)) as u32;
                let d = self.from.read(src, rfh, at, n)?;
                if d.is_empty() {
                    break;
                }
                self.to.write(dst, wfh, at, &d)?;
                at += d.len() as u64;
                self.done.bytes += d.len() as u64;
            }
            off = end.max(start + 1);
        }
        Ok(())
    }

    fn xattrs(&mut self, src: Ino, dst: Ino) -> Result<()> {
        let XattrReply::Data(list) = self.from.listxattr(src, 1 << 16)? else {
            return Ok(());
        };
        for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let name = OsStr::from_bytes(name);
            if let XattrReply::Data(v) = self.from.getxattr(src, name, 1 << 16)? {
                self.to.setxattr(&Request::root(), dst, name, &v, 0)?;
            }
        }
        Ok(())
    }

    /// Owner first, then mode (a chown drops setuid), then times.
    fn attributes(&mut self, a: &Attr, dst: Ino) -> Result<()> {
        let root = Request::root();
        let set = |s: SetAttr| self.to.setattr(&root, dst, &s, None).map(|_| ());
        set(SetAttr {
            uid: Some(a.uid),
            gid: Some(a.gid),
            ..Default::default()
        })?;
        if a.kind != FileType::Symlink {
            set(SetAttr {
                mode: Some(a.perm as u32),
                ..Default::default()
            })?;
        }
        set(SetAttr {
            atime: Some(TimeOrNow::Time(a.atime)),
            mtime: Some(TimeOrNow::Time(a.mtime)),
            ..Default::default()
        })
    }
}

fn node_type(kind: FileType) -> u32 {
    match kind {
        FileType::NamedPipe => libc::S_IFIFO,
        FileType::CharDevice => libc::S_IFCHR,
        FileType::BlockDevice => libc::S_IFBLK,
        FileType::Socket => libc::S_IFSOCK,
        _ => libc::S_IFREG,
    }
}
