//! Reading regular file data: records through the pool's data cache,
//! dirty records from memory, read-ahead for sequential readers, and
//! `SEEK_DATA`/`SEEK_HOLE`, and the counts read from records (`st_blocks`
//! as it will be, records per file). The write side, and the record
//! layout and its invariants, are in `file_data.rs`; nothing here changes
//! a record.

use std::sync::Arc;

use aegis_btree::Tree;
use aegis_pool::{BlockData, Pool};

use super::dirty_data::DirtyData;
use super::file_data::{file_record_size, inline_max, records_in};
use super::read_ahead::ReadAhead;
use super::{keys, DatasetMeta, FileRecord, InodeRecord};
use crate::error::Result;

/// A record's bytes for a reader, through the pool's data cache.
fn record_data(pool: &Pool, rec: &FileRecord) -> Result<BlockData> {
    match rec {
        FileRecord::Inline(b) => Ok(Arc::new(b.clone())),
        FileRecord::Block { bp, .. } | FileRecord::Prealloc { data: Some(bp), .. } => {
            Ok(pool.read_data(bp, true)?)
        }
        FileRecord::Prealloc { data: None, .. } => Ok(Arc::new(Vec::new())),
    }
}

/// Read `[offset, offset + size)` of a file of `r.size` bytes: its dirty
/// records where it has them, the tree's records elsewhere. The file's
/// record size comes from `r`, `dataset_rs` when it names none.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read(
    tree: &Tree,
    pool: &Pool,
    dirty: &DirtyData,
    ino: u64,
    r: &InodeRecord,
    dataset_rs: u64,
    offset: u64,
    size: u32,
) -> Result<Vec<u8>> {
    let record_size = file_record_size(r, dataset_rs);
    if offset >= r.size {
        return Ok(Vec::new());
    }
    let end = r.size.min(offset.saturating_add(size as u64));
    let mut out = vec![0u8; (end - offset) as usize];
    let mut copy = |start: u64, bytes: &[u8]| {
        let (lo, hi) = (start.max(offset), (start + bytes.len() as u64).min(end));
        if lo < hi {
            out[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&bytes[(lo - start) as usize..(hi - start) as usize]);
        }
    };
    let first = offset / record_size * record_size;
    for (start, rec) in records_in(tree, ino, first, end)? {
        if dirty.get(ino, start).is_none() {
            copy(start, &record_data(pool, &rec)?);
        }
    }
    for (start, d) in dirty.range(ino, first, end) {
        copy(start, &d.bytes);
    }
    Ok(out)
}

/// Queue the blocks a sequential reader of `ino` (`dataset_rs` being the
/// dataset's record size) will want after its read of `[offset, offset +
/// len)`, if it is one.
pub(crate) fn read_ahead(
    tree: &Tree,
    dirty: &DirtyData,
    ahead: &ReadAhead,
    (ds, ino, dataset_rs): (u64, u64, u64),
    r: &InodeRecord,
    offset: u64,
    len: u64,
) -> Result<()> {
    let rs = file_record_size(r, dataset_rs);
    let Some(plan) = ahead.plan((ds, ino), offset, len, rs, r.size) else {
        return Ok(());
    };
    for (start, rec) in records_in(tree, ino, plan.from, plan.to)? {
        let bp = match rec {
            FileRecord::Block { bp, .. } | FileRecord::Prealloc { data: Some(bp), .. } => bp,
            _ => continue,
        };
        if dirty.get(ino, start).is_none() && !ahead.queue(bp) {
            break;
        }
    }
    Ok(())
}

/// `(start, end)` of `ino`'s records with a start in `[lo, hi)`, dirty
/// ones in place of the tree's, in order.
fn spans(tree: &Tree, dirty: &DirtyData, ino: u64, lo: u64, hi: u64) -> Result<Vec<(u64, u64)>> {
    let mut out: Vec<(u64, u64)> = records_in(tree, ino, lo, hi)?
        .into_iter()
        .filter(|(start, _)| dirty.get(ino, *start).is_none())
        .map(|(start, rec)| (start, start + rec.len() as u64))
        .collect();
    out.extend(
        dirty
            .range(ino, lo, hi)
            .map(|(start, d)| (start, start + d.span_len())),
    );
    out.sort_unstable();
    Ok(out)
}

