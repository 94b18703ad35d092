//! Reflinks at the file system's edge: copy_file_range shares what it
//! can, `clone_range` (FICLONE, FICLONERANGE) shares or refuses,
//! `dedupe_range` (FIDEDUPERANGE) shares ranges it found equal.
//!
//! copy_file_range copies bytes where records cannot be shared (the
//! edges of an unaligned range, files of different record sizes), as
//! OpenZFS does when block cloning cannot take a range; a clone must
//! share everything it is asked to, so it wants offsets and a length on
//! record boundaries (the length may end at the source's end of file)
//! and equal record sizes, as OpenZFS's clone does, and refuses with
//! EINVAL otherwise. Sharing goes in transactions of at most
//! [`SHARE_CHUNK_RECORDS`] records, each whole or not at all, so a clone
//! of a large file never holds the trees for long nor needs more dirty
//! memory than a chunk. The caller holds both files' locks.

use aegis_fs::clone_table::ENTRY_BYTES;
use aegis_fs::posix::file_clone::{share_plan, SharePlan};
use aegis_fs::posix::{FileRecord, InodeRecord};
use aegis_fs::{AllocClass, ObjectRead, TxSize};
use aegis_vfs::validate::*;
use aegis_vfs::*;

use crate::diskfs::*;
use crate::inode::*;

/// Most records one transaction of a share moves.
const SHARE_CHUNK_RECORDS: u64 = 1024;
/// Most bytes a dedupe compares in one read of each side.
const COMPARE_PIECE_BYTES: u64 = 1 << 20;
/// Most bytes one dedupe call looks at (Linux's own cap for a call).
pub(crate) const MAX_DEDUPE_BYTES: u64 = 16 << 20;

/// (inode, handle, offset) of one side of a two-file operation.
type Side = (Ino, Fh, u64);

impl DiskFs {
    /// The checks copy_file_range, clone and dedupe share: regular files,
    /// the handles' modes (a target opened for appending only for a
    /// dedupe, which writes nothing new), ranges that fit and do not
    /// overlap in one file (over `len` as asked). Returns both inodes and the length cut to the
    /// source's end of file.
    pub(crate) fn range_pair(
        &self,
        ((ino_in, fh_in, offset_in), (ino_out, fh_out, offset_out)): (Side, Side),
        len: u64,
        writes: bool,
    ) -> Result<(InodeRecord, InodeRecord, u64)> {
        let (hi, ho) = (self.handle(ino_in, fh_in)?, self.handle(ino_out, fh_out)?);
        let (rin, rout) = (self.inode(ino_in)?, self.inode(ino_out)?);
        regular(&rin)?;
        regular(&rout)?;
        if !hi.read || !ho.write || (writes && ho.append) {
            return Err(FsError::BadHandle);
        }
        let n = len.min(rin.size.saturating_sub(offset_in));
        check_range(offset_in, n)?;
        check_range(offset_out, n)?;
        if ino_in == ino_out
            && offset_in < offset_out.saturating_add(len)
            && offset_out < offset_in.saturating_add(len)
        {
            return Err(FsError::InvalidArgument("overlapping ranges in one file"));
        }
        Ok((rin, rout, n))
    }

    /// How a copy of `n` bytes from `(ino_in, offset_in)` to
    /// `(ino_out, offset_out)` splits between copied and shared bytes; an
    /// empty target first takes the source's record size.
    pub(crate) fn share_plan_of(
        &self,
        (ino_in, rin, offset_in): (Ino, &InodeRecord, u64),
        (ino_out, offset_out): (Ino, u64),
        n: u64,
    ) -> Result<SharePlan> {
        let copy_all = SharePlan { head: n, shared: 0 };
        if !self.store.pool().reflinks_enabled() || self.read_only() {
            return Ok(copy_all);
        }
        let dataset_rs = self.dataset_record_size;
        let rs = rin.record_size_bytes(dataset_rs);
        let mut rout = self.inode(ino_out)?;
        if rout.record_size_bytes(dataset_rs) != rs && rout.size == 0 {
            self.tx(4, AllocClass::Normal, |tx| {
                Ok(tx.match_record_size(ino_out, ino_in)?)
            })?;
            rout = self.inode(ino_out)?;
        }
        if rout.record_size_bytes(dataset_rs) != rs {
            return Ok(copy_all);
        }
        Ok(share_plan(
            rs,
            (offset_in, rin.size),
            (offset_out, rout.size),
            n,
        ))
    }

