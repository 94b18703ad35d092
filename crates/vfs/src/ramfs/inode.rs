//! Inodes: attributes, kind-specific data, and reference counts.

use std::time::{Duration, SystemTime};

use super::dir::Dir;
use super::file::{FileData, CHUNK};
use super::xattr::Xattrs;
use crate::types::{Attr, FileType, Ino};

/// Kind-specific contents of an inode.
#[derive(Debug)]
pub(crate) enum Data {
    File(FileData),
    Dir(Dir),
    Symlink(Vec<u8>),
    /// FIFO, socket, character or block device.
    Special,
}

#[derive(Debug)]
pub(crate) struct Inode {
    pub ino: Ino,
    pub kind: FileType,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub nlink: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub crtime: SystemTime,
    pub generation: u64,
    /// Lookups the client holds (FUSE nlookup).
    pub lookups: u64,
    /// Open file and directory handles.
    pub opens: u64,
    pub xattrs: Xattrs,
    pub data: Data,
}

/// Size a directory reports: 20 bytes per entry including "." and ".."
/// (as tmpfs does).
const DIRENT_SIZE: u64 = 20;

impl Inode {
    pub fn attr(&self) -> Attr {
        let (size, blocks) = match &self.data {
            Data::File(f) => (f.size, f.chunk_count() * (CHUNK / 512)),
            Data::Dir(d) => ((d.len() as u64 + 2) * DIRENT_SIZE, 0),
            Data::Symlink(t) => (t.len() as u64, 0),
            Data::Special => (0, 0),
        };
        Attr {
            ino: self.ino,
            size,
            blocks,
            atime: self.atime,
            mtime: self.mtime,
            ctime: self.ctime,
            crtime: self.crtime,
            kind: self.kind,
            perm: self.perm,
            nlink: self.nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: self.rdev,
            blksize: CHUNK as u32,
            generation: self.generation,
        }
    }

    pub fn dir(&self) -> Option<&Dir> {
        match &self.data {
            Data::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub fn dir_mut(&mut self) -> Option<&mut Dir> {
        match &mut self.data {
            Data::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub fn file(&self) -> Option<&FileData> {
        match &self.data {
            Data::File(f) => Some(f),
            _ => None,
        }
    }

    pub fn file_mut(&mut self) -> Option<&mut FileData> {
        match &mut self.data {
            Data::File(f) => Some(f),
            _ => None,
        }
    }

    /// Whether nothing references the inode any more.
    pub fn is_dead(&self) -> bool {
        self.nlink == 0 && self.lookups == 0 && self.opens == 0
    }

    /// Set mtime and ctime to `now` (content changed).
    pub fn touch_modified(&mut self, now: SystemTime) {
        self.mtime = now;
        self.ctime = now;
    }

    /// relatime: update atime on read when it is not newer than mtime or
    /// ctime, or is more than a day old.
    pub fn touch_read(&mut self, now: SystemTime) {
        let day = Duration::from_secs(24 * 3600);
        if self.atime <= self.mtime
            || self.atime <= self.ctime
            || now.duration_since(self.atime).is_ok_and(|d| d >= day)
        {
            self.atime = now;
        }
    }
}
