//! Regular file data: records of up to the file's record size (its
//! inode's own, else the dataset's: [`InodeRecord::record_size_bytes`]),
//! keyed by their offset. Record 0 of a small file lives inline in the tree; every
//! other record is one data block (compressed and checksummed by the pool).
//!
//! Invariants: every record of a file has the file's one record size
//! (it changes only while the file holds at most one record, see
//! `record_size.rs`); a record covers `[start, start + len)` with `start` a
//! multiple of the record size and `start + len <= size` of the file; a
//! missing record, or the part of a record past its `len`, is a hole and
//! reads as zeroes; a record never holds only zeroes (it is dropped and
//! becomes a hole, as ZFS does with compression on). A partial write reads
//! the old record, changes it and writes a new block (copy-on-write); the
//! old block is freed through the pool's deferral.
//!
//! Preallocated records (fallocate) read as their data (none at first)
//! then zeroes, and hold back, in the dataset meta's `reserved` counter,
//! the room their block may still grow into: the counter is always the
//! sum of [`FileRecord::reserved`] over them, and every path that changes
//! or drops a record goes through `account_out`/`account_in` (or
//! `free_all`) so it stays exact. A write inside a preallocated record
//! allocates its block from the reservation (class `Reserved`, so the
//! pool's own reserve is not in its way) and the record stays
//! preallocated, so rewrites inside it are paid for too (as ext4 keeps
//! its blocks); a write reaching past it makes it an ordinary record. A
//! preallocated record may lie past the end of file (KEEP_SIZE); truncate
//! drops it like data.

use aegis_btree::Tree;
use std::sync::Arc;

use aegis_pool::{AllocClass, BlockPtr, BlockType, Pool, WriteProps};

use super::dirty_data::{kept, DirtyData, DirtyRecord, Estimator};
use super::file_prealloc::resize_prealloc;
pub(crate) use super::file_prealloc::{prealloc_cover, prealloc_need, preallocate};
pub(crate) use super::file_read::{
    read, read_ahead, record_count, seek_data, seek_hole, settled_reserved, stored_alloc,
};
use super::{
    keys, DatasetMeta, FileRecord, InodeRecord, ShareRule, FEATURE_PREALLOC, FEATURE_PREALLOC_TREE,
};
use crate::error::{FsError, Result};
use crate::tx::{scan, Tx};

/// Largest inline record: what fits a tree value, at most 4 KiB.
pub(crate) fn inline_max(tree: &Tree) -> usize {
    tree.max_value_len(17).saturating_sub(5).min(4096)
}

/// A record's bytes for a writer that is about to replace it: from the
/// cache when there, without filling it (the block is on its way out).
fn record_bytes(pool: &Pool, rec: &FileRecord) -> Result<Vec<u8>> {
    match rec {
        FileRecord::Inline(b) => Ok(b.clone()),
        FileRecord::Block { bp, .. } | FileRecord::Prealloc { data: Some(bp), .. } => {
            let d = pool.read_data(bp, false)?;
            Ok(Arc::try_unwrap(d).unwrap_or_else(|shared| (*shared).clone()))
        }
        FileRecord::Prealloc { data: None, .. } => Ok(Vec::new()),
    }
}

/// `r`'s record size, `dataset_rs` being the dataset's.
pub(super) fn file_record_size(r: &InodeRecord, dataset_rs: u64) -> u64 {
    r.record_size_bytes(dataset_rs as u32)
}

pub(crate) fn get_record(tree: &Tree, ino: u64, start: u64) -> Result<Option<FileRecord>> {
    match tree.get(&keys::data(ino, start))? {
        Some(v) => Ok(Some(FileRecord::decode(&v)?)),
        None => Ok(None),
    }
}

/// Records of `ino` whose start lies in `[lo, hi)`, in order.
pub(crate) fn records_in(
    tree: &Tree,
    ino: u64,
    lo: u64,
    hi: u64,
) -> Result<Vec<(u64, FileRecord)>> {
    let end = if hi == u64::MAX {
        keys::item_end(ino, keys::DATA)
    } else {
        keys::data(ino, hi)
    };
    let mut out = Vec::new();
    for (k, v) in scan(tree, &keys::data(ino, lo), &end)? {
        let start = keys::data_offset(&k)
            .ok_or_else(|| FsError::Damaged(format!("inode {ino}: malformed data key")))?;
        out.push((start, FileRecord::decode(&v)?));
    }
    Ok(out)
}

