//! The block layer: a byte-addressed device that the pool stores everything on.
//!
//! A [`BlockDevice`] reads and writes at byte offsets, flushes, discards and
//! reports its size. Everything above (labels, uberblocks, tree nodes, data)
//! goes through this trait, so tests can slide in a memory device, a
//! fault-injecting wrapper or a write recorder for crash replay.
//!
//! Invariants every implementation keeps:
//! - an access outside `[0, size)` is an error ([`BlockError::OutOfRange`]),
//!   never a short read or a panic;
//! - a write is durable only after a later `flush` returns `Ok`;
//! - methods take `&self` and are safe to call from several threads.

mod direct_write;
mod error;
mod fault;
mod file;
mod gate;
mod image_lock;
mod memory;
mod recording;

pub use error::{BlockError, Result};
pub use fault::{FaultConfig, FaultDevice, FaultKind, Zone};
pub use file::{FileDevice, OpenMode};
pub use gate::GatedDevice;
pub use memory::MemDevice;
pub use recording::{RecordedOp, RecordingDevice};

use std::sync::Arc;

/// A device addressed in bytes.
pub trait BlockDevice: Send + Sync {
    /// Fill `buf` from `offset`. Errors if any byte lies past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
    /// Write all of `buf` at `offset`. Not durable until `flush`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;
    /// Make every completed write durable (fdatasync for files).
    fn flush(&self) -> Result<()>;
    /// Write `buf` at `offset` and make that write durable, without
    /// necessarily flushing other writes (the intent log's path: an image
    /// file uses `RWF_DSYNC`, which writes back only this range). The
    /// default writes and then flushes everything.
    fn write_durable(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.write_at(buf, offset)?;
        self.flush()
    }
    /// Tell the device a range no longer holds data (hole punch for files).
    /// Reads of a discarded range return zeroes or the old bytes; callers
    /// never depend on which.
    fn discard(&self, offset: u64, len: u64) -> Result<()>;
    /// Size in bytes.
    fn size(&self) -> u64;
    /// A short human-readable name for messages ("/path/to/img", "mem").
    fn name(&self) -> String;
}

/// Shared handle used by the layers above.
pub type DeviceRef = Arc<dyn BlockDevice>;

/// Check that `[offset, offset+len)` lies inside a device of `size` bytes.
pub fn check_range(offset: u64, len: usize, size: u64) -> Result<()> {
    let end = offset
        .checked_add(len as u64)
        .ok_or(BlockError::OutOfRange { offset, len, size })?;
    if end > size {
        return Err(BlockError::OutOfRange { offset, len, size });
    }
    Ok(())
}

/// [`check_range`] for a `u64` length (a discard), which may not fit a `usize`.
pub fn check_range_u64(offset: u64, len: u64, size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(BlockError::OutOfRange {
            offset,
            len: usize::try_from(len).unwrap_or(usize::MAX),
            size,
        }),
    }
}
