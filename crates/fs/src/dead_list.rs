//! Dead lists (pool tree record type 3): the blocks a dataset stopped
//! using that a snapshot still holds.
//!
//! Every block pointer carries its birth txg and trees are copy-on-write,
//! so one comparison decides a free: a block born after the dataset's
//! newest snapshot (`prev_snap_txg`) is in no snapshot and is freed; one
//! born at or before it may be, and goes on the dataset's dead list. The
//! write path pays nothing else, with no snapshot or with a hundred. When
//! a snapshot is taken the dataset's dead list becomes the snapshot's and
//! the dataset starts an empty one, so the dead list of X (a snapshot or
//! the live dataset) always holds exactly the blocks the snapshot before
//! X references and X does not. Deleting snapshot S (previous P, next N)
//! frees N's entries born after P (only S held them) and moves S's own
//! entries to N (`snapshot_admin.rs`): work in proportion to what changed
//! around S, never to the dataset's size.
//!
//! Key: u8 type (3) · u64 dead list id · u64 birth txg · u32 device ·
//! u64 offset (all big-endian, so one list's entries born in a range of
//! txgs are one range scan). Value: the block pointer, encoded.
//!
//! Frees of the open txg gather in memory (`Trees::dead_pending`) and
//! become entries when the txg closes; the space check counts them (and
//! every dirty node and record of a dataset with snapshots, each of which
//! may add one) as entries still to be written.

use std::ops::Bound;

use aegis_pool::codec::Reader;
use aegis_pool::{BlockPtr, Pool, BLKPTR_HEADER, DVA_SIZE};

use crate::dataset::DatasetRecord;
use crate::error::{FsError, Result};
use crate::store::Trees;

pub const REC_DEADLIST: u8 = 3;
const KEY_LEN: usize = 1 + 8 + 8 + 4 + 8;

/// Leaf bytes one entry of a block pointer of `copies` addresses takes
/// (key, value and the node's per-entry lengths), for space checks.
pub(crate) fn entry_bytes(copies: usize) -> u64 {
    (KEY_LEN + BLKPTR_HEADER + DVA_SIZE * copies.max(1) + 4) as u64
}

/// The key of `bp`'s entry on list `list`.
pub fn dead_key(list: u64, bp: &BlockPtr) -> Vec<u8> {
    let mut k = birth_bound(list, bp.birth_txg);
    let (device, offset) = bp.addrs.first().map_or((0, 0), |a| (a.device, a.offset));
    k.extend_from_slice(&device.to_be_bytes());
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// The first key of list `list` at birth txg `birth`.
fn birth_bound(list: u64, birth: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEY_LEN);
    k.push(REC_DEADLIST);
    k.extend_from_slice(&list.to_be_bytes());
    k.extend_from_slice(&birth.to_be_bytes());
    k
}

/// (list, birth txg) of a dead list key, if it is one.
pub fn parse_dead_key(k: &[u8]) -> Option<(u64, u64)> {
    (k.len() == KEY_LEN && k[0] == REC_DEADLIST).then(|| {
        let list = u64::from_be_bytes(k[1..9].try_into().expect("8 bytes"));
        let birth = u64::from_be_bytes(k[9..17].try_into().expect("8 bytes"));
        (list, birth)
    })
}

/// Decode an entry and check that its key names the pointer it holds.
pub fn decode_entry(k: &[u8], v: &[u8]) -> Result<BlockPtr> {
    let bad = |d: &str| FsError::Corrupt {
        what: "dead list entry".into(),
        detail: d.into(),
    };
    let (list, _) = parse_dead_key(k).ok_or_else(|| bad("not a dead list key"))?;
    let mut r = Reader::new(v, "dead list entry");
    let bp = BlockPtr::decode(&mut r)?;
    if r.remaining() != 0 {
        return Err(bad("trailing bytes"));
    }
    if dead_key(list, &bp) != k {
        return Err(bad("the key does not name the block it holds"));
    }
    Ok(bp)
}

/// Does a free of `bp` by the dataset of `rec` go on its dead list?
pub(crate) fn is_held(rec: &DatasetRecord, bp: &BlockPtr) -> bool {
    rec.prev_snap_txg != 0 && bp.birth_txg <= rec.prev_snap_txg
}

/// Release `bps`, which dataset `rec` stopped using in the open txg: free
/// what no snapshot can hold, keep the rest for the dead list.
pub(crate) fn release(
    pool: &Pool,
    rec: &DatasetRecord,
    pending: &mut Vec<BlockPtr>,
    bps: &[BlockPtr],
) -> Result<()> {
    for bp in bps {
        if is_held(rec, bp) {
            pending.push(bp.clone());
        } else {
            pool.free(bp)?;
        }
    }
    Ok(())
}