/// Bytes `rec` counts in `st_blocks`: its block, and a preallocated
/// record's share.
fn alloc_of(rec: &FileRecord, block_size: u32) -> u64 {
    match rec {
        FileRecord::Inline(_) => 0,
        FileRecord::Block { bp, .. } => bp.allocated_size(block_size),
        FileRecord::Prealloc { data, .. } => {
            data.as_ref().map_or(0, |bp| bp.allocated_size(block_size)) + rec.data_share(block_size)
        }
    }
}

/// The block a record's bytes live in, if any.
fn block_of(rec: &FileRecord) -> Option<&BlockPtr> {
    match rec {
        FileRecord::Block { bp, .. } => Some(bp),
        FileRecord::Prealloc { data, .. } => data.as_ref(),
        FileRecord::Inline(_) => None,
    }
}

/// The record size of file `r` in the transaction's dataset.
pub(crate) fn file_rs(tx: &Tx<'_>, r: &InodeRecord) -> u64 {
    r.record_size_bytes(tx.meta.record_size)
}

/// The share rule of the transaction's dataset.
fn share_rule(tx: &Tx<'_>) -> ShareRule {
    let pool = tx.pool_ref();
    tx.meta
        .share_rule(pool.block_size(), pool.config().metadata_copies)
}

/// The rule the next reservation of a dataset with `meta` will use: with
/// nothing reserved, no record's share can change meaning, so the first
/// one switches the dataset to the newest rule.
pub(super) fn next_share_rule(meta: &DatasetMeta, pool: &Pool) -> ShareRule {
    let tree = meta.reserved == 0 || meta.features & FEATURE_PREALLOC_TREE != 0;
    ShareRule::new(pool.block_size(), pool.config().metadata_copies, tree)
}

/// Release the reservation `held`.
fn unreserve(tx: &mut Tx<'_>, held: u64) {
    if held > 0 {
        tx.meta.reserved = tx.meta.reserved.saturating_sub(held);
        tx.meta_dirty = true;
    }
}

/// Take `rec`'s share of `st_blocks` and of the reservation out (its
/// block stays: for a record that only changes its length).
pub(super) fn account_out(tx: &mut Tx<'_>, r: &mut InodeRecord, rec: &FileRecord) {
    let bs = tx.pool_ref().block_size();
    r.alloc_bytes = r.alloc_bytes.saturating_sub(alloc_of(rec, bs));
    let held = rec.reserved(share_rule(tx));
    unreserve(tx, held);
}

/// Put `rec`'s share of `st_blocks` and of the reservation in; a
/// preallocated record sets the dataset's `prealloc` feature (and
/// `prealloc_tree` when nothing is reserved yet).
pub(super) fn account_in(tx: &mut Tx<'_>, r: &mut InodeRecord, rec: &FileRecord) {
    let bs = tx.pool_ref().block_size();
    r.alloc_bytes += alloc_of(rec, bs);
    if let FileRecord::Prealloc { .. } = rec {
        if tx.meta.reserved == 0 {
            tx.meta.features |= FEATURE_PREALLOC_TREE;
        }
        tx.meta.features |= FEATURE_PREALLOC;
        tx.meta.reserved += rec.reserved(share_rule(tx));
        tx.meta_dirty = true;
    }
}

/// `old` stops being used: out of the accounts, its block freed once
/// the change stands.
pub(super) fn forget(tx: &mut Tx<'_>, r: &mut InodeRecord, old: &FileRecord) {
    account_out(tx, r, old);
    if let Some(bp) = block_of(old) {
        tx.to_free.push(bp.clone());
    }
}

/// Remove the record `old` at `start` whole (punch, truncate, collapse):
/// its reservation goes with it.
fn drop_record(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    start: u64,
    old: FileRecord,
) -> Result<()> {
    forget(tx, r, &old);
    tx.tree.remove(&keys::data(ino, start))?;
    Ok(())
}

