//! Open handles and file data: open, write, punch, extend and the
//! fallocate modes, each logged as the intent log policy of the file says.
//!
//! Space: a write's share that lands on preallocated records is paid by
//! their reservation, so only the rest is checked against free space (and
//! a write wholly inside them runs in the `Reserved` class, as deletes do:
//! it must not fail on a pool that ordinary writes have filled). A
//! fallocate is checked for its new reservation before anything changes,
//! and refused with ENOSPC when the pool cannot hold it.

use aegis_fs::intent_log::{LogPolicy, LogRec};
use aegis_fs::posix::inode::{S_IFDIR, S_IFLNK, S_IFMT};
use aegis_fs::posix::{write_size_bytes, DatasetMeta, FileRecord, InodeRecord, FEATURE_PREALLOC};
use aegis_fs::{AllocClass, ObjectRead, Tx, TxSize};
use aegis_vfs::validate::*;
use aegis_vfs::*;

use crate::diskfs::*;
use crate::inode::*;

/// How to size a write of one file before its transaction: the file's
/// record size and whether the dataset ever preallocated.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteShape {
    pub(crate) record_size: u64,
    pub(crate) dataset_preallocated: bool,
}

impl WriteShape {
    pub(crate) fn of(r: &InodeRecord, meta: &DatasetMeta, dataset_rs: u32) -> WriteShape {
        WriteShape {
            record_size: r.record_size_bytes(dataset_rs),
            dataset_preallocated: meta.features & FEATURE_PREALLOC != 0,
        }
    }
}

impl DiskFs {
    pub(crate) fn new_handle(&self, st: &mut State, h: Handle) -> Fh {
        let fh = st.next_fh;
        st.next_fh += 1;
        self.handles.write().insert(fh, h);
        st.refs.entry(h.ino).or_default().opens += 1;
        fh
    }

    pub(crate) fn open_locked(&self, st: &mut State, ino: Ino, flags: i32) -> Result<Fh> {
        let r = self.inode(ino)?;
        let acc = flags & libc::O_ACCMODE;
        let read = acc == libc::O_RDONLY || acc == libc::O_RDWR;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        match r.mode & S_IFMT {
            S_IFDIR if write => return Err(FsError::IsDir),
            S_IFLNK => return Err(FsError::Loop),
            _ => {}
        }
        if write && flags & libc::O_TRUNC != 0 && r.is_reg() {
            let _file = self.files.lock(ino);
            let records = self.view(|t| Ok(t.record_count(ino)?))?;
            self.tx(4 + records / 8, AllocClass::Reserved, |tx| {
                let mut r = tx.inode(ino)?;
                tx.truncate_file(ino, &mut r, 0)?;
                touch_modified(&mut r, tx.now);
                tx.log(LogRec::SetAttr {
                    ino,
                    mode: None,
                    uid: None,
                    gid: None,
                    size: Some(0),
                    times: [None, Some(r.mtime), Some(r.ctime), None],
                });
                Ok(tx.put_inode(ino, &r)?)
            })?;
        }
        Ok(self.new_handle(
            st,
            Handle {
                ino,
                dir: false,
                read,
                write,
                append: flags & libc::O_APPEND != 0,
                dir_end: 0,
            },
        ))
    }

    /// A write of any length, as transactions of at most
    /// [`write_piece_bytes`] each (of the file's record size), in order: a rewrite needs new
    /// blocks while the old ones wait out their deferral, so a piece must
    /// fit the pool's commit reserve, and the commits in between give the
    /// old blocks back. A piece that fails after others stood makes a
    /// short write, as on Linux.
    pub(crate) fn write_in_pieces(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        shape: WriteShape,
    ) -> Result<u32> {
        let rs = shape.record_size;
        let piece = write_piece_bytes(rs, self.commit_reserve_bytes);
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            // Pieces end on record boundaries, so no record is written twice.
            let to_boundary = (piece - at % rs) as usize;
            let n = to_boundary.min(data.len() - done);
            match self.write_locked(ino, at, &data[done..done + n], shape) {
                Ok(()) => done += n,
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done as u32)
    }

    /// File `ino`'s inode and what sizing a write of it needs, from one
    /// read of the tree (the caller holds the file's lock, so neither can
    /// change before the write).
    pub(crate) fn write_shape(&self, ino: Ino) -> Result<(InodeRecord, WriteShape)> {
        self.view(|t| {
            let r = t.inode(ino)?;
            let shape = WriteShape::of(&r, &meta_in(t)?, self.dataset_record_size);
            Ok((r, shape))
        })
    }

