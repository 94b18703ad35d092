//! One record of a regular file: the bytes of `[offset, offset + len)`,
//! either inline in the tree (small files, record 0 only) or in a data
//! block. Bytes of a record past `len`, and records that do not exist, are
//! holes and read as zeroes.
//!
//! A third kind, *preallocated* (fallocate), covers `len` bytes that read
//! as zeroes past the data it holds (none at first, or a block of up to
//! `len` bytes once written): the space its block may still grow to is
//! held back in the dataset's reserved-bytes counter (see `meta.rs`), so
//! writes inside `len` cannot fail for space. Only a dataset with the
//! `prealloc` feature has such records.
//!
//! Layout: u8 kind (1 inline, 2 block, 3 preallocated) · u32 logical
//! length (LE) · then the inline bytes (exactly `len`), an encoded block
//! pointer (whose logical size equals `len`), or for a preallocated
//! record nothing or the block pointer of its data (logical size at most
//! `len`).

use aegis_pool::codec::{Reader, Writer};
use aegis_pool::{BlockPtr, BLKPTR_HEADER, DVA_SIZE};

use crate::error::{FsError, Result};

const INLINE: u8 = 1;
const BLOCK: u8 = 2;
const PREALLOC: u8 = 3;

/// Largest record size a dataset may use.
pub const MAX_RECORD_SIZE: u32 = 1 << 20;

/// Leaf entry of a record without data: entry header, key, kind, length.
const PREALLOC_ENTRY: u64 = 4 + 17 + 5;
/// Largest leaf entry of a record with a block: the same and a block
/// pointer with its one address (data has one copy).
const BLOCK_ENTRY_MAX: u64 = PREALLOC_ENTRY + (BLKPTR_HEADER + DVA_SIZE) as u64;

/// Tree bytes, per metadata copy, that the first write of a preallocated
/// record may add: its block pointer (BLKPTR_HEADER + DVA_SIZE = 80
/// bytes) in a leaf at least half full after a split (× 2), plus an
/// eighth for the levels above (× 9/8): 80 × 9/4 = 180.
const FIRST_WRITE_TREE_BYTES: u64 = (BLKPTR_HEADER + DVA_SIZE) as u64 * 9 / 4;

/// How much a preallocated record holds back in one dataset: whole
/// blocks of its length less its data's, and, when the dataset has the
/// `prealloc_tree` feature, [`FIRST_WRITE_TREE_BYTES`] per metadata copy
/// while it has no data yet (its first write grows the tree; later ones
/// replace a pointer of the same size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShareRule {
    pub block_size: u32,
    /// Bytes an unwritten record adds for the tree; 0 without the feature.
    pub tree_bytes: u64,
}

impl ShareRule {
    pub fn new(block_size: u32, metadata_copies: u8, tree_feature: bool) -> ShareRule {
        ShareRule {
            block_size,
            tree_bytes: if tree_feature {
                FIRST_WRITE_TREE_BYTES * metadata_copies as u64
            } else {
                0
            },
        }
    }
}

/// The data share of a preallocated record of `len` bytes whose block
/// takes `data_bytes` (`None`: no block yet): its length in whole blocks
/// less the block's.
fn prealloc_data_share(len: u32, data_bytes: Option<u64>, block_size: u32) -> u64 {
    let whole = (len as u64).div_ceil(block_size as u64) * block_size as u64;
    whole.saturating_sub(data_bytes.unwrap_or(0))
}