/// Replace the record `old` at `start` with `bytes`: see [`store`].
fn put_record(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    start: u64,
    old: Option<FileRecord>,
    bytes: Vec<u8>,
) -> Result<()> {
    let held = match &old {
        Some(FileRecord::Prealloc { len, .. }) => Some(*len),
        _ => None,
    };
    if let Some(old) = &old {
        forget(tx, r, old);
    }
    let class = match held {
        Some(_) => AllocClass::Reserved,
        None => AllocClass::Normal,
    };
    store(tx, ino, r, start, (held, class), &bytes, old.is_some())
}

/// Turn `ino`'s dirty records with a start in `[lo, hi)` into tree
/// records within this change, so that what follows may work on the
/// tree alone. Their blocks were paid for when they became dirty, and
/// this is the commit's work brought forward, so they may use the pool's
/// reserve (class `Reserved`).
pub(crate) fn settle(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    lo: u64,
    hi: u64,
) -> Result<()> {
    for start in tx.dirty.starts(ino, lo, hi) {
        // Taken out whole and handed to the undo log once stored (not
        // copied for it): a commit settles every dirty byte of a txg.
        let Some(d) = tx.dirty.take((ino, start)) else {
            continue;
        };
        let stored = settle_one(tx, ino, r, start, &d);
        DirtyData::removed((ino, start), d, &mut tx.dirty_undo);
        stored?;
    }
    Ok(())
}

/// Store dirty record `d` at `start` (taken out of the dirty set).
fn settle_one(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    start: u64,
    d: &DirtyRecord,
) -> Result<()> {
    // The tree's figure back, then the record stored as any rewrite.
    r.alloc_bytes = r.alloc_bytes.saturating_sub(d.est) + d.old_alloc;
    let old = get_record(tx.tree, ino, start)?;
    if let Some(o) = &old {
        forget(tx, r, o);
    }
    let existed = old.is_some();
    // A preallocated record stays one, its block paid by its share.
    let held = match old {
        Some(FileRecord::Prealloc { len, .. }) => Some(len),
        _ => None,
    };
    store(
        tx,
        ino,
        r,
        start,
        (held, AllocClass::Reserved),
        &d.bytes,
        existed,
    )
}

/// Settle the dirty records of `ino` in `[lo, hi)` that lie over
/// preallocated ones, before an operation that changes or drops those.
fn settle_held(tx: &mut Tx<'_>, ino: u64, r: &mut InodeRecord, lo: u64, hi: u64) -> Result<()> {
    let held: Vec<u64> = tx
        .dirty
        .range(ino, lo, hi)
        .filter(|(_, d)| d.held.is_some())
        .map(|(s, _)| s)
        .collect();
    for start in held {
        settle(tx, ino, r, start, start + 1)?;
    }
    Ok(())
}

/// Settle every dirty record of the dataset (the commit's first step):
/// each file's records become blocks and its inode gets exact accounts.
/// The records of an inode that is gone (which a delete would have
/// discarded) are dropped with a warning.
pub(crate) fn settle_all(tx: &mut Tx<'_>) -> Result<()> {
    super::settle_encode::encode_all(tx);
    for ino in tx.dirty.inodes() {
        let mut r = match super::directory::read_inode(tx.tree, ino) {
            Ok(r) => r,
            Err(FsError::NoInode(_)) => {
                tracing::warn!(ino, "dirty records of a deleted inode dropped");
                discard(tx, ino, None, 0);
                continue;
            }
            Err(e) => return Err(e),
        };
        settle(tx, ino, &mut r, 0, u64::MAX)?;
        tx.put_inode(ino, &r)?;
    }
    // Records of deleted inodes were dropped unsettled.
    tx.encoded.clear();
    Ok(())
}

/// Zero `zero` of the dirty record at `start` and cut it to `len`,
/// keeping `alloc_bytes`' estimate in step.
fn reshape_dirty(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    start: u64,
    zero: Option<(usize, usize)>,
    len: usize,
) {
    let Some(d) = tx.dirty.get(ino, start) else {
        return;
    };
    let len = d.bytes.len().min(len);
    let est = estimator(tx);
    let (before, after) = tx
        .dirty
        .reshape((ino, start), (zero, len), est, &mut tx.dirty_undo);
    r.alloc_bytes = r.alloc_bytes.saturating_sub(before) + after;
}

