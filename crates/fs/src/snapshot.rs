//! Snapshot records in the pool tree (record type 2).
//!
//! A snapshot is a dataset's tree root frozen at the end of one txg: its
//! record keeps the root, so every node and data block that root reaches
//! stays allocated while the record exists. Nothing is copied; the live
//! tree goes on from the same root copy-on-write, and the blocks it stops
//! using that a snapshot still holds go on a dead list (`dead_list.rs`)
//! instead of being freed. Snapshot ids come from the same counter as
//! dataset ids (`Store::next_object_id`), so a snapshot can be viewed
//! through the same calls as a dataset (read-only).
//!
//! Key: u8 type (2) · u64 snapshot id (big-endian).
//!
//! Record (little-endian): u8 version (1, or 2 for a received snapshot)
//! · u8 flags (bit 0: being deleted) · u16 name length · u32 clones
//! (datasets cloned from it) · u64 dataset id · u64 txg (the last txg
//! whose changes it holds) · u64 creation time (ns) · u64 dead list id
//! (what the live tree freed, of the blocks the snapshot before this one
//! held, while this one was the newest; 0 = none) · version 2 only: u64
//! guid of the sent snapshot it was received from · tree root
//! (TREE_ROOT_SIZE) · name (UTF-8).
//!
//! A snapshot's *guid* names its contents across pools, for incremental
//! send and receive. A snapshot taken here has a guid derived from what
//! never changes in its record ([`derived_guid`]), so version 1 records
//! need not store one and stay byte for byte what they were; a received
//! snapshot keeps the guid of the snapshot it was sent from, in a
//! version 2 record (pool feature `received_snapshots`).
//!
//! Invariants: a dataset's snapshots have distinct names and distinct
//! txgs, all at most the dataset's `prev_snap_txg`; a snapshot being
//! deleted is never mounted, listed as usable, or walked by fsck as a
//! tree (its blocks are on dead lists until the delete finishes).

use aegis_pool::codec::{Reader, Writer};
use aegis_pool::TreeRoot;

use crate::dataset::MAX_DATASET_NAME;
use crate::error::{FsError, Result};

pub const REC_SNAPSHOT: u8 = 2;
const VERSION: u8 = 1;
const VERSION_RECEIVED: u8 = 2;
/// Seed of the derived guid hash, fixed by the format.
const GUID_SEED: u64 = 0x4165_6769_7347_5549; // "AegisGUI"

