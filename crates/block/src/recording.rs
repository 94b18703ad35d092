//! [`RecordingDevice`]: a memory device that logs every write, discard and
//! flush in order, so a test can rebuild the device as of any point in the
//! log, or build crash images from the durable state plus any subset of the
//! writes issued since the last flush (what a power cut may leave behind).
//!
//! Invariants:
//! - the log and the live device move together: each op is applied to the
//!   live device and appended under one lock, so the log order is the order
//!   the live device saw, and `base + ops` always equals the live state;
//! - only ops that succeeded are logged (an out-of-range write changed
//!   nothing, so there is nothing to replay);
//! - `checkpoint` replaces the base by the live state and empties the log,
//!   which keeps memory bounded in long tests; indices handed out before a
//!   checkpoint refer to the old log and must not be reused;
//! - replay is cheap: images are copy-on-write [`MemDevice`] snapshots and
//!   the last image built is cached, so sweeping the flush points in
//!   increasing order replays each op about once.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{check_range, check_range_u64, BlockDevice, MemDevice, Result};

/// One logged operation.
#[derive(Clone, PartialEq, Eq)]
pub enum RecordedOp {
    Write { offset: u64, data: Arc<[u8]> },
    Discard { offset: u64, len: u64 },
    Flush,
}

impl fmt::Debug for RecordedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The data of a write can be megabytes; its length is what helps.
        match self {
            RecordedOp::Write { offset, data } => {
                write!(f, "Write {{ offset: {offset}, len: {} }}", data.len())
            }
            RecordedOp::Discard { offset, len } => {
                write!(f, "Discard {{ offset: {offset}, len: {len} }}")
            }
            RecordedOp::Flush => f.write_str("Flush"),
        }
    }
}

impl RecordedOp {
    /// Apply to `dev`. Recorded ops passed the range check on a device of the
    /// same size, so the unchecked paths cannot go out of bounds.
    fn apply(&self, dev: &MemDevice) {
        match self {
            RecordedOp::Write { offset, data } => dev.write_in_range(data, *offset),
            RecordedOp::Discard { offset, len } => dev.discard_in_range(*offset, *len),
            RecordedOp::Flush => {}
        }
    }
}

struct Log {
    base: MemDevice,
    ops: Vec<RecordedOp>,
    /// Bumped by `checkpoint` so a cached image of an older log is not used.
    generation: u64,
}

struct Cached {
    generation: u64,
    /// The image is `base + ops[..applied]`.
    applied: usize,
    image: MemDevice,
}

/// A memory device that records what is done to it, for crash replay.
pub struct RecordingDevice {
    live: MemDevice,
    log: Mutex<Log>,
    /// Locked after `log` when both are held, never before.
    cache: Mutex<Option<Cached>>,
}

impl RecordingDevice {
    /// Record on top of `inner`, whose current content becomes the base
    /// image; `inner` becomes the live device.
    pub fn new(inner: MemDevice) -> RecordingDevice {
        let base = inner.snapshot();
        RecordingDevice {
            live: inner,
            log: Mutex::new(Log {
                base,
                ops: Vec::new(),
                generation: 0,
            }),
            cache: Mutex::new(None),
        }
    }

    /// The log since the base image (cheap: the data is shared).
    pub fn ops(&self) -> Vec<RecordedOp> {
        self.log.lock().ops.clone()
    }

    /// Number of logged ops.
    pub fn len(&self) -> usize {
        self.log.lock().ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.log.lock().ops.is_empty()
    }

    /// Indices in [`Self::ops`] of every `Flush`.
    pub fn flush_points(&self) -> Vec<usize> {
        let log = self.log.lock();
        log.ops
            .iter()
            .enumerate()
            .filter(|(_, op)| **op == RecordedOp::Flush)
            .map(|(i, _)| i)
            .collect()
    }

    /// Indices of the ops after the last flush: the ones a power cut now may
    /// lose, in any combination.
    pub fn unflushed(&self) -> Range<usize> {
        let log = self.log.lock();
        let start = log
            .ops
            .iter()
            .rposition(|op| *op == RecordedOp::Flush)
            .map_or(0, |i| i + 1);
        start..log.ops.len()
    }

    /// The base image with `ops[..n]` applied in order.
    ///
    /// # Panics
    /// If `n > self.len()`; this is a test tool and such an index is a bug in
    /// the test.
    pub fn image_at(&self, n: usize) -> MemDevice {
        let (generation, image, todo) = {
            let log = self.log.lock();
            assert!(
                n <= log.ops.len(),
                "image_at({n}) past the end of a log of {} ops",
                log.ops.len()
            );
            let cache = self.cache.lock();
            let (start, image) = match &*cache {
                Some(c) if c.generation == log.generation && c.applied <= n => {
                    (c.applied, c.image.snapshot())
                }
                _ => (0, log.base.snapshot()),
            };
            (log.generation, image, log.ops[start..n].to_vec())
        };
        // Replay outside the log lock so a long replay does not stall the
        // device under test.
        for op in &todo {
            op.apply(&image);
        }
        *self.cache.lock() = Some(Cached {
            generation,
            applied: n,
            image: image.snapshot(),
        });
        image
    }

