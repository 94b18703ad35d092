//! Per-object record size: the byte of the inode record that names it,
//! and the one rule for changing it.
//!
//! A regular file's records all have the file's one record size: reads
//! find the record holding an offset by rounding down to it, and fsck
//! checks every record against it. So, as ZFS does with a file's block
//! size, a file's record size may change only while the file holds at
//! most one record, at offset 0, no longer than the new size (an empty
//! file, or one smaller than both sizes); later it is refused and the
//! file keeps its records. A directory's record size only matters for
//! inheritance: new entries copy it (the caller does, when it builds the
//! inode). Other kinds have none.
//!
//! Storing the dataset's default size stores 0 (the default), so a file
//! system that never asked for another size keeps its old bytes; the
//! first non-zero shift sets the dataset's `recordsize` feature in the
//! same transaction, so no inode can name a size on disk without it.

use super::file_data::{get_record, settle};
use super::inode::record_shift_of;
use super::{keys, InodeRecord, FEATURE_RECORDSIZE};
use crate::error::{FsError, Result};
use crate::tx::Tx;

/// Does file `ino` hold a record (stored or dirty) starting at or past
/// offset 1?
fn has_record_past_zero(tx: &Tx<'_>, ino: u64) -> Result<bool> {
    if !tx.dirty.starts(ino, 1, u64::MAX).is_empty() {
        return Ok(true);
    }
    let (lo, hi) = (keys::data(ino, 1), keys::item_end(ino, keys::DATA));
    let mut items = tx.tree.range(
        std::ops::Bound::Included(&lo[..]),
        std::ops::Bound::Excluded(&hi[..]),
    );
    match items.next() {
        Some(item) => item.map(|_| true).map_err(Into::into),
        None => Ok(false),
    }
}

/// Length of file `ino`'s record at offset 0 (its dirty bytes if it has
/// them), 0 without one.
fn first_record_len(tx: &Tx<'_>, ino: u64) -> Result<u64> {
    if let Some(d) = tx.dirty.get(ino, 0) {
        return Ok(d.span_len());
    }
    Ok(get_record(tx.tree, ino, 0)?.map_or(0, |rec| rec.len() as u64))
}

impl Tx<'_> {
    /// May regular file `ino` (record `r`) take records of `bytes`? Only
    /// while it holds at most one record, at offset 0, of at most
    /// `bytes`. A dirty record 0 is stored first: its space was reserved
    /// for a record of the old size.
    pub fn record_size_fits(&mut self, ino: u64, r: &mut InodeRecord, bytes: u64) -> Result<bool> {
        if has_record_past_zero(self, ino)? || first_record_len(self, ino)? > bytes {
            return Ok(false);
        }
        settle(self, ino, r, 0, 1)?;
        Ok(true)
    }

    /// Give `r` the record size `bytes` (a power of two, 4 KiB … 1 MiB),
    /// setting the dataset's `recordsize` feature when it is not the
    /// default. The caller checks [`Tx::record_size_fits`] for a file and
    /// writes `r` back.
    pub fn set_record_size(&mut self, r: &mut InodeRecord, bytes: u64) -> Result<()> {
        let shift = record_shift_of(bytes)
            .ok_or_else(|| FsError::Invalid(format!("record size {bytes}")))?;
        r.record_shift = match bytes == self.meta.record_size as u64 {
            true => 0,
            false => shift,
        };
        if r.record_shift != 0 && self.meta.features & FEATURE_RECORDSIZE == 0 {
            self.meta.features |= FEATURE_RECORDSIZE;
            self.meta_dirty = true;
        }
        Ok(())
    }
}