    pub(crate) fn write_locked(
        &self,
        ino: Ino,
        offset: u64,
        data: &[u8],
        shape: WriteShape,
    ) -> Result<()> {
        let end = check_range(offset, data.len() as u64)?;
        let rs = shape.record_size;
        // Only a dataset that ever preallocated can have records to cover
        // the write (written ones may hold back nothing, yet still cover).
        let held = if shape.dataset_preallocated {
            self.view(|t| Ok(t.prealloc_cover(ino, rs, offset, end)?))?
        } else {
            0
        };
        let whole = write_size_bytes(rs, offset, data.len() as u64);
        // Wholly inside preallocated records: checked against all free
        // space (the reservations hold it), committing if old blocks are
        // still waiting out their deferral.
        let (bytes, class) = match whole.saturating_sub(held) {
            0 if held > 0 => (whole, AllocClass::Reserved),
            rest => (rest, AllocClass::Normal),
        };
        let size = TxSize {
            ops: 4,
            run_bytes: FileRecord::run_bytes(whole / rs, false),
            data_bytes: bytes,
            class,
        };
        self.tx_sized(size, |tx| {
            let mut r = tx.inode(ino)?;
            tx.write_file(ino, &mut r, offset, data)?;
            touch_modified(&mut r, tx.now);
            // The data is copied into a record only if the log can take
            // it; a metadata-only file logs just the size the write gave.
            if tx.log_policy(ino) == LogPolicy::Metadata {
                tx.log(LogRec::Extend {
                    ino,
                    size: offset + data.len() as u64,
                });
            } else if tx.log_takes(data.len()) {
                tx.log(LogRec::Write {
                    ino,
                    offset,
                    data: data.to_vec(),
                });
            } else {
                tx.mark_unlogged();
            }
            Ok(tx.put_inode(ino, &r)?)
        })
    }

    /// Copy `n` bytes (already clamped to the source's size), sharing
    /// whole records where both files allow (`reflink.rs`) and copying
    /// the rest. Then the source's atime (when due) and the target's
    /// mtime and ctime.
    pub(crate) fn copy_range_locked(
        &self,
        (ino_in, rin, offset_in): (Ino, &InodeRecord, u64),
        (ino_out, offset_out): (Ino, u64),
        n: u64,
    ) -> Result<()> {
        self.copy_or_share((ino_in, rin, offset_in), (ino_out, offset_out), n)?;
        self.copy_times(ino_in, rin, ino_out)
    }

    /// Copy `n` bytes record by record through memory; zeros stay holes.
    pub(crate) fn copy_bytes_locked(
        &self,
        (ino_in, rin, offset_in): (Ino, &InodeRecord, u64),
        (ino_out, offset_out): (Ino, u64),
        n: u64,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        // Pieces follow the target's records; the source's own record
        // size is read from `rin` by `read_file`.
        let (_, shape) = self.write_shape(ino_out)?;
        let rs = shape.record_size;
        let dataset_rs = self.dataset_record_size as u64;
        let mut done = 0u64;
        while done < n {
            let piece = (n - done).min(rs - (offset_out + done) % rs);
            let buf = self.view(|t| {
                Ok(t.read_file(ino_in, rin, dataset_rs, offset_in + done, piece as u32)?)
            })?;
            let at = offset_out + done;
            if buf.iter().all(|&b| b == 0) {
                // A hole stays a hole: punch, and extend the size if needed.
                self.punch_locked(ino_out, at, at + piece, Some(at + piece))?;
            } else {
                self.write_locked(ino_out, at, &buf, shape)?;
            }
            done += piece;
        }
        Ok(())
    }

    /// After a copy: the source's atime when due, the target's mtime and
    /// ctime.
    fn copy_times(&self, ino_in: Ino, rin: &InodeRecord, ino_out: Ino) -> Result<()> {
        let now = now_ns();
        if !self.read_only() && atime_due(rin, now, self.opts.atime) {
            self.tx(2, AllocClass::Normal, |tx| {
                let mut r = tx.inode(ino_in)?;
                r.atime = tx.now;
                tx.put_inode(ino_in, &r)?;
                let mut o = tx.inode(ino_out)?;
                touch_modified(&mut o, tx.now);
                Ok(tx.put_inode(ino_out, &o)?)
            })?;
        } else {
            self.tx(1, AllocClass::Normal, |tx| {
                let mut o = tx.inode(ino_out)?;
                touch_modified(&mut o, tx.now);
                Ok(tx.put_inode(ino_out, &o)?)
            })?;
        }
        Ok(())
    }

    /// Zero `[offset, end)` of a file (a hole afterwards); with
    /// `grow_to`, also extend it to at least that size.
    pub(crate) fn punch_locked(
        &self,
        ino: Ino,
        offset: u64,
        end: u64,
        grow_to: Option<u64>,
    ) -> Result<()> {
        // Under the file's lock: the record size cannot change meanwhile.
        let ops = 4 + (end - offset) / self.record_size_of(ino)? / 8;
        self.tx(ops, AllocClass::Reserved, |tx| {
            let mut r = tx.inode(ino)?;
            tx.punch_file(ino, &mut r, offset, end)?;
            touch_modified(&mut r, tx.now);
            tx.log(LogRec::Punch { ino, offset, end });
            if let Some(size) = grow_to {
                if size > r.size {
                    r.size = size;
                    tx.log(LogRec::Extend { ino, size });
                }
            }
            Ok(tx.put_inode(ino, &r)?)
        })
    }