    /// The base image with `ops[..prefix]` applied, then the ops at the
    /// indices in `extra`, in the order given: a crash image where only some
    /// of the later writes reached the disk.
    ///
    /// # Panics
    /// If `prefix` or any index in `extra` is past the end of the log, or an
    /// index in `extra` is below `prefix` (it is already applied).
    pub fn image_with(&self, prefix: usize, extra: &[usize]) -> MemDevice {
        let image = self.image_at(prefix);
        let log = self.log.lock();
        for &i in extra {
            assert!(
                i >= prefix,
                "image_with: extra op {i} is inside the prefix of {prefix} ops"
            );
            assert!(
                i < log.ops.len(),
                "image_with: extra op {i} past the end of a log of {} ops",
                log.ops.len()
            );
            log.ops[i].apply(&image);
        }
        image
    }

    /// Make the live state the new base and empty the log.
    pub fn checkpoint(&self) {
        let mut log = self.log.lock();
        log.base = self.live.snapshot();
        log.ops.clear();
        log.generation += 1;
        // The cached image belongs to the old log; drop it to free its chunks.
        *self.cache.lock() = None;
    }

    /// A snapshot of the current state.
    pub fn live(&self) -> MemDevice {
        // Under the log lock so the snapshot never catches a half-logged op.
        let _log = self.log.lock();
        self.live.snapshot()
    }

    /// A snapshot of the base image (the state at creation or at the last
    /// checkpoint).
    pub fn base(&self) -> MemDevice {
        self.log.lock().base.snapshot()
    }
}

impl BlockDevice for RecordingDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.live.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.live.size())?;
        let mut log = self.log.lock();
        self.live.write_at(buf, offset)?;
        log.ops.push(RecordedOp::Write {
            offset,
            data: Arc::from(buf),
        });
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let mut log = self.log.lock();
        self.live.flush()?;
        log.ops.push(RecordedOp::Flush);
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        check_range_u64(offset, len, self.live.size())?;
        let mut log = self.log.lock();
        self.live.discard(offset, len)?;
        log.ops.push(RecordedOp::Discard { offset, len });
        Ok(())
    }

    fn size(&self) -> u64 {
        self.live.size()
    }

    fn name(&self) -> String {
        format!("recording({})", self.live.name())
    }
}

