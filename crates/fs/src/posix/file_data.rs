//! Regular file data: records of up to the dataset's record size, keyed by
//! their offset. Record 0 of a small file lives inline in the tree; every
//! other record is one data block (compressed and checksummed by the pool).
//!
//! Invariants: a record covers `[start, start + len)` with `start` a
//! multiple of the record size and `start + len <= size` of the file; a
//! missing record, or the part of a record past its `len`, is a hole and
//! reads as zeroes; a record never holds only zeroes (it is dropped and
//! becomes a hole, as ZFS does with compression on). A partial write reads
//! the old record, changes it and writes a new block (copy-on-write); the
//! old block is freed through the pool's deferral.

use aegis_btree::Tree;
use aegis_pool::{AllocClass, BlockType, Pool, WriteProps};

use super::{keys, FileRecord, InodeRecord};
use crate::error::{FsError, Result};
use crate::tx::{scan, Tx};

/// Largest inline record: what fits a tree value, at most 4 KiB.
pub(crate) fn inline_max(tree: &Tree) -> usize {
    tree.max_value_len(17).saturating_sub(5).min(4096)
}

fn record_bytes(pool: &Pool, rec: &FileRecord) -> Result<Vec<u8>> {
    match rec {
        FileRecord::Inline(b) => Ok(b.clone()),
        FileRecord::Block { bp, .. } => Ok(pool.read_block(bp)?),
    }
}

fn get_record(tree: &Tree, ino: u64, start: u64) -> Result<Option<FileRecord>> {
    match tree.get(&keys::data(ino, start))? {
        Some(v) => Ok(Some(FileRecord::decode(&v)?)),
        None => Ok(None),
    }
}