/// How this dataset's dirty records count in `alloc_bytes`.
fn estimator(tx: &Tx<'_>) -> Estimator {
    Estimator {
        block_size: tx.pool_ref().block_size(),
        inline_max: inline_max(tx.tree),
    }
}

/// Drop `ino`'s dirty records with a start at or past `lo` unwritten
/// (truncate, delete): `alloc_bytes` gets the tree's figure back.
fn discard(tx: &mut Tx<'_>, ino: u64, r: Option<&mut InodeRecord>, lo: u64) {
    discard_range(tx, ino, r, lo, u64::MAX)
}

/// Drop `ino`'s dirty records with a start in `[lo, hi)` unwritten.
pub(super) fn discard_range(
    tx: &mut Tx<'_>,
    ino: u64,
    r: Option<&mut InodeRecord>,
    lo: u64,
    hi: u64,
) {
    let mut back = 0i128;
    for start in tx.dirty.starts(ino, lo, hi) {
        if let Some(d) = tx.dirty.take((ino, start)) {
            back += d.old_alloc as i128 - d.est as i128;
            DirtyData::removed((ino, start), d, &mut tx.dirty_undo);
        }
    }
    if let Some(r) = r {
        r.alloc_bytes = (r.alloc_bytes as i128 + back).max(0) as u64;
    }
}

/// Store `bytes` (trailing zeroes trimmed) as the record at `start`, whose
/// old record (if `existed`) is already forgotten, and account it in `r`.
/// A record preallocated for `held` bytes stays preallocated while the
/// bytes fit inside it, so its block plus its share stay its length in
/// whole blocks (`st_blocks` does not move) and every later write inside
/// it, a rewrite too, is paid for; its block is allocated from the
/// reservation (class `Reserved`: the pool's own reserve is not in its
/// way). Bytes that reach past it make an ordinary record and give the
/// share back. Otherwise all zeroes leave a hole.
pub(super) fn store(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    start: u64,
    (held, class): (Option<u32>, AllocClass),
    bytes: &[u8],
    existed: bool,
) -> Result<()> {
    let bytes = kept(bytes);
    let key = keys::data(ino, start);
    let stays = held.filter(|&l| bytes.len() <= l as usize);
    if bytes.is_empty() && stays.is_none() {
        if existed {
            tx.tree.remove(&key)?;
        }
        return Ok(());
    }
    let rec = if held.is_none() && start == 0 && bytes.len() <= inline_max(tx.tree) {
        FileRecord::Inline(bytes.to_vec())
    } else {
        let data = match bytes.is_empty() {
            true => None,
            false => Some(write_data(tx, (ino, start), bytes, class)?),
        };
        match (stays, data) {
            (Some(len), data) => FileRecord::Prealloc { len, data },
            (None, Some(bp)) => FileRecord::Block {
                len: bytes.len() as u32,
                bp,
            },
            (None, None) => unreachable!("empty bytes returned above"),
        }
    };
    account_in(tx, r, &rec);
    tx.tree.insert(&key, &rec.encode())?;
    Ok(())
}

/// How this dataset stores a data block.
pub(crate) fn data_props(tx: &Tx<'_>, class: AllocClass) -> WriteProps {
    WriteProps {
        block_type: BlockType::Data,
        level: 0,
        copies: 1,
        checksum: tx.pool_ref().config().checksum,
        compression: tx.meta.compression,
        class,
    }
}

/// Write the bytes of record `key` as a data block of this change, with
/// the encoding the commit made of them beforehand if there is one
/// (`settle_encode.rs`).
fn write_data(
    tx: &mut Tx<'_>,
    key: (u64, u64),
    bytes: &[u8],
    class: AllocClass,
) -> Result<BlockPtr> {
    let pool = tx.pool_ref().clone();
    let props = data_props(tx, class);
    let bp = match tx.encoded.remove(&key) {
        Some(encoded) => pool.write_encoded(bytes, &props, encoded)?,
        None => pool.write_block(bytes, &props)?,
    };
    tx.written.push(bp.clone());
    Ok(bp)
}

