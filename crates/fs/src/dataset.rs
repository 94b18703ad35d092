//! Dataset records in the pool tree.
//!
//! The pool tree (kind [`POOL_TREE_KIND`]) maps `[record type u8][id u64
//! big-endian]` to records. Type 1 is a dataset: a filesystem whose objects
//! live in their own tree (kind [`DATASET_TREE_KIND`]; snapshots and clones
//! will share nodes between trees of that kind, which is why nodes carry a
//! kind and not an owner id).
//!
//! Dataset record (little-endian): u8 version (1 or 2) · u8 dataset type
//! (0 = filesystem) · u16 name length · u32 reserved · u64 created txg ·
//! u64 created time (ns) · tree root (TREE_ROOT_SIZE) · version 2 only:
//! u64 newest snapshot's txg (`prev_snap_txg`, 0 = none) · u64 dead list
//! id (0 = none yet) · u64 origin snapshot id (0 = not a clone) · name
//! (UTF-8). A dataset that never had a snapshot is written as version 1,
//! byte for byte as before snapshots existed (`snapshot.rs`).

use aegis_pool::codec::{Reader, Writer};
use aegis_pool::TreeRoot;

use crate::error::{FsError, Result};

pub const POOL_TREE_KIND: u64 = 1;
pub const DATASET_TREE_KIND: u64 = 2;
pub const REC_DATASET: u8 = 1;
/// The dataset mkfs creates; the filesystem mounts it by default.
pub const ROOT_DATASET: u64 = 16;
pub const MAX_DATASET_NAME: usize = 255;

pub fn dataset_key(id: u64) -> Vec<u8> {
    let mut k = vec![REC_DATASET];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The dataset id of a pool tree key, if it is a dataset key.
pub fn parse_dataset_key(k: &[u8]) -> Option<u64> {
    (k.len() == 9 && k[0] == REC_DATASET)
        .then(|| u64::from_be_bytes(k[1..9].try_into().expect("8 bytes")))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetRecord {
    pub name: String,
    pub created_txg: u64,
    pub created_ns: u64,
    pub root: TreeRoot,
    /// The txg of the dataset's newest snapshot: a block born at or before
    /// it may be held by a snapshot, so freeing it puts it on the dead
    /// list instead (`dead_list.rs`).
    pub prev_snap_txg: u64,
    /// Where the live tree's frees of snapshot-held blocks go.
    pub deadlist: u64,
    /// The snapshot this dataset was cloned from (0: none).
    pub origin: u64,
}

impl DatasetRecord {
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.name.len() <= MAX_DATASET_NAME);
        let v2 = self.prev_snap_txg != 0 || self.deadlist != 0 || self.origin != 0;
        let mut w = Writer::new();
        w.u8(if v2 { 2 } else { 1 });
        w.u8(0);
        w.u16(self.name.len() as u16);
        w.u32(0);
        w.u64(self.created_txg);
        w.u64(self.created_ns);
        self.root.encode_into(&mut w);
        if v2 {
            w.u64(self.prev_snap_txg);
            w.u64(self.deadlist);
            w.u64(self.origin);
        }
        w.bytes(self.name.as_bytes());
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<DatasetRecord> {
        let bad = |d: &str| FsError::Corrupt {
            what: "dataset record".into(),
            detail: d.into(),
        };
        let mut r = Reader::new(b, "dataset record");
        let version = r.u8()?;
        if version != 1 && version != 2 {
            return Err(bad("unknown version"));
        }
        if r.u8()? != 0 {
            return Err(bad("unknown dataset type"));
        }
        let name_len = r.u16()? as usize;
        r.skip(4)?;
        let created_txg = r.u64()?;
        let created_ns = r.u64()?;
        let root = TreeRoot::decode(&mut r)?;
        let (prev_snap_txg, deadlist, origin) = match version {
            2 => (r.u64()?, r.u64()?, r.u64()?),
            _ => (0, 0, 0),
        };
        if name_len > MAX_DATASET_NAME || r.remaining() != name_len {
            return Err(bad("name length"));
        }
        let name = std::str::from_utf8(r.bytes(name_len)?)
            .map_err(|_| bad("name is not UTF-8"))?
            .to_string();
        Ok(DatasetRecord {
            name,
            created_txg,
            created_ns,
            root,
            prev_snap_txg,
            deadlist,
            origin,
        })
    }

    /// A record for a new, empty dataset.
    pub fn new(name: &str, created_txg: u64, created_ns: u64) -> DatasetRecord {
        DatasetRecord {
            name: name.to_string(),
            created_txg,
            created_ns,
            root: TreeRoot::default(),
            prev_snap_txg: 0,
            deadlist: 0,
            origin: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_truncation() {
        let mut r = DatasetRecord::new("root", 1, 2);
        let enc = r.encode();
        assert_eq!(enc[0], 1, "no snapshot fields: version 1");
        assert_eq!(DatasetRecord::decode(&enc).unwrap(), r);
        assert!(DatasetRecord::decode(&enc[..enc.len() - 1]).is_err());
        r.prev_snap_txg = 9;
        r.deadlist = 40;
        let enc = r.encode();
        assert_eq!(enc[0], 2);
        assert_eq!(DatasetRecord::decode(&enc).unwrap(), r);
        assert!(DatasetRecord::decode(&enc[..enc.len() - 1]).is_err());
        assert_eq!(parse_dataset_key(&dataset_key(77)), Some(77));
    }
}
