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
//! txgs are one range scan). Value: the block pointer, encoded, then,
//! only when several identical pointers were released (reflinks of one
//! block made in one txg, `clone_table.rs`), their count as u32 LE (≥ 2).
//! Each release an entry stands for is released again, through the
//! clone table, when no snapshot holds the pointer any more.
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

/// An entry's value: the pointer, and when several pointers with the
/// same key were released (reflinks of one block in one txg), their
/// count (u32 LE, at least 2; absent for one).
pub fn encode_entry(bp: &BlockPtr, count: u32) -> Vec<u8> {
    let mut v = bp.encode();
    if count > 1 {
        v.extend_from_slice(&count.to_le_bytes());
    }
    v
}

/// Decode an entry and check that its key names the pointer it holds.
pub fn decode_entry(k: &[u8], v: &[u8]) -> Result<BlockPtr> {
    decode_counted(k, v).map(|(bp, _)| bp)
}

/// Decode an entry: its pointer and how many releases it stands for.
pub fn decode_counted(k: &[u8], v: &[u8]) -> Result<(BlockPtr, u32)> {
    let bad = |d: &str| FsError::Corrupt {
        what: "dead list entry".into(),
        detail: d.into(),
    };
    let (list, _) = parse_dead_key(k).ok_or_else(|| bad("not a dead list key"))?;
    let mut r = Reader::new(v, "dead list entry");
    let bp = BlockPtr::decode(&mut r)?;
    let count = match r.remaining() {
        0 => 1,
        4 => match r.u32()? {
            n if n >= 2 => n,
            _ => return Err(bad("a count below 2")),
        },
        _ => return Err(bad("trailing bytes")),
    };
    if dead_key(list, &bp) != k {
        return Err(bad("the key does not name the block it holds"));
    }
    Ok((bp, count))
}

/// Does a free of `bp` by the dataset of `rec` go on its dead list?
pub(crate) fn is_held(rec: &DatasetRecord, bp: &BlockPtr) -> bool {
    rec.prev_snap_txg != 0 && bp.birth_txg <= rec.prev_snap_txg
}

/// One entry of a dead list range: its key, pointer and count.
pub(crate) type DeadEntry = (Vec<u8>, BlockPtr, u32);

impl Trees {
    /// Release pointers dataset `ds` stopped using in the open txg: those
    /// a snapshot may hold wait for the dead list, the rest are released
    /// (freed, or one reference less in the clone table).
    pub(crate) fn release(&mut self, pool: &Pool, ds: u64, bps: &[BlockPtr]) -> Result<()> {
        if bps.is_empty() {
            return Ok(());
        }
        let rec = self.records.get(&ds).ok_or(FsError::NoDataset(ds))?;
        let (held, gone): (Vec<BlockPtr>, Vec<BlockPtr>) =
            bps.iter().cloned().partition(|bp| is_held(rec, bp));
        self.dead_pending.entry(ds).or_default().extend(held);
        self.release_blocks(pool, &gone)
    }

    /// Put `count` releases of `bp` on list `list`, beside any the entry
    /// holds already.
    pub(crate) fn add_dead(&mut self, list: u64, bp: &BlockPtr, count: u32) -> Result<()> {
        let key = dead_key(list, bp);
        let have = match self.pool_tree.get(&key)? {
            Some(v) => decode_counted(&key, &v)?.1,
            None => 0,
        };
        let total = have
            .checked_add(count)
            .ok_or_else(|| FsError::Damaged("a dead list entry's count overflows".into()))?;
        self.pool_tree.insert(&key, &encode_entry(bp, total))?;
        Ok(())
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
                self.add_dead(list, &bp, 1)?;
            }
        }
        Ok(())
    }

    /// Up to `limit` entries of list `list` born in `(after, upto]`, in
    /// key order.
    pub(crate) fn dead_range(
        &self,
        list: u64,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<DeadEntry>> {
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
            let (bp, count) = decode_counted(&k, &v)?;
            out.push((k, bp, count));
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
            birth_delta: 0,
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
        let twice = encode_entry(&bp(9, 1 << 20), 2);
        assert_eq!(decode_counted(&a, &twice).unwrap().1, 2);
        assert_eq!(encode_entry(&bp(9, 1 << 20), 1), bp(9, 1 << 20).encode());
        let mut once = bp(9, 1 << 20).encode();
        once.extend_from_slice(&1u32.to_le_bytes());
        assert!(
            decode_entry(&a, &once).is_err(),
            "a count of 1 is written bare"
        );
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
