//! Reflinks: a range of one file's records shared into another file (or
//! elsewhere in the same one) by copying block pointers, not bytes.
//!
//! Only whole records can be shared, so a copy splits in three
//! ([`share_plan`]): bytes before the first record boundary the two
//! ranges have in common are copied, the records after it are shared,
//! and a partial record at the end is shared only when it is the
//! source's last (it ends at its end of file) and nothing follows it in
//! the target; otherwise it is copied too. Both files must have the same
//! record size for any sharing (an empty target takes the source's).
//!
//! A shared record's pointer is born in the open txg with the block's
//! own physical birth (`BlockPtr::cloned_at`), so snapshots and dead
//! lists treat it as a pointer of its own; the clone table counts the
//! block's extra pointer once the change stands (`clone_table.rs`). The
//! source's dirty records in the range are settled first, so every
//! shared record is a block. The change is not written to the intent
//! log (a log record naming blocks could replay onto freed ones), so an
//! fsync after it commits.

use aegis_pool::AllocClass;

use super::file_data::{account_in, discard_range, file_rs, forget, records_in, settle, store};
use super::{keys, FileRecord, InodeRecord};
use crate::error::{FsError, Result};
use crate::tx::sealed::Parts;
use crate::tx::{Tx, View};

/// How a copy of `len` bytes splits: `head` bytes copied, then `shared`
/// bytes shared record by record, then the rest copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharePlan {
    pub head: u64,
    pub shared: u64,
}

/// The plan for copying `len` bytes (within the source's size) from
/// `src_off` of a file of `src_size` bytes to `dst_off` of one of
/// `dst_size`, both of record size `rs`.
pub fn share_plan(
    rs: u64,
    (src_off, src_size): (u64, u64),
    (dst_off, dst_size): (u64, u64),
    len: u64,
) -> SharePlan {
    let none = SharePlan {
        head: len,
        shared: 0,
    };
    if rs == 0 || src_off % rs != dst_off % rs {
        return none;
    }
    let head = ((rs - src_off % rs) % rs).min(len);
    let rest = len - head;
    let whole = rest / rs * rs;
    let tail = rest - whole;
    // The source's last record ends in the range, and the target holds
    // nothing after it: the record may be shared as it is.
    let end = src_off + len;
    let tail_shared = tail > 0 && end >= src_size && dst_off + len >= dst_size;
    SharePlan {
        head,
        shared: whole + if tail_shared { tail } else { 0 },
    }
}

/// The records of `ino` that a share of `[lo, lo + len)` copies.
fn source_records(tx: &Tx<'_>, ino: u64, lo: u64, len: u64) -> Result<Vec<(u64, FileRecord)>> {
    records_in(tx.tree, ino, lo, lo + len)
}

/// Put the records `src` (of a range starting at `src_off`) at `dst_off`
/// of file `dst_ino`, whose `len` bytes from there they replace.
fn place(
    tx: &mut Tx<'_>,
    (dst_ino, rd): (u64, &mut InodeRecord),
    src: Vec<(u64, FileRecord)>,
    (src_off, dst_off): (u64, u64),
    len: u64,
) -> Result<()> {
    let rs = file_rs(tx, rd);
    let end = dst_off + len;
    discard_range(tx, dst_ino, Some(rd), dst_off, end);
    for (start, old) in records_in(tx.tree, dst_ino, dst_off, end)? {
        forget(tx, rd, &old);
        tx.tree.remove(&keys::data(dst_ino, start))?;
    }
    let txg = tx.pool_ref().open_txg();
    for (start, rec) in src {
        let at = start - src_off + dst_off;
        debug_assert_eq!(at % rs, 0, "a shared record lands on a record boundary");
        let bp = match rec {
            FileRecord::Block { bp, .. } | FileRecord::Prealloc { data: Some(bp), .. } => bp,
            FileRecord::Inline(bytes) => {
                store(
                    tx,
                    dst_ino,
                    rd,
                    at,
                    (None, AllocClass::Normal),
                    &bytes,
                    false,
                )?;
                continue;
            }
            FileRecord::Prealloc { data: None, .. } => continue,
        };
        let Some(copy) = bp.cloned_at(txg) else {
            return Err(FsError::Invalid(format!(
                "{} cannot be shared from txg {txg}",
                bp.describe()
            )));
        };
        let new = FileRecord::Block {
            len: copy.logical_size,
            bp: copy.clone(),
        };
        account_in(tx, rd, &new);
        tx.tree.insert(&keys::data(dst_ino, at), &new.encode())?;
        tx.shared.push(copy);
    }
    rd.size = rd.size.max(end);
    Ok(())
}