/// Records of `ino` whose start lies in `[lo, hi)`, in order.
fn records_in(tree: &Tree, ino: u64, lo: u64, hi: u64) -> Result<Vec<(u64, FileRecord)>> {
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

fn alloc_of(rec: &FileRecord, block_size: u32) -> u64 {
    match rec {
        FileRecord::Inline(_) => 0,
        FileRecord::Block { bp, .. } => bp.allocated_size(block_size),
    }
}

/// Read `[offset, offset + size)` of a file of `r.size` bytes.
pub(crate) fn read(
    tree: &Tree,
    pool: &Pool,
    ino: u64,
    r: &InodeRecord,
    record_size: u64,
    offset: u64,
    size: u32,
) -> Result<Vec<u8>> {
    if offset >= r.size {
        return Ok(Vec::new());
    }
    let end = r.size.min(offset.saturating_add(size as u64));
    let mut out = vec![0u8; (end - offset) as usize];
    let first = offset / record_size * record_size;
    for (start, rec) in records_in(tree, ino, first, end)? {
        let bytes = record_bytes(pool, &rec)?;
        let (lo, hi) = (start.max(offset), (start + bytes.len() as u64).min(end));
        if lo < hi {
            out[(lo - offset) as usize..(hi - offset) as usize]
                .copy_from_slice(&bytes[(lo - start) as usize..(hi - start) as usize]);
        }
    }
    Ok(out)
}

/// Replace the record at `start` with `bytes` (trailing zeroes trimmed; all
/// zeroes removes it) and account the allocation change in `r`.
fn put_record(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    start: u64,
    old: Option<FileRecord>,
    mut bytes: Vec<u8>,
) -> Result<()> {
    let pool = tx.pool_ref().clone();
    let bs = pool.block_size();
    let keep = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    bytes.truncate(keep);
    let key = keys::data(ino, start);
    if let Some(old) = &old {
        r.alloc_bytes = r.alloc_bytes.saturating_sub(alloc_of(old, bs));
        if let FileRecord::Block { bp, .. } = old {
            tx.to_free.push(bp.clone());
        }
    }
    if bytes.is_empty() {
        if old.is_some() {
            tx.tree.remove(&key)?;
        }
        return Ok(());
    }
    let rec = if start == 0 && bytes.len() <= inline_max(tx.tree) {
        FileRecord::Inline(bytes)
    } else {
        let props = WriteProps {
            block_type: BlockType::Data,
            level: 0,
            copies: 1,
            checksum: pool.config().checksum,
            compression: tx.meta.compression,
            class: AllocClass::Normal,
        };
        let bp = pool.write_block(&bytes, &props)?;
        tx.written.push(bp.clone());
        FileRecord::Block {
            len: bytes.len() as u32,
            bp,
        }
    };
    r.alloc_bytes += alloc_of(&rec, bs);
    tx.tree.insert(&key, &rec.encode())?;
    Ok(())
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
    let rs = tx.meta.record_size as u64;
    let end = offset + data.len() as u64;
    let mut pos = offset;
    while pos < end {
        let start = pos / rs * rs;
        let piece_end = end.min(start + rs);
        let old = get_record(tx.tree, ino, start)?;
        let src = &data[(pos - offset) as usize..(piece_end - offset) as usize];
        let bytes =
            if pos == start && piece_end - start >= old.as_ref().map_or(0, |o| o.len() as u64) {
                // Whole new content of the record: no need to read the old one.
                src.to_vec()
            } else {
                let mut b = match &old {
                    Some(o) => record_bytes(tx.pool_ref(), o)?,
                    None => Vec::new(),
                };
                let need = (piece_end - start) as usize;
                if b.len() < need {
                    b.resize(need, 0);
                }
                b[(pos - start) as usize..need].copy_from_slice(src);
                b
            };
        put_record(tx, ino, r, start, old, bytes)?;
        pos = piece_end;
    }
    r.size = r.size.max(end);
    Ok(())
}

/// Zero `[lo, hi)` (a hole afterwards), keeping the size.
pub(crate) fn punch(
    tx: &mut Tx<'_>,
    ino: u64,
    r: &mut InodeRecord,
    lo: u64,
    hi: u64,
) -> Result<()> {
    let rs = tx.meta.record_size as u64;
    let hi = hi.min(r.size);
    if lo >= hi {
        return Ok(());
    }
    let first = lo / rs * rs;
    for (start, rec) in records_in(tx.tree, ino, first, hi)? {
        let rec_end = start + rec.len() as u64;
        if lo <= start && rec_end <= hi {
            put_record(tx, ino, r, start, Some(rec), Vec::new())?;
        } else if lo < rec_end {
            let mut b = record_bytes(tx.pool_ref(), &rec)?;
            let (a, z) = (
                (lo.max(start) - start) as usize,
                (hi.min(rec_end) - start) as usize,
            );
            b[a..z].fill(0);
            put_record(tx, ino, r, start, Some(rec), b)?;
        }
    }
    Ok(())
}

/// Set the size to `size`: shrinking drops whole records past it and cuts
/// the one it falls in, so bytes past the new end never reappear.
pub(crate) fn truncate(tx: &mut Tx<'_>, ino: u64, r: &mut InodeRecord, size: u64) -> Result<()> {
    if size < r.size {
        let rs = tx.meta.record_size as u64;
        let first = size / rs * rs;
        for (start, rec) in records_in(tx.tree, ino, first, u64::MAX)? {
            if start >= size {
                put_record(tx, ino, r, start, Some(rec), Vec::new())?;
            } else if start + rec.len() as u64 > size {
                let mut b = record_bytes(tx.pool_ref(), &rec)?;
                b.truncate((size - start) as usize);
                put_record(tx, ino, r, start, Some(rec), b)?;
            }
        }
    }
    r.size = size;
    Ok(())
}

/// Free every record of a file being deleted.
pub(crate) fn free_all(tx: &mut Tx<'_>, ino: u64) -> Result<()> {
    let items = scan(
        tx.tree,
        &keys::item_start(ino, keys::DATA),
        &keys::item_end(ino, keys::DATA),
    )?;
    for (k, v) in items {
        if let FileRecord::Block { bp, .. } = FileRecord::decode(&v)? {
            tx.to_free.push(bp);
        }
        tx.tree.remove(&k)?;
    }
    Ok(())
}

/// Number of records of a file (for sizing a delete's transaction).
pub(crate) fn record_count(tree: &Tree, ino: u64) -> Result<u64> {
    let mut n = 0;
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

/// SEEK_DATA: the first data at or after `offset`; `None` past the end
/// or when only a hole follows.
pub(crate) fn seek_data(
    tree: &Tree,
    ino: u64,
    r: &InodeRecord,
    record_size: u64,
    offset: u64,
) -> Result<Option<u64>> {
    if offset >= r.size {
        return Ok(None);
    }
    let first = offset / record_size * record_size;
    for (start, rec) in records_in(tree, ino, first, r.size)? {
        if start + rec.len() as u64 > offset {
            return Ok(Some(start.max(offset)));
        }
    }
    Ok(None)
}

/// SEEK_HOLE: the first hole at or after `offset`; the end of file is
/// one; `None` at or past the end.
pub(crate) fn seek_hole(
    tree: &Tree,
    ino: u64,
    r: &InodeRecord,
    record_size: u64,
    offset: u64,
) -> Result<Option<u64>> {
    if offset >= r.size {
        return Ok(None);
    }
    let mut pos = offset;
    let first = offset / record_size * record_size;
    for (start, rec) in records_in(tree, ino, first, r.size)? {
        let rec_end = start + rec.len() as u64;
        if rec_end <= pos {
            continue;
        }
        if start > pos {
            break;
        }
        pos = rec_end;
    }
    Ok(Some(pos.min(r.size)))
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

    /// Free every record of a file being deleted.
    pub(crate) fn free_file_data(&mut self, ino: u64) -> Result<()> {
        free_all(self, ino)
    }
}