/// SEEK_DATA: the first data at or after `offset`; `None` past the end
/// or when only a hole follows.
pub(crate) fn seek_data(
    (tree, dirty): (&Tree, &DirtyData),
    ino: u64,
    r: &InodeRecord,
    dataset_rs: u64,
    offset: u64,
) -> Result<Option<u64>> {
    let record_size = file_record_size(r, dataset_rs);
    if offset >= r.size {
        return Ok(None);
    }
    let first = offset / record_size * record_size;
    for (start, end) in spans(tree, dirty, ino, first, r.size)? {
        if end > offset {
            return Ok(Some(start.max(offset)));
        }
    }
    Ok(None)
}

/// SEEK_HOLE: the first hole at or after `offset`; the end of file is
/// one; `None` at or past the end.
pub(crate) fn seek_hole(
    (tree, dirty): (&Tree, &DirtyData),
    ino: u64,
    r: &InodeRecord,
    dataset_rs: u64,
    offset: u64,
) -> Result<Option<u64>> {
    let record_size = file_record_size(r, dataset_rs);
    if offset >= r.size {
        return Ok(None);
    }
    let mut pos = offset;
    let first = offset / record_size * record_size;
    for (start, end) in spans(tree, dirty, ino, first, r.size)? {
        if end <= pos {
            continue;
        }
        if start > pos {
            break;
        }
        pos = end;
    }
    Ok(Some(pos.min(r.size)))
}

/// Number of records of a file (for sizing a delete's transaction).
pub(crate) fn record_count(tree: &Tree, dirty: &DirtyData, ino: u64) -> Result<u64> {
    let mut n = dirty.starts(ino, 0, u64::MAX).len() as u64;
    let (lo, hi) = (
        keys::item_start(ino, keys::DATA),
        keys::item_end(ino, keys::DATA),
    );
    for item in tree.range(
        std::ops::Bound::Included(&lo[..]),
        std::ops::Bound::Excluded(&hi[..]),
    ) {
        item?;
        n += 1;
    }
    Ok(n)
}

/// `r.alloc_bytes` as it will be once `ino`'s dirty records are stored
/// (`st_blocks`): each dirty record compressed as the commit will
/// compress it, in place of its estimate. Costs a compression per dirty
/// record the first time it is asked after a change (`StoredMemo`), so
/// only a file written since the last commit pays it, and once.
pub(crate) fn stored_alloc(
    tree: &Tree,
    pool: &Pool,
    dirty: &DirtyData,
    ino: u64,
    r: &InodeRecord,
) -> Result<u64> {
    let mut recs = dirty.range(ino, 0, u64::MAX).peekable();
    if recs.peek().is_none() {
        return Ok(r.alloc_bytes);
    }
    let compression = match tree.get(&keys::meta())? {
        Some(v) => DatasetMeta::decode(&v)?.compression,
        None => return Ok(r.alloc_bytes),
    };
    let (bs, inline) = (pool.block_size() as u64, inline_max(tree));
    let mut alloc = r.alloc_bytes as i128;
    for (start, d) in recs {
        let stored = d.stored_bytes(start, inline, compression, bs);
        alloc += stored as i128 - d.est as i128;
    }
    Ok(alloc.max(0) as u64)
}

/// The dataset's reserved bytes as they will be once its dirty records
/// are stored: a record written over a preallocated one moves part of its
/// share into its block at the commit (for tests that compare the
/// reservation across a crash, whatever was settled).
pub(crate) fn settled_reserved(tree: &Tree, pool: &Pool, dirty: &DirtyData) -> Result<u64> {
    let Some(v) = tree.get(&keys::meta())? else {
        return Ok(0);
    };
    let meta = DatasetMeta::decode(&v)?;
    let rule = meta.share_rule(pool.block_size(), pool.config().metadata_copies);
    let mut reserved = meta.reserved as i128;
    for ((ino, start), d) in dirty.iter().filter(|(_, d)| d.held.is_some()) {
        let old = super::file_data::get_record(tree, ino, start)?;
        reserved -= old.map_or(0, |o| o.reserved(rule)) as i128;
        reserved += d.settled_share(rule, meta.compression) as i128;
    }
    Ok(reserved.max(0) as u64)
}
