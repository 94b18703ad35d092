//! The dataset's own record (object 0, item [`META`](super::keys::META)):
//! how its files are stored and where inode numbering stands.
//!
//! Layout (24 bytes): u8 version (1) · u8 data compression (as in block
//! pointers) · u16 reserved · u32 record size · u64 next inode number ·
//! u64 inode count.

use aegis_pool::codec::{Reader, Writer};
use aegis_pool::Compression;

use crate::error::{FsError, Result};
use crate::posix::file_record::MAX_RECORD_SIZE;

pub const MIN_RECORD_SIZE: u32 = 4096;
pub const DEFAULT_RECORD_SIZE: u32 = 128 << 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetMeta {
    pub compression: Compression,
    pub record_size: u32,
    pub next_ino: u64,
    pub inodes: u64,
}

impl DatasetMeta {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(24);
        w.u8(1);
        w.u8(self.compression as u8);
        w.u16(0);
        w.u32(self.record_size);
        w.u64(self.next_ino);
        w.u64(self.inodes);
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<DatasetMeta> {
        let bad = |d: &str| FsError::Corrupt {
            what: "dataset meta record".into(),
            detail: d.into(),
        };
        if b.len() != 24 {
            return Err(bad("wrong length"));
        }
        let mut r = Reader::new(b, "dataset meta record");
        if r.u8()? != 1 {
            return Err(bad("unknown version"));
        }
        let compression = Compression::from_u8(r.u8()?)?;
        r.skip(2)?;
        let record_size = r.u32()?;
        if !record_size.is_power_of_two()
            || !(MIN_RECORD_SIZE..=MAX_RECORD_SIZE).contains(&record_size)
        {
            return Err(bad("record size"));
        }
        let m = DatasetMeta {
            compression,
            record_size,
            next_ino: r.u64()?,
            inodes: r.u64()?,
        };
        if m.next_ino < 2 {
            return Err(bad("next inode number"));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let m = DatasetMeta {
            compression: Compression::Lz4,
            record_size: 128 << 10,
            next_ino: 77,
            inodes: 5,
        };
        assert_eq!(DatasetMeta::decode(&m.encode()).unwrap(), m);
        let mut bad = m.encode();
        bad[4..8].copy_from_slice(&3000u32.to_le_bytes());
        assert!(DatasetMeta::decode(&bad).is_err());
        assert!(DatasetMeta::decode(&m.encode()[..23]).is_err());
    }
}