/// Bytes a write of `len` bytes may allocate, for the ENOSPC check made
/// before anything changes: every touched record rewritten whole.
pub fn write_size_bytes(record_size: u64, offset: u64, len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    let first = offset / record_size;
    let last = (offset + len - 1) / record_size;
    (last - first + 1) * record_size
}

/// Write `data` at `offset`, growing `r.size` as needed.
pub(crate) fn write(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    offset: u64,
    data: &[u8],
) -> Result<()> {
    let rs = file_rs(tx, r);
    let end = offset + data.len() as u64;
    let mut pos = offset;
    while pos < end {
        let start = pos / rs * rs;
        let piece_end = end.min(start + rs);
        let src = &data[(pos - offset) as usize..(piece_end - offset) as usize];
        write_piece(tx, ino, r, start, pos, src)?;
        pos = piece_end;
    }
    r.size = r.size.max(end);
    Ok(())
}

/// Write `src` at `pos` of the record at `start`: into its dirty record,
/// making one if needed. A dirty record over a preallocated one stays
/// inside its length: a write reaching past it settles the record and
/// takes the tree's path (the record becomes an ordinary one).
fn write_piece(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    start: u64,
    pos: u64,
    src: &[u8],
) -> Result<()> {
    let at = (pos - start) as usize;
    let end = (at + src.len()) as u64;
    let est = estimator(tx);
    if let Some(d) = tx.dirty.get(ino, start) {
        if d.held.is_none_or(|len| end <= len as u64) {
            let (before, after) = tx
                .dirty
                .patch((ino, start), at, src, est, &mut tx.dirty_undo);
            r.alloc_bytes = r.alloc_bytes.saturating_sub(before) + after;
            return Ok(());
        }
        settle(tx, ino, r, start, start + 1)?;
    }
    let old = get_record(tx.tree, ino, start)?;
    let held = match old {
        Some(FileRecord::Prealloc { len, .. }) => Some(len),
        _ => None,
    };
    if matches!(old, Some(FileRecord::Prealloc { data: None, .. })) && src.iter().all(|&b| b == 0) {
        // Zeroes over zeroes: the record keeps its reservation (a
        // program writing zeroes over its preallocation, as `dd` does,
        // must not give it away before its real writes come).
        return Ok(());
    }
    let bytes = patched(tx, old.as_ref(), at, src)?;
    let outgrows = held.is_some_and(|len| end > len as u64);
    if outgrows || tx.write_through {
        return put_record(tx, ino, r, start, old, bytes);
    }
    if let (Some(_), Some(o)) = (held, &old) {
        // The leaf holding a preallocated record is copied now, as a
        // write through the tree would, so the space check counts it among
        // the dirty nodes; the commit only swaps the entry in place.
        tx.tree.insert(&keys::data(ino, start), &o.encode())?;
    }
    let old_alloc = old.as_ref().map_or(0, |o| alloc_of(o, est.block_size));
    let mut rec = DirtyRecord {
        est: 0,
        bytes,
        old_alloc,
        // Over a preallocated record, its share pays for the new block
        // but for the room of the old one, which stays allocated until the
        // commit has replaced it.
        reserve: match (held, &old) {
            (Some(_), Some(o)) => block_of(o).map_or(0, |bp| bp.allocated_size(est.block_size)),
            _ => file_rs(tx, r),
        },
        stored: Default::default(),
        held,
    };
    rec.est = rec.estimate(start, est);
    r.alloc_bytes = r.alloc_bytes.saturating_sub(old_alloc) + rec.est;
    tx.dirty.insert((ino, start), rec, &mut tx.dirty_undo);
    Ok(())
}

/// The record `old`'s bytes with `src` written at `at` (the old bytes are
/// not read when `src` replaces all of them).
fn patched(tx: &Tx<'_>, old: Option<&FileRecord>, at: usize, src: &[u8]) -> Result<Vec<u8>> {
    if at == 0 && src.len() >= old.map_or(0, |o| o.len() as usize) {
        return Ok(src.to_vec());
    }
    let mut b = match old {
        Some(o) => record_bytes(tx.pool_ref(), o)?,
        None => Vec::new(),
    };
    let need = at + src.len();
    if b.len() < need {
        b.resize(need, 0);
    }
    b[at..need].copy_from_slice(src);
    Ok(b)
}