/// What a preallocated record of `len` bytes whose block takes
/// `data_bytes` (`None`: no block yet) holds back under `rule`: its data
/// share, and the tree growth of its first write while it has no block.
/// [`FileRecord::reserved`] of such a record; also how a dirty record over
/// one tells what the commit will leave reserved.
pub(crate) fn prealloc_reserved(len: u32, data_bytes: Option<u64>, rule: ShareRule) -> u64 {
    let tree = if data_bytes.is_none() {
        rule.tree_bytes
    } else {
        0
    };
    prealloc_data_share(len, data_bytes, rule.block_size) + tree
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRecord {
    Inline(Vec<u8>),
    Block {
        len: u32,
        bp: BlockPtr,
    },
    /// Preallocated: `len` bytes, `data`'s bytes then zeroes, whose
    /// writes inside `len` are paid for by the reservation
    /// ([`FileRecord::reserved`]).
    Prealloc {
        len: u32,
        data: Option<BlockPtr>,
    },
}

impl FileRecord {
    /// Leaf bytes that `records` consecutive records of a file may take
    /// (for [`TxSize::run_bytes`]): as records with a block, or, when
    /// `unwritten`, as preallocated records without data.
    ///
    /// [`TxSize::run_bytes`]: crate::TxSize::run_bytes
    pub fn run_bytes(records: u64, unwritten: bool) -> u64 {
        records.saturating_mul(if unwritten {
            PREALLOC_ENTRY
        } else {
            BLOCK_ENTRY_MAX
        })
    }
    pub fn len(&self) -> u32 {
        match self {
            FileRecord::Inline(b) => b.len() as u32,
            FileRecord::Block { len, .. } | FileRecord::Prealloc { len, .. } => *len,
        }
    }

    /// Data bytes this record holds back from the pool's free space (and
    /// counts in `st_blocks`): what its block may still grow by, up to its
    /// length in whole blocks uncompressed. Zero for the other kinds.
    pub fn data_share(&self, block_size: u32) -> u64 {
        match self {
            FileRecord::Prealloc { len, data } => prealloc_data_share(
                *len,
                data.as_ref().map(|bp| bp.allocated_size(block_size)),
                block_size,
            ),
            _ => 0,
        }
    }

    /// Bytes this record holds back in all (its *share*, summed in the
    /// dataset's reserved-bytes counter): its data share, plus the tree
    /// growth of its first write while it has no data (see [`ShareRule`]).
    pub fn reserved(&self, rule: ShareRule) -> u64 {
        match self {
            FileRecord::Prealloc { len, data } => prealloc_reserved(
                *len,
                data.as_ref().map(|bp| bp.allocated_size(rule.block_size)),
                rule,
            ),
            _ => 0,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            FileRecord::Inline(b) => {
                w.u8(INLINE);
                w.u32(b.len() as u32);
                w.bytes(b);
            }
            FileRecord::Block { len, bp } => {
                w.u8(BLOCK);
                w.u32(*len);
                bp.encode_into(&mut w);
            }
            FileRecord::Prealloc { len, data } => {
                w.u8(PREALLOC);
                w.u32(*len);
                if let Some(bp) = data {
                    bp.encode_into(&mut w);
                }
            }
        }
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<FileRecord> {
        let bad = |d: &str| FsError::Corrupt {
            what: "file record".into(),
            detail: d.into(),
        };
        let mut r = Reader::new(b, "file record");
        let kind = r.u8()?;
        let len = r.u32()?;
        if len == 0 || len > MAX_RECORD_SIZE {
            return Err(bad("bad length"));
        }
        let rec = match kind {
            INLINE => {
                if r.remaining() != len as usize {
                    return Err(bad("inline length"));
                }
                FileRecord::Inline(r.bytes(len as usize)?.to_vec())
            }
            BLOCK => {
                let bp = BlockPtr::decode(&mut r)?;
                if r.remaining() != 0 || bp.logical_size != len {
                    return Err(bad("block pointer does not match the record"));
                }
                FileRecord::Block { len, bp }
            }
            PREALLOC if r.remaining() == 0 => FileRecord::Prealloc { len, data: None },
            PREALLOC => {
                let bp = BlockPtr::decode(&mut r)?;
                if r.remaining() != 0 || bp.logical_size > len {
                    return Err(bad("preallocated record's block does not fit it"));
                }
                FileRecord::Prealloc {
                    len,
                    data: Some(bp),
                }
            }
            _ => return Err(bad("unknown kind")),
        };
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_round_trip_and_rejects() {
        let r = FileRecord::Inline(b"abc".to_vec());
        assert_eq!(FileRecord::decode(&r.encode()).unwrap(), r);
        let e = r.encode();
        assert!(FileRecord::decode(&e[..e.len() - 1]).is_err());
        assert!(FileRecord::decode(&[1, 0, 0, 0, 0]).is_err());
        assert!(FileRecord::decode(&[9, 1, 0, 0, 0, 7]).is_err());
    }

    #[test]
    fn prealloc_round_trip_and_rejects() {
        let r = FileRecord::Prealloc {
            len: 5000,
            data: None,
        };
        assert_eq!(r.encode(), [3, 0x88, 0x13, 0, 0]);
        assert_eq!(FileRecord::decode(&r.encode()).unwrap(), r);
        assert_eq!(r.data_share(4096), 8192);
        assert_eq!(r.reserved(ShareRule::new(4096, 2, false)), 8192);
        assert_eq!(r.reserved(ShareRule::new(4096, 2, true)), 8192 + 360);
        assert!(FileRecord::decode(&[3, 0, 0, 0, 0]).is_err());
        assert!(FileRecord::decode(&[3, 1, 0, 0, 0, 7]).is_err());
        assert!(FileRecord::decode(&[3, 1, 0, 0x20, 0]).is_err());
    }

    #[test]
    fn prealloc_with_data_round_trip_and_share() {
        use aegis_pool::{BlockType, ChecksumType, Compression, Dva};
        let bp = BlockPtr {
            checksum_type: ChecksumType::Blake3,
            compression: Compression::Lz4,
            block_type: BlockType::Data,
            level: 0,
            logical_size: 4096,
            physical_size: 1000,
            birth_txg: 7,
            birth_delta: 0,
            checksum: [3; 32],
            addrs: vec![Dva {
                device: 0,
                offset: 1 << 20,
            }],
            gang: false,
        };
        let r = FileRecord::Prealloc {
            len: 16384,
            data: Some(bp.clone()),
        };
        let e = r.encode();
        assert_eq!(&e[..5], &[3, 0, 0x40, 0, 0]);
        assert_eq!(FileRecord::decode(&e).unwrap(), r);
        // 16 KiB in 4 KiB blocks, less the one block its data takes.
        assert_eq!(r.data_share(4096), 12288);
        // Written: its pointer is in the tree already.
        assert_eq!(r.reserved(ShareRule::new(4096, 3, true)), 12288);
        // A block longer than the record, or trailing bytes, are refused.
        let mut long = bp.clone();
        long.logical_size = 20000;
        let bad = FileRecord::Prealloc {
            len: 16384,
            data: Some(long),
        };
        assert!(FileRecord::decode(&bad.encode()).is_err());
        let mut trailing = e.clone();
        trailing.push(0);
        assert!(FileRecord::decode(&trailing).is_err());
    }
}