/// The guid of a snapshot taken in this pool: a hash of its dataset, txg,
/// creation time and name, none of which changes while it exists. Never
/// 0 (0 means "no base" in a send stream).
pub fn derived_guid(dataset: u64, txg: u64, created_ns: u64, name: &str) -> u64 {
    let mut b = Vec::with_capacity(24 + name.len());
    b.extend_from_slice(&dataset.to_le_bytes());
    b.extend_from_slice(&txg.to_le_bytes());
    b.extend_from_slice(&created_ns.to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    xxhash_rust::xxh3::xxh3_64_with_seed(&b, GUID_SEED).max(1)
}
const FLAG_DELETING: u8 = 1;

pub fn snapshot_key(id: u64) -> Vec<u8> {
    let mut k = vec![REC_SNAPSHOT];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The snapshot id of a pool tree key, if it is a snapshot key.
pub fn parse_snapshot_key(k: &[u8]) -> Option<u64> {
    (k.len() == 9 && k[0] == REC_SNAPSHOT)
        .then(|| u64::from_be_bytes(k[1..9].try_into().expect("8 bytes")))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub name: String,
    pub dataset: u64,
    pub txg: u64,
    pub created_ns: u64,
    pub deadlist: u64,
    pub clones: u32,
    pub deleting: bool,
    pub root: TreeRoot,
    /// The guid of the sent snapshot this one was received from; `None`
    /// for one taken here (its guid is derived).
    pub received_guid: Option<u64>,
}

impl SnapshotRecord {
    /// The guid naming this snapshot's contents (see the module docs).
    pub fn guid(&self) -> u64 {
        self.received_guid
            .unwrap_or_else(|| derived_guid(self.dataset, self.txg, self.created_ns, &self.name))
    }

    pub fn encode(&self) -> Vec<u8> {
        assert!(self.name.len() <= MAX_DATASET_NAME);
        let mut w = Writer::new();
        w.u8(match self.received_guid {
            Some(_) => VERSION_RECEIVED,
            None => VERSION,
        });
        w.u8(if self.deleting { FLAG_DELETING } else { 0 });
        w.u16(self.name.len() as u16);
        w.u32(self.clones);
        w.u64(self.dataset);
        w.u64(self.txg);
        w.u64(self.created_ns);
        w.u64(self.deadlist);
        if let Some(g) = self.received_guid {
            w.u64(g);
        }
        self.root.encode_into(&mut w);
        w.bytes(self.name.as_bytes());
        w.into_inner()
    }

    pub fn decode(b: &[u8]) -> Result<SnapshotRecord> {
        let bad = |d: &str| FsError::Corrupt {
            what: "snapshot record".into(),
            detail: d.into(),
        };
        let mut r = Reader::new(b, "snapshot record");
        let version = r.u8()?;
        if version != VERSION && version != VERSION_RECEIVED {
            return Err(bad("unknown version"));
        }
        let flags = r.u8()?;
        if flags & !FLAG_DELETING != 0 {
            return Err(bad("unknown flags"));
        }
        let name_len = r.u16()? as usize;
        let clones = r.u32()?;
        let dataset = r.u64()?;
        let txg = r.u64()?;
        let created_ns = r.u64()?;
        let deadlist = r.u64()?;
        let received_guid = match version {
            VERSION_RECEIVED => match r.u64()? {
                0 => return Err(bad("guid 0")),
                g => Some(g),
            },
            _ => None,
        };
        let root = TreeRoot::decode(&mut r)?;
        if name_len > MAX_DATASET_NAME || r.remaining() != name_len {
            return Err(bad("name length"));
        }
        let name = std::str::from_utf8(r.bytes(name_len)?)
            .map_err(|_| bad("name is not UTF-8"))?
            .to_string();
        Ok(SnapshotRecord {
            name,
            dataset,
            txg,
            created_ns,
            deadlist,
            clones,
            deleting: flags & FLAG_DELETING != 0,
            root,
            received_guid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_damage() {
        let r = SnapshotRecord {
            name: "daily".into(),
            dataset: 16,
            txg: 42,
            created_ns: 7,
            deadlist: 19,
            clones: 0,
            deleting: true,
            root: TreeRoot::default(),
            received_guid: None,
        };
        let enc = r.encode();
        assert_eq!(enc[0], 1, "a snapshot taken here is written as version 1");
        assert_eq!(r.guid(), derived_guid(16, 42, 7, "daily"));
        assert_eq!(SnapshotRecord::decode(&enc).unwrap(), r);
        assert!(SnapshotRecord::decode(&enc[..enc.len() - 1]).is_err());
        let mut flags = enc.clone();
        flags[1] = 0x80;
        assert!(SnapshotRecord::decode(&flags).is_err());
        assert_eq!(parse_snapshot_key(&snapshot_key(77)), Some(77));
        let received = SnapshotRecord {
            received_guid: Some(0xfeed),
            ..r.clone()
        };
        let enc = received.encode();
        assert_eq!((enc[0], enc.len()), (2, r.encode().len() + 8));
        let back = SnapshotRecord::decode(&enc).unwrap();
        assert_eq!((back.guid(), &back), (0xfeed, &received));
        let mut zero = enc.clone();
        zero[40..48].fill(0);
        assert!(SnapshotRecord::decode(&zero).is_err());
        assert_eq!(parse_snapshot_key(&crate::dataset::dataset_key(77)), None);
    }
}
