//! The inode record: one per object, under its [`INODE`](super::keys::INODE) key.
//!
//! Layout (little-endian, 104 bytes, version 1):
//! u8 version · u8 reserved · u16 reserved · u32 mode (type and permission
//! bits, as `st_mode`) · u32 uid · u32 gid · u32 nlink · u32 flags (0) ·
//! u64 size · u64 rdev · u64 generation · u64 parent · u64 next cookie ·
//! u64 allocated bytes · i64 atime · i64 mtime · i64 ctime · i64 crtime
//! (nanoseconds since the Unix epoch, negative before it).
//!
//! For a directory `size` is its entry count (without `.` and `..`),
//! `parent` the inode of `..` and `next cookie` the cookie the next entry
//! gets. Other kinds keep 0 in both. `size` of a symlink is its target's
//! length; of a regular file, its logical size.

use aegis_pool::codec::{Reader, Writer};

use crate::error::{FsError, Result};

pub const INODE_RECORD_SIZE: usize = 104;
const VERSION: u8 = 1;

/// The `S_IFMT` type bits (as in `st_mode`).
pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFIFO: u32 = 0o010000;
pub const S_IFSOCK: u32 = 0o140000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct InodeRecord {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub rdev: u64,
    pub generation: u64,
    pub parent: u64,
    pub next_cookie: u64,
    pub alloc_bytes: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub crtime: i64,
}

impl InodeRecord {
    pub fn file_type(&self) -> u32 {
        self.mode & S_IFMT
    }
    pub fn is_dir(&self) -> bool {
        self.file_type() == S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.file_type() == S_IFREG
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(INODE_RECORD_SIZE);
        w.u8(VERSION);
        w.u8(0);
        w.u16(0);
        w.u32(self.mode);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u32(self.nlink);
        w.u32(0);
        for v in [
            self.size,
            self.rdev,
            self.generation,
            self.parent,
            self.next_cookie,
            self.alloc_bytes,
        ] {
            w.u64(v);
        }
        for t in [self.atime, self.mtime, self.ctime, self.crtime] {
            w.u64(t as u64);
        }
        debug_assert_eq!(w.len(), INODE_RECORD_SIZE);
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<InodeRecord> {
        let bad = |d: &str| FsError::Corrupt {
            what: "inode record".into(),
            detail: d.into(),
        };
        if b.len() != INODE_RECORD_SIZE {
            return Err(bad("wrong length"));
        }
        let mut r = Reader::new(b, "inode record");
        if r.u8()? != VERSION {
            return Err(bad("unknown version"));
        }
        if r.bytes(3)? != [0, 0, 0] {
            return Err(bad("reserved bytes are not zero"));
        }
        let mode = r.u32()?;
        let (uid, gid, nlink) = (r.u32()?, r.u32()?, r.u32()?);
        if r.u32()? != 0 {
            return Err(bad("unknown flags"));
        }
        let rec = InodeRecord {
            mode,
            uid,
            gid,
            nlink,
            size: r.u64()?,
            rdev: r.u64()?,
            generation: r.u64()?,
            parent: r.u64()?,
            next_cookie: r.u64()?,
            alloc_bytes: r.u64()?,
            atime: r.u64()? as i64,
            mtime: r.u64()? as i64,
            ctime: r.u64()? as i64,
            crtime: r.u64()? as i64,
        };
        let known = [
            S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK,
        ];
        if !known.contains(&rec.file_type()) || rec.mode & !(S_IFMT | 0o7777) != 0 {
            return Err(bad("unknown file type or mode bits"));
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_bad_records() {
        let r = InodeRecord {
            mode: S_IFDIR | 0o1755,
            uid: 1000,
            gid: 100,
            nlink: 3,
            size: 7,
            generation: 9,
            parent: 1,
            next_cookie: 12,
            atime: -5,
            mtime: 1 << 60,
            ..Default::default()
        };
        let b = r.encode();
        assert_eq!(b.len(), INODE_RECORD_SIZE);
        assert_eq!(InodeRecord::decode(&b).unwrap(), r);
        assert!(InodeRecord::decode(&b[1..]).is_err());
        let mut v2 = b.clone();
        v2[0] = 2;
        assert!(InodeRecord::decode(&v2).is_err());
        let mut no_type = b.clone();
        no_type[4..8].copy_from_slice(&0o755u32.to_le_bytes());
        assert!(InodeRecord::decode(&no_type).is_err());
    }
}