impl Tx<'_> {
    /// Share `len` bytes of file `src_ino` from `src_off` into file
    /// `dst_ino` at `dst_off`: a range [`share_plan`] calls shared (both
    /// offsets on record boundaries of the one record size both files
    /// have; the caller checks). Ranges in one file must not overlap.
    pub fn share_file_range(
        &mut self,
        (src_ino, src_off): (u64, u64),
        (dst_ino, dst_off): (u64, u64),
        len: u64,
    ) -> Result<()> {
        if !self.pool_ref().reflinks_enabled() {
            return Err(FsError::Invalid(
                "this pool was made before reflinks existed (feature `reflinks` is off); run `aegisfs upgrade` on it first".into(),
            ));
        }
        let mut rs_rec = self.inode(src_ino)?;
        settle(self, src_ino, &mut rs_rec, src_off, src_off + len)?;
        let src = source_records(self, src_ino, src_off, len)?;
        if src_ino == dst_ino {
            place(self, (dst_ino, &mut rs_rec), src, (src_off, dst_off), len)?;
            self.put_inode(src_ino, &rs_rec)?;
        } else {
            self.put_inode(src_ino, &rs_rec)?;
            let mut rd = self.inode(dst_ino)?;
            if file_rs(self, &rd) != file_rs(self, &rs_rec) {
                return Err(FsError::Invalid("the files' record sizes differ".into()));
            }
            place(self, (dst_ino, &mut rd), src, (src_off, dst_off), len)?;
            self.put_inode(dst_ino, &rd)?;
        }
        self.mark_unlogged();
        Ok(())
    }

    /// Give empty file `ino` the record size of file `like` (so a copy
    /// into it can share records). Returns whether they now match.
    pub fn match_record_size(&mut self, ino: u64, like: u64) -> Result<bool> {
        let want = file_rs(self, &self.inode(like)?);
        let mut r = self.inode(ino)?;
        if file_rs(self, &r) == want {
            return Ok(true);
        }
        if r.size != 0 || !self.record_size_fits(ino, &mut r, want)? {
            return Ok(false);
        }
        self.set_record_size(&mut r, want)?;
        self.put_inode(ino, &r)?;
        Ok(true)
    }
}

impl View<'_> {
    /// The block pointers of file `ino`'s records in `[lo, hi)` (none for
    /// inline or unwritten records): what a test or a tool compares to
    /// tell shared records from copied ones.
    pub fn record_blocks(
        &self,
        ino: u64,
        lo: u64,
        hi: u64,
    ) -> Result<Vec<(u64, aegis_pool::BlockPtr)>> {
        let tree = self.tree();
        let mut out = Vec::new();
        for (start, rec) in records_in(tree, ino, lo, hi)? {
            if let FileRecord::Block { bp, .. } | FileRecord::Prealloc { data: Some(bp), .. } = rec
            {
                out.push((start, bp));
            }
        }
        Ok(out)
    }
}

impl View<'_> {
    /// Call `visit(ino, start, pointer)` for every file record of the
    /// dataset that has a block, in key order (a dedupe pass groups them
    /// by checksum). Returns how many it visited.
    pub fn each_block_record(
        &self,
        visit: &mut dyn FnMut(u64, u64, &aegis_pool::BlockPtr),
    ) -> Result<u64> {
        let mut n = 0u64;
        for item in self
            .tree()
            .range(std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        {
            let (k, v) = item?;
            let Some(start) = keys::data_offset(&k) else {
                continue;
            };
            let ino = u64::from_be_bytes(k[..8].try_into().expect("a data key has an object"));
            if let FileRecord::Block { bp, .. } = FileRecord::decode(&v)? {
                visit(ino, start, &bp);
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS: u64 = 128 << 10;

    #[test]
    fn whole_records_in_phase_are_shared_and_the_edges_copied() {
        // Aligned, whole records: all shared.
        let p = share_plan(RS, (0, 4 * RS), (0, 0), 4 * RS);
        assert_eq!(
            p,
            SharePlan {
                head: 0,
                shared: 4 * RS
            }
        );
        // Out of phase: nothing shared.
        let p = share_plan(RS, (4096, 4 * RS), (0, 0), 2 * RS);
        assert_eq!(p.shared, 0);
        // In phase but not aligned: the head up to the boundary is copied.
        let p = share_plan(RS, (RS + 4096, 4 * RS), (4096, 0), 2 * RS);
        assert_eq!(p.head, RS - 4096);
        assert_eq!(p.shared, RS);
        // The source's short last record goes along if nothing follows it
        // in the target...
        let p = share_plan(RS, (0, 2 * RS + 100), (0, 0), 2 * RS + 100);
        assert_eq!(p.shared, 2 * RS + 100);
        // ...but not into the middle of a longer target, nor when the
        // range stops short of the source's end.
        let p = share_plan(RS, (0, 2 * RS + 100), (0, 3 * RS), 2 * RS + 100);
        assert_eq!(p.shared, 2 * RS);
        let p = share_plan(RS, (0, 3 * RS), (0, 0), 2 * RS + 100);
        assert_eq!(p.shared, 2 * RS);
        assert_eq!(share_plan(RS, (0, 10), (0, 0), 0).shared, 0);
    }
}
