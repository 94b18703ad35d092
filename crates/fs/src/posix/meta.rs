//! The dataset's own record (object 0, item [`META`](super::keys::META)):
//! how its files are stored and where inode numbering stands.
//!
//! Layout, version 1 (24 bytes): u8 version · u8 data compression (as in
//! block pointers) · u16 reserved · u32 record size · u64 next inode
//! number · u64 inode count. Version 2 (40 bytes) appends u64 incompat
//! features (bit 0 `prealloc`, bit 1 `prealloc_tree`, bit 2
//! `recordsize`, bit 3 `receiving`) · u64 reserved
//! bytes (the sum of [`FileRecord::reserved`] over the dataset's
//! preallocated records, which fsck checks).
//!
//! A dataset without features is written as version 1, byte for byte as
//! before, so images that never used a feature stay readable by older
//! builds; the first fallocate sets [`FEATURE_PREALLOC`] and from then on
//! the record is version 2, which an older build refuses as an unknown
//! version, and this one refuses when it names a feature it does not know.
//!
//! [`FileRecord::reserved`]: super::FileRecord::reserved

use aegis_pool::codec::{Reader, Writer};
use aegis_pool::Compression;

use crate::error::{FsError, Result};
use crate::posix::file_record::{ShareRule, MAX_RECORD_SIZE};

pub const MIN_RECORD_SIZE: u32 = 4096;
pub const DEFAULT_RECORD_SIZE: u32 = 128 << 10;

/// Incompat feature: the dataset may hold preallocated file records.
pub const FEATURE_PREALLOC: u64 = 1 << 0;
/// Incompat feature: an unwritten preallocated record's share includes
/// the tree growth of its first write ([`ShareRule`]). Set with
/// [`FEATURE_PREALLOC`] whenever nothing is reserved (so no record's
/// share changes meaning); a dataset preallocated before it existed keeps
/// the old rule until its reservations are all gone.
///
/// [`ShareRule`]: super::file_record::ShareRule
pub const FEATURE_PREALLOC_TREE: u64 = 1 << 1;
/// Incompat feature: inodes may name their own record size (byte 1 of
/// the inode record). Set by the first change that stores a record size
/// other than the dataset's; a build without it would read such a file's
/// records with the wrong size, so it must refuse the dataset.
pub const FEATURE_RECORDSIZE: u64 = 1 << 2;
/// Incompat feature, set only while a send stream is being received into
/// the dataset (its items are a prefix of the stream's, so no POSIX rule
/// holds yet): no build may mount it, this one refuses until the receive
/// is finished or aborted (`receive.rs`).
pub const FEATURE_RECEIVING: u64 = 1 << 3;
/// Incompat feature: the dataset keeps quota usage items (`quota.rs`),
/// which every change of an inode record must update; a build without
/// it would let them go stale, so it must refuse the dataset. Set by the
/// first `quota set`.
pub const FEATURE_QUOTA: u64 = 1 << 4;
const KNOWN_FEATURES: u64 = FEATURE_PREALLOC
    | FEATURE_PREALLOC_TREE
    | FEATURE_RECORDSIZE
    | FEATURE_RECEIVING
    | FEATURE_QUOTA;

