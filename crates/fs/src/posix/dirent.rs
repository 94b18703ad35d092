//! The value of a directory entry and of its index item: the child's inode
//! number, its type, and the name (needed by readdir, and by lookup to tell
//! apart names that share a hash).
//!
//! Layout: u64 ino (LE) · u8 file type (the `S_IFMT` bits >> 12) · name
//! (1..=255 bytes, no `/` or NUL).

use aegis_pool::codec::{Reader, Writer};

use crate::error::{FsError, Result};

pub const NAME_MAX: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirentValue {
    pub ino: u64,
    /// `S_IFMT` bits of the child (e.g. `S_IFDIR`).
    pub file_type: u32,
    pub name: Vec<u8>,
}

impl DirentValue {
    pub fn encode(&self) -> Vec<u8> {
        assert!(!self.name.is_empty() && self.name.len() <= NAME_MAX);
        let mut w = Writer::with_capacity(9 + self.name.len());
        w.u64(self.ino);
        w.u8((self.file_type >> 12) as u8);
        w.bytes(&self.name);
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<DirentValue> {
        let bad = |d: &str| FsError::Corrupt {
            what: "directory entry".into(),
            detail: d.into(),
        };
        let mut r = Reader::new(b, "directory entry");
        let ino = r.u64()?;
        let t = r.u8()? as u32;
        let name = r.bytes(r.remaining())?.to_vec();
        if ino == 0 || t == 0 || t > 0o17 {
            return Err(bad("bad inode number or type"));
        }
        if name.is_empty() || name.len() > NAME_MAX || name.iter().any(|&c| c == 0 || c == b'/') {
            return Err(bad("bad name"));
        }
        Ok(DirentValue {
            ino,
            file_type: t << 12,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let d = DirentValue {
            ino: 42,
            file_type: 0o040000,
            name: b"hello".to_vec(),
        };
        assert_eq!(DirentValue::decode(&d.encode()).unwrap(), d);
        assert!(DirentValue::decode(&d.encode()[..9]).is_err());
        let mut slash = d.encode();
        slash[10] = b'/';
        assert!(DirentValue::decode(&slash).is_err());
        assert!(DirentValue::decode(&[0; 5]).is_err());
    }
}
