//! Preallocation (fallocate mode 0 and KEEP_SIZE): what a reservation of
//! a range needs and holds, and the records it makes. A preallocated
//! record covers its length as zeroes and holds back, in the dataset
//! meta's reserved counter, the room its block may still grow into (see
//! `file_data.rs` for the invariants every path keeps; the accounts here
//! go through the same `account_in`/`account_out`).

use aegis_btree::Tree;
use aegis_pool::Pool;

use super::file_data::{account_in, account_out, file_rs, next_share_rule, records_in, settle};
use super::{keys, DatasetMeta, FileRecord, InodeRecord};
use crate::error::Result;
use crate::tx::Tx;

/// Replace preallocated `old` at `start` by `new`, the same data with
/// another length: only the accounts move.
pub(super) fn resize_prealloc(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    start: u64,
    old: &FileRecord,
    new: FileRecord,
) -> Result<()> {
    account_out(tx, r, old);
    account_in(tx, r, &new);
    tx.tree.insert(&keys::data(ino, start), &new.encode())?;
    Ok(())
}

/// The preallocated length `[lo, hi)` asks of the record at `start`: from
/// the record's start (a record is the unit of reservation) to `hi` or
/// the record's end.
fn wanted(start: u64, rs: u64, hi: u64) -> u32 {
    (hi.min(start + rs) - start) as u32
}

/// Bytes of new reservation preallocating `[lo, hi)` would hold (for the
/// ENOSPC check before the change): holes become preallocated records,
/// shorter preallocated records grow, records with data stay as they are
/// (unless `zeroing`: ZERO_RANGE may punch them first, so they count as
/// holes). Computed without walking the range, which may be huge.
pub(crate) fn prealloc_need(
    tree: &Tree,
    pool: &Pool,
    meta: &DatasetMeta,
    ino: u64,
    (lo, hi): (u64, u64),
    zeroing: bool,
) -> Result<u64> {
    if hi <= lo {
        return Ok(0);
    }
    let rs = super::directory::read_inode(tree, ino)?.record_size_bytes(meta.record_size);
    let rule = next_share_rule(meta, pool);
    let share = |start: u64| {
        FileRecord::Prealloc {
            len: wanted(start, rs, hi),
            data: None,
        }
        .reserved(rule)
    };
    let first = lo / rs * rs;
    let n = (hi - first).div_ceil(rs);
    let last = first + (n - 1) * rs;
    let mut need = if n > 1 {
        (n - 1).saturating_mul(share(first))
    } else {
        0
    }
    .saturating_add(share(last));
    for (start, rec) in records_in(tree, ino, first, hi)? {
        let have = match rec {
            FileRecord::Prealloc { .. } => rec.reserved(rule),
            _ if zeroing => 0,
            _ => u64::MAX,
        };
        need = need.saturating_sub(share(start).min(have));
    }
    Ok(need)
}

/// The part of [`write_size_bytes`] for a write of `[lo, hi)` that the
/// reservation pays: one record size for each touched record that is
/// preallocated and holds the write's piece (its block cannot outgrow the
/// record's share plus the block it replaces).
pub(crate) fn prealloc_cover(tree: &Tree, ino: u64, rs: u64, lo: u64, hi: u64) -> Result<u64> {
    if hi <= lo {
        return Ok(0);
    }
    let first = lo / rs * rs;
    Ok(records_in(tree, ino, first, hi)?
        .iter()
        .filter(|(start, rec)| {
            matches!(rec, FileRecord::Prealloc { .. })
                && hi.min(start + rs) <= start + rec.len() as u64
        })
        .count() as u64
        * rs)
}

/// Preallocate `[lo, hi)` (fallocate mode 0 and KEEP_SIZE; the caller
/// sets the size): see [`prealloc_need`] for what changes.
pub(crate) fn preallocate(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    lo: u64,
    hi: u64,
) -> Result<()> {
    let rs = file_rs(tx, r);
    let first = lo / rs * rs;
    settle(tx, ino, r, first, hi)?;
    let mut have = std::collections::BTreeMap::new();
    for (start, rec) in records_in(tx.tree, ino, first, hi)? {
        have.insert(start, rec);
    }
    let mut start = first;
    while start < hi {
        let len = wanted(start, rs, hi);
        match have.get(&start) {
            None => {
                let rec = FileRecord::Prealloc { len, data: None };
                account_in(tx, r, &rec);
                tx.tree.insert(&keys::data(ino, start), &rec.encode())?;
            }
            Some(rec @ FileRecord::Prealloc { len: l, data }) if *l < len => {
                let new = FileRecord::Prealloc {
                    len,
                    data: data.clone(),
                };
                let rec = rec.clone();
                resize_prealloc(tx, ino, r, start, &rec, new)?
            }
            Some(_) => {}
        }
        start += rs;
    }
    Ok(())
}
