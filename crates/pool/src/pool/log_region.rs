//! The intent-log ring: a region the pool allocates for the layer above
//! and then leaves to it.
//!
//! The ring is the format's second in-place write (the uberblock ring is
//! the first): the log overwrites it between commits, so it bypasses the
//! block pipeline entirely, with no checksum, copies, write-behind or
//! commit of its own; the log frames its records itself. The pool's part
//! is to keep such writes from reaching anything else. A ring named on
//! disk is checked to lie inside one device's data area before any access,
//! and every access to stay inside the ring, because the extent comes from
//! a record a damaged image can alter. The ring itself is ordinary
//! allocated space (zeroed when allocated) that stays allocated while a
//! tree records it; `free_unrecorded` gives it back when that record never
//! got written.

use super::Pool;
use crate::allocator::{AllocClass, Extent};
use crate::blkptr::MAX_BLOCK_BYTES;
use crate::error::{PoolError, Result};

impl Pool {
    /// Allocate an intent log ring of `len` bytes (whole blocks, one
    /// contiguous copy) and fill it with zeroes, so the device, or the
    /// image file under it, holds every block of it before the first log
    /// write: a write into a hole of a sparse image would make its host
    /// filesystem allocate and journal on every fsync. The zeroes become
    /// durable with the next commit's flush; the ring belongs to whoever
    /// records it in a tree, and is never written through `write_block`.
    pub fn alloc_log_ring(&self, len: u64) -> Result<Extent> {
        self.check_writable()?;
        let bs = self.config.block_size as u64;
        if len == 0 || !len.is_multiple_of(bs) {
            return Err(PoolError::Invalid(format!(
                "log ring of {len} bytes is not a whole number of {bs}-byte blocks"
            )));
        }
        let e = self
            .alloc
            .lock()
            .alloc(len, 1, AllocClass::Normal)?
            .remove(0);
        let zeroes = vec![0u8; (1 << 20).min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(zeroes.len() as u64) as usize;
            if let Err(err) =
                self.devices[e.device as usize].write_at(&zeroes[..n], e.offset + done)
            {
                self.free_unrecorded(e)?;
                return Err(err.into());
            }
            done += n as u64;
        }
        Ok(e)
    }

    /// Give back an extent this txg allocated that nothing records (a log
    /// ring whose tree record failed): reusable at once.
    pub fn free_unrecorded(&self, e: Extent) -> Result<()> {
        self.alloc.lock().free(e, self.open_txg(), true)
    }

    /// Free a log ring a committed tree recorded, with the tree record
    /// removed in this txg: its space waits out the deferral as any
    /// freed block's does (a crash before the commit keeps the ring).
    pub fn free_log_ring(&self, e: Extent) -> Result<()> {
        self.check_writable()?;
        self.check_ring(e)?;
        self.alloc.lock().free(e, self.open_txg(), false)
    }

    /// Check that a log ring named on disk lies inside a device's data
    /// area, before anything reads or writes it.
    pub fn check_ring(&self, e: Extent) -> Result<()> {
        let bs = self.config.block_size as u64;
        let ok = e.len > 0
            && e.len.is_multiple_of(bs)
            && self.config.devices.get(e.device as usize).is_some_and(|d| {
                e.offset.is_multiple_of(bs)
                    && e.offset >= d.data_start
                    && e.offset
                        .checked_add(e.len)
                        .is_some_and(|end| end <= d.data_end)
            });
        if ok {
            Ok(())
        } else {
            Err(PoolError::corrupt(
                "log ring",
                format!(
                    "{}:{}+{} is outside the data area",
                    e.device, e.offset, e.len
                ),
            ))
        }
    }

    /// Read `buf.len()` bytes at `offset` inside the log ring `ring`.
    pub fn read_log(&self, ring: Extent, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check_ring(ring)?;
        self.check_in_ring(ring, offset, buf.len())?;
        self.devices[ring.device as usize].read_at(buf, ring.offset + offset)?;
        Ok(())
    }

    /// Write `data` at `offset` inside the log ring `ring` and make just
    /// that write durable (the log's fsync).
    pub fn write_log_durable(&self, ring: Extent, offset: u64, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        self.check_ring(ring)?;
        self.check_in_ring(ring, offset, data.len())?;
        self.devices[ring.device as usize].write_durable(data, ring.offset + offset)?;
        Ok(())
    }

    fn check_in_ring(&self, ring: Extent, offset: u64, len: usize) -> Result<()> {
        if len == 0
            || len as u64 > MAX_BLOCK_BYTES as u64
            || offset
                .checked_add(len as u64)
                .is_none_or(|end| end > ring.len)
        {
            return Err(PoolError::Invalid(format!(
                "log I/O of {len} bytes at {offset} outside a ring of {}",
                ring.len
            )));
        }
        Ok(())
    }
}