    /// Share `len` bytes (a range the plan shares) in chunks.
    pub(crate) fn share_locked(
        &self,
        (ino_in, offset_in): (Ino, u64),
        (ino_out, offset_out): (Ino, u64),
        len: u64,
        rs: u64,
    ) -> Result<()> {
        let chunk = SHARE_CHUNK_RECORDS * rs;
        let mut done = 0u64;
        while done < len {
            let piece = (len - done).min(chunk);
            let records = piece.div_ceil(rs);
            let size = TxSize {
                ops: 8 + records / 4,
                run_bytes: FileRecord::run_bytes(records, false) + records * ENTRY_BYTES,
                // An inline source record is written as a block.
                data_bytes: rs,
                class: AllocClass::Normal,
            };
            self.tx_sized(size, |tx| {
                Ok(tx.share_file_range(
                    (ino_in, offset_in + done),
                    (ino_out, offset_out + done),
                    piece,
                )?)
            })?;
            done += piece;
        }
        Ok(())
    }

    /// Copy `n` bytes (within the source's size) sharing what records
    /// allow and copying the rest; the times are the caller's.
    pub(crate) fn copy_or_share(
        &self,
        (ino_in, rin, offset_in): (Ino, &InodeRecord, u64),
        (ino_out, offset_out): (Ino, u64),
        n: u64,
    ) -> Result<()> {
        let plan = self.share_plan_of((ino_in, rin, offset_in), (ino_out, offset_out), n)?;
        let (head, shared) = (plan.head, plan.shared);
        self.copy_bytes_locked((ino_in, rin, offset_in), (ino_out, offset_out), head)?;
        if shared > 0 {
            let rs = rin.record_size_bytes(self.dataset_record_size);
            self.share_locked(
                (ino_in, offset_in + head),
                (ino_out, offset_out + head),
                shared,
                rs,
            )?;
        }
        let rest = n - head - shared;
        let at = head + shared;
        self.copy_bytes_locked(
            (ino_in, rin, offset_in + at),
            (ino_out, offset_out + at),
            rest,
        )
    }

    /// FICLONERANGE after the handle checks: every byte shared, or EINVAL.
    pub(crate) fn clone_locked(
        &self,
        (ino_in, rin, offset_in): (Ino, &InodeRecord, u64),
        (ino_out, offset_out): (Ino, u64),
        n: u64,
    ) -> Result<()> {
        if !self.store.pool().reflinks_enabled() {
            return Err(FsError::NotSupported);
        }
        let plan = self.share_plan_of((ino_in, rin, offset_in), (ino_out, offset_out), n)?;
        if plan.head != 0 || plan.shared != n {
            return Err(FsError::InvalidArgument(
                "clone range not on record boundaries of one record size",
            ));
        }
        let rs = rin.record_size_bytes(self.dataset_record_size);
        self.share_locked((ino_in, offset_in), (ino_out, offset_out), n, rs)?;
        self.tx(1, AllocClass::Normal, |tx| {
            let mut o = tx.inode(ino_out)?;
            touch_modified(&mut o, tx.now);
            Ok(tx.put_inode(ino_out, &o)?)
        })
    }

    /// FIDEDUPERANGE after the handle checks: compare, then share what
    /// records allow. Returns the bytes shared, or `None` if they differ.
    pub(crate) fn dedupe_locked(
        &self,
        (ino_in, rin, offset_in): (Ino, &InodeRecord, u64),
        (ino_out, rout, offset_out): (Ino, &InodeRecord, u64),
        n: u64,
    ) -> Result<Option<u64>> {
        if !self.store.pool().reflinks_enabled() {
            return Err(FsError::NotSupported);
        }
        let dataset_rs = self.dataset_record_size as u64;
        let mut done = 0u64;
        while done < n {
            let piece = (n - done).min(COMPARE_PIECE_BYTES) as u32;
            let (a, b) = self.view(|t| {
                let a = t.read_file(ino_in, rin, dataset_rs, offset_in + done, piece)?;
                let b = t.read_file(ino_out, rout, dataset_rs, offset_out + done, piece)?;
                Ok((a, b))
            })?;
            if a != b {
                return Ok(None);
            }
            done += piece as u64;
        }
        let plan = self.share_plan_of((ino_in, rin, offset_in), (ino_out, offset_out), n)?;
        if plan.shared == 0 {
            return Ok(Some(0));
        }
        let rs = rin.record_size_bytes(self.dataset_record_size);
        let (from, to) = (offset_in + plan.head, offset_out + plan.head);
        self.share_locked((ino_in, from), (ino_out, to), plan.shared, rs)?;
        Ok(Some(plan.shared))
    }
}
