//! The inode record: one per object, under its [`INODE`](super::keys::INODE) key.
//!
//! Layout (little-endian, 104 bytes, version 1):
//! u8 version · u8 record shift · u16 reserved · u32 mode (type and permission
//! bits, as `st_mode`) · u32 uid · u32 gid · u32 nlink · u32 flags (0) ·
//! u64 size · u64 rdev · u64 generation · u64 parent · u64 next cookie ·
//! u64 allocated bytes · i64 atime · i64 mtime · i64 ctime · i64 crtime
//! (nanoseconds since the Unix epoch, negative before it).
//!
//! For a directory `size` is its entry count (without `.` and `..`),
//! `parent` the inode of `..` and `next cookie` the cookie the next entry
//! gets. Other kinds keep 0 in both. `size` of a symlink is its target's
//! length; of a regular file, its logical size.
//!
//! The record shift is log2 of the object's record size (12..=20, 4 KiB
//! to 1 MiB), or 0 for the dataset's default (`DatasetMeta::record_size`).
//! It shapes a regular file's records, and a directory hands it down to
//! the entries made in it; other kinds keep 0. A non-zero shift exists
//! only in a dataset with the `recordsize` feature (fsck checks it); any
//! other value is refused by decode as corruption.

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

/// Smallest and largest record shift an inode may name (4 KiB, 1 MiB).
pub const MIN_RECORD_SHIFT: u8 = 12;
pub const MAX_RECORD_SHIFT: u8 = 20;

/// The record shift of `bytes`, when it is a power of two from 4 KiB to
/// 1 MiB; `None` otherwise.
pub fn record_shift_of(bytes: u64) -> Option<u8> {
    let shift = bytes.trailing_zeros();
    let ok = bytes.is_power_of_two()
        && (MIN_RECORD_SHIFT as u32..=MAX_RECORD_SHIFT as u32).contains(&shift);
    ok.then_some(shift as u8)
}

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
    /// log2 of the record size; 0 = the dataset's default.
    pub record_shift: u8,
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

    /// The object's record size: its own, or the dataset's
    /// `dataset_bytes` when it has none.
    pub fn record_size_bytes(&self, dataset_bytes: u32) -> u64 {
        match self.record_shift {
            0 => dataset_bytes as u64,
            shift => 1u64 << shift,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(INODE_RECORD_SIZE);
        w.u8(VERSION);
        w.u8(self.record_shift);
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
        let record_shift = r.u8()?;
        if record_shift != 0 && !(MIN_RECORD_SHIFT..=MAX_RECORD_SHIFT).contains(&record_shift) {
            return Err(bad("record shift outside 12..=20"));
        }
        if r.bytes(2)? != [0, 0] {
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
            record_shift,
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
        let mut reserved = b.clone();
        reserved[2] = 1;
        assert!(InodeRecord::decode(&reserved).is_err());
    }

    #[test]
    fn record_shift_is_byte_1_and_checked() {
        let mut r = InodeRecord {
            mode: S_IFREG | 0o644,
            ..Default::default()
        };
        assert_eq!(r.encode()[1], 0, "the default stays a zero byte");
        assert_eq!(r.record_size_bytes(128 << 10), 128 << 10);
        for shift in MIN_RECORD_SHIFT..=MAX_RECORD_SHIFT {
            r.record_shift = shift;
            let b = r.encode();
            assert_eq!(b[1], shift);
            let back = InodeRecord::decode(&b).unwrap();
            assert_eq!(back, r);
            assert_eq!(back.record_size_bytes(128 << 10), 1u64 << shift);
        }
        for bad in [1u8, 11, 21, 31, 255] {
            let mut b = r.encode();
            b[1] = bad;
            assert!(InodeRecord::decode(&b).is_err(), "shift {bad} accepted");
        }
    }

    #[test]
    fn record_shift_of_sizes() {
        assert_eq!(record_shift_of(4096), Some(12));
        assert_eq!(record_shift_of(16 << 10), Some(14));
        assert_eq!(record_shift_of(1 << 20), Some(20));
        for bad in [0u64, 1, 2048, 3 << 10, 6000, 2 << 20, u64::MAX, 1 << 63] {
            assert_eq!(record_shift_of(bad), None, "{bad}");
        }
    }
}