    /// fallocate(2) after the handle and mode checks (also replay's entry):
    /// `op` as [`fallocate_mode`] decoded `mode`, over `[offset, end)`.
    pub(crate) fn fallocate_locked(
        &self,
        ino: Ino,
        (op, mode): (Falloc, i32),
        offset: u64,
        end: u64,
    ) -> Result<()> {
        let len = end - offset;
        match op {
            Falloc::Punch => return self.punch_locked(ino, offset, end, None),
            Falloc::Collapse | Falloc::Insert => {
                let r = self.inode(ino)?;
                let rs = r.record_size_bytes(self.dataset_record_size);
                check_shift(op, offset, len, r.size, rs)?;
            }
            Falloc::Allocate { .. } | Falloc::Zero { .. } => {}
        }
        let size = self.fallocate_size(&self.meta()?, ino, op, offset, end)?;
        self.tx_sized(size, |tx| {
            let mut r = tx.inode(ino)?;
            let before = r.size;
            apply_falloc(tx, ino, &mut r, op, offset, end)?;
            // Contents or size changed: the times move (a reservation
            // alone leaves them, as ext4 does).
            if !matches!(op, Falloc::Allocate { .. }) || r.size != before {
                touch_modified(&mut r, tx.now);
            }
            tx.log(LogRec::Fallocate {
                ino,
                mode: mode as u32,
                offset,
                len,
            });
            Ok(tx.put_inode(ino, &r)?)
        })
    }

    /// What a fallocate may need: a reservation's new bytes (checked
    /// against free space beside every other reservation) and one tree
    /// operation per record it adds; a collapse or insert two per record
    /// it moves, and an insert one record of data (an inline record 0
    /// moved up becomes a block).
    fn fallocate_size(
        &self,
        meta: &DatasetMeta,
        ino: Ino,
        op: Falloc,
        offset: u64,
        end: u64,
    ) -> Result<TxSize> {
        let rs = self.inode(ino)?.record_size_bytes(self.dataset_record_size);
        let bs = self.store.block_size() as u64;
        self.view(|t| {
            let records = t.record_count(ino)?;
            Ok(match op {
                Falloc::Allocate { .. } | Falloc::Zero { .. } => {
                    let zeroing = matches!(op, Falloc::Zero { .. });
                    let need = t.prealloc_need(meta, ino, (offset, end), zeroing)?;
                    // A huge range fails on `need`; keep the count sane.
                    let added = (end - offset).div_ceil(rs).min(need / bs + 1);
                    TxSize {
                        ops: 4 + records / 8,
                        // ZERO_RANGE may punch records with blocks first.
                        run_bytes: FileRecord::run_bytes(added, !zeroing),
                        data_bytes: need,
                        class: AllocClass::Normal,
                    }
                }
                Falloc::Insert => TxSize {
                    ops: 4 + 2 * records,
                    run_bytes: 0,
                    data_bytes: rs,
                    class: AllocClass::Normal,
                },
                Falloc::Collapse | Falloc::Punch => {
                    TxSize::ops(4 + 2 * records, AllocClass::Reserved)
                }
            })
        })
    }

    /// Grow a file to `size` (a hole).
    pub(crate) fn extend_locked(&self, ino: Ino, size: u64) -> Result<()> {
        self.tx(1, AllocClass::Normal, |tx| {
            let mut r = tx.inode(ino)?;
            if size > r.size {
                r.size = size;
                touch_modified(&mut r, tx.now);
                tx.log(LogRec::Extend { ino, size });
            }
            Ok(tx.put_inode(ino, &r)?)
        })
    }
}

/// The change of one fallocate, inside its transaction.
fn apply_falloc(
    tx: &mut Tx<'_>,
    ino: Ino,
    r: &mut InodeRecord,
    op: Falloc,
    offset: u64,
    end: u64,
) -> aegis_fs::Result<()> {
    let len = end - offset;
    match op {
        Falloc::Allocate { keep_size } | Falloc::Zero { keep_size } => {
            if matches!(op, Falloc::Zero { .. }) {
                tx.punch_file(ino, r, offset, end)?;
            }
            tx.preallocate_file(ino, r, offset, end)?;
            if !keep_size {
                r.size = r.size.max(end);
            }
            Ok(())
        }
        Falloc::Punch => tx.punch_file(ino, r, offset, end),
        Falloc::Collapse => tx.collapse_file(ino, r, offset, len),
        Falloc::Insert => tx.insert_file(ino, r, offset, len),
    }
}