impl fmt::Debug for RecordingDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingDevice")
            .field("size", &self.live.size())
            .field("ops", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockError;

    const SIZE: u64 = 256 * 1024;

    fn read(dev: &dyn BlockDevice, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        dev.read_at(&mut buf, offset).unwrap();
        buf
    }

    #[test]
    fn logs_in_order_and_passes_through() {
        let base = MemDevice::new(SIZE);
        base.write_at(&[1u8; 10], 0).unwrap();
        let rec = RecordingDevice::new(base);
        assert!(rec.is_empty());
        rec.write_at(&[2u8; 4], 2).unwrap();
        rec.discard(0, 3).unwrap();
        rec.flush().unwrap();
        assert_eq!(
            rec.ops(),
            vec![
                RecordedOp::Write {
                    offset: 2,
                    data: Arc::from(&[2u8; 4][..])
                },
                RecordedOp::Discard { offset: 0, len: 3 },
                RecordedOp::Flush,
            ]
        );
        assert_eq!(rec.len(), 3);
        assert_eq!(rec.flush_points(), vec![2]);
        assert_eq!(rec.unflushed(), 3..3);
        assert_eq!(read(&rec, 0, 8), vec![0, 0, 0, 2, 2, 2, 1, 1]);
        assert_eq!(rec.base().to_bytes()[..8], [1u8; 8]);
        assert_eq!(rec.live().flush_count(), 1);
        assert_eq!(rec.name(), "recording(mem)");
        assert_eq!(format!("{:?}", rec.ops()[0]), "Write { offset: 2, len: 4 }");
    }

    #[test]
    fn failed_ops_are_not_logged() {
        let rec = RecordingDevice::new(MemDevice::new(4096));
        let mut buf = [0u8; 8];
        assert!(matches!(
            rec.write_at(&buf, 4090),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            rec.discard(4000, 200),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            rec.read_at(&mut buf, 4095),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(rec.is_empty());
    }

    /// A deterministic workload that snapshots the live state at each flush.
    fn workload(rec: &RecordingDevice) -> Vec<MemDevice> {
        let mut at_flush = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..300u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let offset = x % (SIZE - 70_000);
            match step % 10 {
                9 => {
                    rec.flush().unwrap();
                    at_flush.push(rec.live());
                }
                7 => rec.discard(offset, x % 70_000).unwrap(),
                _ => {
                    let len = (x >> 20) as usize % 70_000;
                    rec.write_at(&vec![(step as u8) | 1; len], offset).unwrap();
                }
            }
        }
        at_flush
    }

    #[test]
    fn image_at_flush_points_matches_live_history() {
        let rec = RecordingDevice::new(MemDevice::new(SIZE));
        let at_flush = workload(&rec);
        let points = rec.flush_points();
        assert_eq!(points.len(), at_flush.len());
        // In order (the cached path), then in reverse (from the base).
        for (p, want) in points.iter().zip(&at_flush) {
            assert!(rec.image_at(*p).same_content(want), "flush at op {p}");
            assert_eq!(rec.image_at(*p).to_bytes(), want.to_bytes());
        }
        for (p, want) in points.iter().zip(&at_flush).rev() {
            assert!(rec.image_at(*p).same_content(want), "flush at op {p}");
        }
        assert!(rec.image_at(0).same_content(&MemDevice::new(SIZE)));
        assert!(rec.image_at(rec.len()).same_content(&rec.live()));
    }

    #[test]
    fn images_are_independent_of_the_cache() {
        let rec = RecordingDevice::new(MemDevice::new(SIZE));
        rec.write_at(&[5u8; 100], 0).unwrap();
        rec.flush().unwrap();
        let a = rec.image_at(1);
        // Scribbling on a returned image must not leak into later images.
        a.write_at(&[9u8; 100], 0).unwrap();
        assert_eq!(read(&rec.image_at(1), 0, 100), vec![5u8; 100]);
        assert_eq!(read(&rec.image_at(2), 0, 100), vec![5u8; 100]);
    }

    #[test]
    fn image_with_subsets_of_unflushed_writes() {
        let rec = RecordingDevice::new(MemDevice::new(SIZE));
        rec.write_at(&[1u8; 4], 0).unwrap();
        rec.flush().unwrap();
        rec.write_at(&[2u8; 4], 0).unwrap(); // 2
        rec.write_at(&[3u8; 4], 100).unwrap(); // 3
        rec.discard(0, 2).unwrap(); // 4
        assert_eq!(rec.unflushed(), 2..5);
        let prefix = rec.flush_points()[0] + 1;
        assert_eq!(prefix, 2);

        let none = rec.image_with(prefix, &[]);
        assert_eq!(read(&none, 0, 4), vec![1; 4]);
        assert_eq!(read(&none, 100, 4), vec![0; 4]);

        let only_second = rec.image_with(prefix, &[3]);
        assert_eq!(read(&only_second, 0, 4), vec![1; 4]);
        assert_eq!(read(&only_second, 100, 4), vec![3; 4]);

        let discard_then_write = rec.image_with(prefix, &[4, 2]);
        assert_eq!(read(&discard_then_write, 0, 4), vec![2; 4]);
        let write_then_discard = rec.image_with(prefix, &[2, 4]);
        assert_eq!(read(&write_then_discard, 0, 4), vec![0, 0, 2, 2]);

        let all = rec.image_with(prefix, &[2, 3, 4]);
        assert!(all.same_content(&rec.live()));
    }

    #[test]
    #[should_panic(expected = "inside the prefix")]
    fn image_with_rejects_index_inside_prefix() {
        let rec = RecordingDevice::new(MemDevice::new(SIZE));
        rec.write_at(&[1], 0).unwrap();
        rec.flush().unwrap();
        rec.image_with(2, &[0]);
    }

    #[test]
    #[should_panic(expected = "past the end")]
    fn image_with_rejects_index_past_end() {
        let rec = RecordingDevice::new(MemDevice::new(SIZE));
        rec.write_at(&[1], 0).unwrap();
        rec.image_with(0, &[1]);
    }

    #[test]
    fn checkpoint_rebases() {
        let rec = RecordingDevice::new(MemDevice::new(SIZE));
        rec.write_at(&[7u8; 10], 10).unwrap();
        rec.flush().unwrap();
        rec.image_at(2); // warm the cache with an image of the old log
        rec.checkpoint();
        assert!(rec.is_empty());
        assert!(rec.flush_points().is_empty());
        assert_eq!(read(&rec.image_at(0), 10, 10), vec![7u8; 10]);
        rec.write_at(&[8u8; 5], 10).unwrap();
        assert_eq!(read(&rec.image_at(0), 10, 10), vec![7u8; 10]);
        assert_eq!(
            read(&rec.image_at(1), 10, 10),
            [[8u8; 5], [7u8; 5]].concat()
        );
        assert!(rec.image_at(1).same_content(&rec.live()));
    }
}