/// Zero `[lo, hi)` (a hole afterwards), keeping the size.
pub(crate) fn punch(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    lo: u64,
    hi: u64,
) -> Result<()> {
    let rs = file_rs(tx, r);
    let hi = hi.min(r.size);
    if lo >= hi {
        return Ok(());
    }
    let first = lo / rs * rs;
    settle_held(tx, ino, r, first, hi)?;
    // Dirty records are zeroed where they are (settling trims zeroes to
    // holes); the tree's records under them are theirs to replace.
    for start in tx.dirty.starts(ino, first, hi) {
        let a = (lo.max(start) - start) as usize;
        let z = (hi - start).min(rs) as usize;
        reshape_dirty(tx, ino, r, start, Some((a, z)), usize::MAX);
    }
    for (start, rec) in records_in(tx.tree, ino, first, hi)? {
        let rec_end = start + rec.len() as u64;
        if tx.dirty.get(ino, start).is_some() {
            continue;
        }
        if lo <= start && rec_end <= hi {
            drop_record(tx, ino, r, start, rec)?;
        } else if matches!(rec, FileRecord::Prealloc { data: None, .. }) {
            // Part of a preallocated record already reads as zeroes; the
            // reservation is per record, so it stays whole.
        } else if lo < rec_end {
            // A preallocated record's data may end before the record does.
            let mut b = record_bytes(tx.pool_ref(), &rec)?;
            let (a, z) = (
                (lo.max(start) - start) as usize,
                ((hi.min(rec_end) - start) as usize).min(b.len()),
            );
            if a < z {
                b[a..z].fill(0);
            }
            put_record(tx, ino, r, start, Some(rec), b)?;
        }
    }
    Ok(())
}

/// Set the size to `size`: shrinking drops whole records past it and cuts
/// the one it falls in, so bytes past the new end never reappear.
/// Preallocated records past the new end go too, even those KEEP_SIZE
/// put past the old end (ext4 frees them on a shrinking truncate); the
/// one the end falls in keeps its share up to the end.
pub(crate) fn truncate(tx: &mut Tx<'_>, ino: u64, r: &mut InodeRecord, size: u64) -> Result<()> {
    if size < r.size {
        let rs = file_rs(tx, r);
        let first = size / rs * rs;
        if first < size {
            settle_held(tx, ino, r, first, first + 1)?;
        }
        // Dirty records past the end go unwritten, the one the end falls
        // in is cut where it is; the tree's records are dropped as ever,
        // but the one under a dirty record is that record's to replace.
        discard(tx, ino, Some(r), size);
        if first < size && tx.dirty.get(ino, first).is_some() {
            reshape_dirty(tx, ino, r, first, None, (size - first) as usize);
        }
        for (start, rec) in records_in(tx.tree, ino, first, u64::MAX)? {
            if start >= size {
                drop_record(tx, ino, r, start, rec)?;
            } else if tx.dirty.get(ino, start).is_some() {
                continue;
            } else if start + rec.len() as u64 > size {
                let len = (size - start) as u32;
                let mut b = record_bytes(tx.pool_ref(), &rec)?;
                b.truncate(len as usize);
                match rec {
                    FileRecord::Prealloc { data: None, .. } => {
                        let new = FileRecord::Prealloc { len, data: None };
                        resize_prealloc(tx, ino, r, start, &rec, new)?;
                    }
                    FileRecord::Prealloc { .. } => {
                        forget(tx, r, &rec);
                        let held = (Some(len), AllocClass::Reserved);
                        store(tx, ino, r, start, held, &b, true)?;
                    }
                    _ => put_record(tx, ino, r, start, Some(rec), b)?,
                }
            }
        }
    }
    r.size = size;
    Ok(())
}