/// The names of the dataset feature bits set in `bits` (`info`).
pub fn feature_names(bits: u64) -> Vec<String> {
    (0..64)
        .filter(|b| bits & (1u64 << b) != 0)
        .map(|b| match 1u64 << b {
            FEATURE_PREALLOC => "prealloc".to_string(),
            FEATURE_PREALLOC_TREE => "prealloc_tree".to_string(),
            FEATURE_RECORDSIZE => "recordsize".to_string(),
            FEATURE_RECEIVING => "receiving".to_string(),
            FEATURE_QUOTA => "quota".to_string(),
            _ => format!("feature_{b}"),
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetMeta {
    pub compression: Compression,
    pub record_size: u32,
    pub next_ino: u64,
    pub inodes: u64,
    /// Incompat features in use ([`FEATURE_PREALLOC`]); 0 for version 1.
    pub features: u64,
    /// Bytes held back by preallocated records; 0 without the feature.
    pub reserved: u64,
}

impl DatasetMeta {
    /// The share rule of this dataset's preallocated records.
    pub fn share_rule(&self, block_size: u32, metadata_copies: u8) -> ShareRule {
        let tree = self.features & FEATURE_PREALLOC_TREE != 0;
        ShareRule::new(block_size, metadata_copies, tree)
    }

    /// The bits of `features` this build does not know.
    pub fn unknown_features(features: u64) -> u64 {
        features & !KNOWN_FEATURES
    }

    pub fn encode(&self) -> Vec<u8> {
        let v2 = self.features != 0;
        let mut w = Writer::with_capacity(40);
        w.u8(if v2 { 2 } else { 1 });
        w.u8(self.compression as u8);
        w.u16(0);
        w.u32(self.record_size);
        w.u64(self.next_ino);
        w.u64(self.inodes);
        if v2 {
            w.u64(self.features);
            w.u64(self.reserved);
        }
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<DatasetMeta> {
        let bad = |d: &str| FsError::Corrupt {
            what: "dataset meta record".into(),
            detail: d.into(),
        };
        let mut r = Reader::new(b, "dataset meta record");
        let version = r.u8()?;
        match (version, b.len()) {
            (1, 24) | (2, 40) => {}
            (1 | 2, _) => return Err(bad("wrong length")),
            _ => return Err(bad("unknown version")),
        }
        let compression = Compression::from_u8(r.u8()?)?;
        r.skip(2)?;
        let record_size = r.u32()?;
        if !record_size.is_power_of_two()
            || !(MIN_RECORD_SIZE..=MAX_RECORD_SIZE).contains(&record_size)
        {
            return Err(bad("record size"));
        }
        let (next_ino, inodes) = (r.u64()?, r.u64()?);
        let (features, reserved) = if version == 2 {
            (r.u64()?, r.u64()?)
        } else {
            (0, 0)
        };
        let m = DatasetMeta {
            compression,
            record_size,
            next_ino,
            inodes,
            features,
            reserved,
        };
        if m.next_ino < 2 {
            return Err(bad("next inode number"));
        }
        if version == 2 && features == 0 {
            return Err(bad("version 2 without features"));
        }
        if features & !KNOWN_FEATURES != 0 {
            return Err(bad(&format!(
                "unknown incompat features {:#x}",
                features & !KNOWN_FEATURES
            )));
        }
        if reserved != 0 && features & FEATURE_PREALLOC == 0 {
            return Err(bad("reserved bytes without the prealloc feature"));
        }
        if features & FEATURE_PREALLOC_TREE != 0 && features & FEATURE_PREALLOC == 0 {
            return Err(bad("prealloc_tree without prealloc"));
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
            features: 0,
            reserved: 0,
        };
        assert_eq!(DatasetMeta::decode(&m.encode()).unwrap(), m);
        let mut bad = m.encode();
        bad[4..8].copy_from_slice(&3000u32.to_le_bytes());
        assert!(DatasetMeta::decode(&bad).is_err());
        assert!(DatasetMeta::decode(&m.encode()[..23]).is_err());
    }

    #[test]
    fn feature_bits_have_names() {
        assert_eq!(feature_names(0), Vec::<String>::new());
        assert_eq!(feature_names(3), ["prealloc", "prealloc_tree"]);
        assert_eq!(feature_names(FEATURE_RECORDSIZE), ["recordsize"]);
        assert_eq!(feature_names(1 << 9), ["feature_9"]);
    }

    #[test]
    fn version_2_only_with_features() {
        let mut m = DatasetMeta {
            compression: Compression::None,
            record_size: 4096,
            next_ino: 9,
            inodes: 2,
            features: 0,
            reserved: 0,
        };
        assert_eq!(m.encode().len(), 24);
        m.features = FEATURE_PREALLOC;
        m.reserved = 8192;
        let e = m.encode();
        assert_eq!((e.len(), e[0]), (40, 2));
        assert_eq!(&e[24..32], &1u64.to_le_bytes());
        assert_eq!(&e[32..40], &8192u64.to_le_bytes());
        assert_eq!(DatasetMeta::decode(&e).unwrap(), m);
        let mut tree_only = e.clone();
        tree_only[24] = 2;
        assert!(DatasetMeta::decode(&tree_only).is_err());
        let mut both = m.clone();
        both.features = FEATURE_PREALLOC | FEATURE_PREALLOC_TREE;
        assert_eq!(DatasetMeta::decode(&both.encode()).unwrap(), both);
        let mut unknown = e.clone();
        unknown[24] = 33;
        assert!(DatasetMeta::decode(&unknown).is_err(), "bit 5 is unknown");
        let mut quota = e.clone();
        quota[24] = 17;
        assert!(DatasetMeta::decode(&quota).is_ok(), "bit 4 is quota");
        let mut with_rs = e.clone();
        with_rs[24] = 5;
        assert!(
            DatasetMeta::decode(&with_rs).is_ok(),
            "prealloc + recordsize"
        );
        let mut rs_only = m.clone();
        rs_only.features = FEATURE_RECORDSIZE;
        rs_only.reserved = 0;
        let rs_bytes = rs_only.encode();
        assert_eq!((rs_bytes.len(), rs_bytes[24]), (40, 4));
        assert_eq!(DatasetMeta::decode(&rs_bytes).unwrap(), rs_only);
        let mut rs_reserved = rs_bytes.clone();
        rs_reserved[32] = 1;
        assert!(DatasetMeta::decode(&rs_reserved).is_err());
        let mut next_bit = rs_bytes.clone();
        next_bit[24] = 32;
        assert!(DatasetMeta::decode(&next_bit).is_err(), "bit 5 is unknown");
        let mut none = e.clone();
        none[24] = 0;
        assert!(DatasetMeta::decode(&none).is_err());
        let mut short = e.clone();
        short[0] = 1;
        assert!(DatasetMeta::decode(&short).is_err());
        assert!(DatasetMeta::decode(&e[..39]).is_err());
    }
}