impl Trees {
    /// Release blocks dataset `ds` stopped using (see [`release`]).
    pub(crate) fn release(&mut self, pool: &Pool, ds: u64, bps: &[BlockPtr]) -> Result<()> {
        if bps.is_empty() {
            return Ok(());
        }
        let rec = self.records.get(&ds).ok_or(FsError::NoDataset(ds))?;
        let pending = self.dead_pending.entry(ds).or_default();
        release(pool, rec, pending, bps)
    }

    /// Leaf bytes the dead list entries of the open txg will take: those
    /// gathered, and one per dirty node and record of a dataset with a
    /// snapshot (each may replace a block a snapshot holds).
    pub(crate) fn dead_run_bytes(&self, copies: usize) -> u64 {
        let pending: usize = self.dead_pending.values().map(Vec::len).sum();
        let may: usize = self
            .records
            .iter()
            .filter(|(_, r)| r.prev_snap_txg != 0)
            .map(|(id, _)| {
                self.datasets.get(id).map_or(0, |t| t.dirty_nodes())
                    + self.dirty.get(id).map_or(0, |d| d.len())
            })
            .sum();
        // Data blocks may carry more copies than nodes: count the widest.
        (pending + may) as u64 * entry_bytes(copies.max(3))
    }

    /// Write the open txg's gathered entries into the pool tree, each on
    /// its dataset's current dead list (the txg is closing, so the
    /// datasets' trees are flushed and nothing more is released).
    pub(crate) fn file_dead_entries(&mut self) -> Result<()> {
        for (ds, bps) in std::mem::take(&mut self.dead_pending) {
            let rec = self.records.get(&ds).ok_or(FsError::NoDataset(ds))?;
            let list = rec.deadlist;
            if list == 0 && !bps.is_empty() {
                return Err(FsError::Invalid(format!(
                    "dataset {ds} holds snapshot blocks but has no dead list"
                )));
            }
            for bp in bps {
                self.pool_tree.insert(&dead_key(list, &bp), &bp.encode())?;
            }
        }
        Ok(())
    }

    /// Up to `limit` entries of list `list` born in `(after, upto]`, in
    /// key order: (key, block pointer).
    pub(crate) fn dead_range(
        &self,
        list: u64,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, BlockPtr)>> {
        let mut out = Vec::new();
        if after >= upto {
            return Ok(out);
        }
        let lo = birth_bound(list, after.saturating_add(1));
        let hi = match upto.checked_add(1) {
            Some(h) => birth_bound(list, h),
            None => birth_bound(list.saturating_add(1), 0),
        };
        for item in self
            .pool_tree
            .range(Bound::Included(&lo[..]), Bound::Excluded(&hi[..]))
        {
            let (k, v) = item?;
            out.push((k.clone(), decode_entry(&k, &v)?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_pool::{BlockType, ChecksumType, Compression, Dva};

    fn bp(birth: u64, offset: u64) -> BlockPtr {
        BlockPtr {
            checksum_type: ChecksumType::Blake3,
            compression: Compression::None,
            block_type: BlockType::Data,
            level: 0,
            logical_size: 4096,
            physical_size: 4096,
            birth_txg: birth,
            checksum: [7; 32],
            addrs: vec![Dva { device: 0, offset }],
            gang: false,
        }
    }

    #[test]
    fn keys_order_by_list_then_birth_and_check_their_pointer() {
        let a = dead_key(5, &bp(9, 1 << 20));
        let b = dead_key(5, &bp(10, 4096));
        let c = dead_key(6, &bp(1, 0));
        assert!(a < b && b < c);
        assert_eq!(parse_dead_key(&a), Some((5, 9)));
        assert_eq!(
            decode_entry(&a, &bp(9, 1 << 20).encode())
                .unwrap()
                .birth_txg,
            9
        );
        assert!(decode_entry(&a, &bp(9, 8192).encode()).is_err());
        let mut long = bp(9, 1 << 20).encode();
        long.push(0);
        assert!(decode_entry(&a, &long).is_err());
    }

    #[test]
    fn only_blocks_born_by_the_newest_snapshot_are_held() {
        let mut rec = DatasetRecord::new("d", 1, 0);
        assert!(!is_held(&rec, &bp(3, 0)));
        rec.prev_snap_txg = 3;
        assert!(is_held(&rec, &bp(3, 0)));
        assert!(!is_held(&rec, &bp(4, 0)));
    }
}