/// COLLAPSE_RANGE: drop the records of `[lo, lo + len)` and move every
/// later record down by `len` (both multiples of the record size, checked
/// by the caller), lowest first so no move lands on a record not yet moved.
pub(crate) fn collapse(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    lo: u64,
    len: u64,
) -> Result<()> {
    let hi = lo + len;
    settle(tx, ino, r, lo, u64::MAX)?;
    for (start, rec) in records_in(tx.tree, ino, lo, hi)? {
        drop_record(tx, ino, r, start, rec)?;
    }
    for (start, rec) in records_in(tx.tree, ino, hi, u64::MAX)? {
        tx.tree.remove(&keys::data(ino, start))?;
        tx.tree
            .insert(&keys::data(ino, start - len), &rec.encode())?;
    }
    r.size = r.size.saturating_sub(len);
    Ok(())
}

/// INSERT_RANGE: move every record at or past `lo` up by `len` (both
/// multiples of the record size, the new size checked by the caller),
/// highest first, leaving a hole. An inline record only moves when `lo`
/// is 0, and then becomes a block: inline records live at offset 0 only.
pub(crate) fn insert(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    lo: u64,
    len: u64,
) -> Result<()> {
    settle(tx, ino, r, lo, u64::MAX)?;
    let mut recs = records_in(tx.tree, ino, lo, u64::MAX)?;
    recs.reverse();
    for (start, rec) in recs {
        tx.tree.remove(&keys::data(ino, start))?;
        if let FileRecord::Inline(bytes) = rec {
            put_record(tx, ino, r, start + len, None, bytes)?;
        } else {
            tx.tree
                .insert(&keys::data(ino, start + len), &rec.encode())?;
        }
    }
    r.size += len;
    Ok(())
}

/// Free every record of a file being deleted.
pub(crate) fn free_all(tx: &mut Tx<'_>, ino: u64) -> Result<()> {
    discard(tx, ino, None, 0);
    let items = scan(
        tx.tree,
        &keys::item_start(ino, keys::DATA),
        &keys::item_end(ino, keys::DATA),
    )?;
    for (k, v) in items {
        let rec = FileRecord::decode(&v)?;
        let held = rec.reserved(share_rule(tx));
        unreserve(tx, held);
        if let Some(bp) = block_of(&rec) {
            tx.to_free.push(bp.clone());
        }
        tx.tree.remove(&k)?;
    }
    Ok(())
}

impl Tx<'_> {
    /// Write `data` at `offset` of file `ino` (record `r`, which the
    /// caller writes back), growing its size as needed.
    pub fn write_file(
        &mut self,
        ino: u64,
        r: &mut InodeRecord,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        write(self, ino, r, offset, data)
    }

    /// Zero `[lo, hi)` of file `ino` (a hole afterwards), keeping its size.
    pub fn punch_file(&mut self, ino: u64, r: &mut InodeRecord, lo: u64, hi: u64) -> Result<()> {
        punch(self, ino, r, lo, hi)
    }

    /// Set file `ino`'s size, dropping the data past a smaller one.
    pub fn truncate_file(&mut self, ino: u64, r: &mut InodeRecord, size: u64) -> Result<()> {
        truncate(self, ino, r, size)
    }

    /// Preallocate `[lo, hi)` of file `ino` (fallocate mode 0 or
    /// KEEP_SIZE): holes in it become preallocated records that hold back
    /// the space of their first write. The size is the caller's.
    pub fn preallocate_file(
        &mut self,
        ino: u64,
        r: &mut InodeRecord,
        lo: u64,
        hi: u64,
    ) -> Result<()> {
        preallocate(self, ino, r, lo, hi)
    }

    /// Remove `[lo, lo + len)` from file `ino`, moving what follows down
    /// (COLLAPSE_RANGE; record-aligned, inside the file: the caller checks).
    pub fn collapse_file(
        &mut self,
        ino: u64,
        r: &mut InodeRecord,
        lo: u64,
        len: u64,
    ) -> Result<()> {
        collapse(self, ino, r, lo, len)
    }

    /// Insert a hole of `len` bytes at `lo` of file `ino`, moving what
    /// follows up (INSERT_RANGE; record-aligned: the caller checks).
    pub fn insert_file(&mut self, ino: u64, r: &mut InodeRecord, lo: u64, len: u64) -> Result<()> {
        insert(self, ino, r, lo, len)
    }

    /// Free every record of a file being deleted.
    pub(crate) fn free_file_data(&mut self, ino: u64) -> Result<()> {
        free_all(self, ino)
    }
}
