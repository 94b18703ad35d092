//! [`MemDevice`]: a sparse in-memory device for tests and crash replay.
//!
//! The image is cut into 64 KiB chunks kept in a map of `Arc`s; a chunk that
//! was never written (or was wholly discarded) is absent and reads as zeroes,
//! so a multi-gigabyte device costs only what was written.
//!
//! Invariants:
//! - every stored chunk has exactly the length of its slot (the last chunk of
//!   a device whose size is not a multiple of 64 KiB is shorter);
//! - a snapshot (`clone`/[`MemDevice::snapshot`]) copies only the map of
//!   `Arc`s; a later write copies a shared chunk first (`Arc::make_mut`), so
//!   two snapshots never see each other's writes;
//! - each read, write and discard holds the lock for its whole range, so
//!   concurrent callers see every operation whole or not at all.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::{check_range, check_range_u64, BlockDevice, Result};

const CHUNK: u64 = 64 * 1024;

type Chunks = BTreeMap<u64, Arc<Vec<u8>>>;

/// A sparse, copy-on-write device held in memory.
pub struct MemDevice {
    size: u64,
    chunks: Mutex<Chunks>,
    flushes: AtomicU64,
}

impl MemDevice {
    /// An all-zero device of `size` bytes; nothing is allocated until written.
    pub fn new(size: u64) -> MemDevice {
        MemDevice {
            size,
            chunks: Mutex::new(BTreeMap::new()),
            flushes: AtomicU64::new(0),
        }
    }

    /// A device holding `bytes`, sized to fit them exactly. All-zero chunks
    /// are left out so the result is as sparse as the input allows.
    pub fn from_bytes(bytes: Vec<u8>) -> MemDevice {
        let mut chunks = BTreeMap::new();
        for (idx, piece) in bytes.chunks(CHUNK as usize).enumerate() {
            if piece.iter().any(|&b| b != 0) {
                chunks.insert(idx as u64, Arc::new(piece.to_vec()));
            }
        }
        MemDevice {
            size: bytes.len() as u64,
            chunks: Mutex::new(chunks),
            flushes: AtomicU64::new(0),
        }
    }

    /// The whole image as one buffer. Meant for small devices: it allocates
    /// `size` bytes.
    ///
    /// # Panics
    /// If the size does not fit in the address space (only possible on 32-bit
    /// targets); use `read_at` on ranges for such devices.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = usize::try_from(self.size).expect("device too large for to_bytes; use read_at");
        let mut out = vec![0u8; len];
        let chunks = self.chunks.lock();
        for (&idx, data) in chunks.iter() {
            let start = (idx * CHUNK) as usize;
            out[start..start + data.len()].copy_from_slice(data);
        }
        out
    }

    /// A point-in-time copy that shares unchanged chunks with `self`; the same
    /// as `clone`, named for what tests use it for.
    pub fn snapshot(&self) -> MemDevice {
        self.clone()
    }

    /// How many times `flush` was called (on this device, including calls
    /// made before a snapshot was taken from it).
    pub fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Whether the two devices hold the same bytes. Cheaper than comparing
    /// `to_bytes` because chunks still shared between snapshots are skipped.
    pub fn same_content(&self, other: &MemDevice) -> bool {
        if self.size != other.size {
            return false;
        }
        // Comparing a device to itself would take the same lock twice.
        if std::ptr::eq(self, other) {
            return true;
        }
        let a = self.chunks.lock().clone();
        let b = other.chunks.lock().clone();
        let zero_or_equal = |x: Option<&Arc<Vec<u8>>>, y: Option<&Arc<Vec<u8>>>| match (x, y) {
            (Some(x), Some(y)) => Arc::ptr_eq(x, y) || x == y,
            (Some(d), None) | (None, Some(d)) => d.iter().all(|&v| v == 0),
            (None, None) => true,
        };
        a.keys()
            .chain(b.keys())
            .all(|k| zero_or_equal(a.get(k), b.get(k)))
    }

    /// Bytes of memory held by chunk data (shared chunks counted in full).
    pub fn allocated_bytes(&self) -> u64 {
        self.chunks.lock().values().map(|c| c.len() as u64).sum()
    }

    fn chunk_len(&self, idx: u64) -> usize {
        (self.size - idx * CHUNK).min(CHUNK) as usize
    }

    /// Write without a range check; callers have checked it against `size`.
    /// The recorder replays writes through here that already passed the
    /// check on a device of the same size.
    pub(crate) fn write_in_range(&self, buf: &[u8], offset: u64) {
        let mut chunks = self.chunks.lock();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = pos / CHUNK;
            let within = (pos % CHUNK) as usize;
            let chunk_len = self.chunk_len(idx);
            let n = (chunk_len - within).min(buf.len() - done);
            let chunk = chunks
                .entry(idx)
                .or_insert_with(|| Arc::new(vec![0u8; chunk_len]));
            Arc::make_mut(chunk)[within..within + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
    }

    /// Zero a range without a range check (see [`Self::write_in_range`]).
    pub(crate) fn discard_in_range(&self, offset: u64, len: u64) {
        let mut chunks = self.chunks.lock();
        let end = offset + len;
        let mut pos = offset;
        while pos < end {
            let idx = pos / CHUNK;
            let within = (pos % CHUNK) as usize;
            let chunk_len = self.chunk_len(idx);
            let n = (chunk_len - within).min((end - pos).min(CHUNK) as usize);
            if within == 0 && n == chunk_len {
                // A wholly covered chunk is dropped rather than zeroed, which
                // also frees its memory.
                chunks.remove(&idx);
            } else if let Some(chunk) = chunks.get_mut(&idx) {
                Arc::make_mut(chunk)[within..within + n].fill(0);
            }
            pos += n as u64;
        }
    }
}

impl Clone for MemDevice {
    fn clone(&self) -> MemDevice {
        MemDevice {
            size: self.size,
            chunks: Mutex::new(self.chunks.lock().clone()),
            flushes: AtomicU64::new(self.flush_count()),
        }
    }
}

impl BlockDevice for MemDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        let chunks = self.chunks.lock();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let idx = pos / CHUNK;
            let within = (pos % CHUNK) as usize;
            let n = (self.chunk_len(idx) - within).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match chunks.get(&idx) {
                Some(chunk) => out.copy_from_slice(&chunk[within..within + n]),
                None => out.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_range(offset, buf.len(), self.size)?;
        self.write_in_range(buf, offset);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn discard(&self, offset: u64, len: u64) -> Result<()> {
        check_range_u64(offset, len, self.size)?;
        self.discard_in_range(offset, len);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn name(&self) -> String {
        "mem".to_string()
    }
}

impl fmt::Debug for MemDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemDevice")
            .field("size", &self.size)
            .field("chunks", &self.chunks.lock().len())
            .field("flushes", &self.flush_count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockError;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    #[test]
    fn unwritten_reads_zero_and_writes_cross_chunks() {
        let dev = MemDevice::new(1 << 20);
        let mut buf = vec![0xffu8; 100];
        dev.read_at(&mut buf, 5000).unwrap();
        assert!(buf.iter().all(|&b| b == 0));

        // Straddles three chunks.
        let data = pattern(3 * CHUNK as usize, 3);
        dev.write_at(&data, CHUNK - 10).unwrap();
        let mut back = vec![0u8; data.len()];
        dev.read_at(&mut back, CHUNK - 10).unwrap();
        assert_eq!(back, data);
        let whole = dev.to_bytes();
        assert_eq!(&whole[CHUNK as usize - 10..][..data.len()], &data[..]);
        assert!(whole[..CHUNK as usize - 10].iter().all(|&b| b == 0));
    }

    #[test]
    fn odd_size_last_chunk() {
        let size = 2 * CHUNK + 1000;
        let dev = MemDevice::new(size);
        dev.write_at(&[9u8; 1000], 2 * CHUNK).unwrap();
        dev.write_at(&[8u8; 20], size - 1010).unwrap();
        assert_eq!(dev.to_bytes().len() as u64, size);
        let mut b = [0u8; 1];
        dev.read_at(&mut b, size - 1).unwrap();
        assert_eq!(b, [9]);
        dev.discard(2 * CHUNK, 1000).unwrap();
        dev.read_at(&mut b, size - 1).unwrap();
        assert_eq!(b, [0]);
    }

    #[test]
    fn out_of_range() {
        let dev = MemDevice::new(4096);
        let mut buf = [0u8; 8];
        assert!(matches!(
            dev.read_at(&mut buf, 4090),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.write_at(&buf, 4090),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.write_at(&buf, u64::MAX - 2),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.discard(4000, 100),
            Err(BlockError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.discard(1, u64::MAX),
            Err(BlockError::OutOfRange { .. })
        ));
        dev.read_at(&mut buf, 4088).unwrap();
        dev.discard(4096, 0).unwrap();
    }

    #[test]
    fn clone_is_isolated_both_ways() {
        let a = MemDevice::new(4 * CHUNK);
        a.write_at(&[1u8; 100], 0).unwrap();
        a.write_at(&[2u8; 100], 2 * CHUNK).unwrap();
        let b = a.clone();
        let c = a.snapshot();
        a.write_at(&[3u8; 10], 0).unwrap();
        b.write_at(&[4u8; 10], 2 * CHUNK).unwrap();
        b.discard(0, CHUNK).unwrap();

        let mut buf = [0u8; 10];
        a.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [3; 10]);
        a.read_at(&mut buf, 2 * CHUNK).unwrap();
        assert_eq!(buf, [2; 10]);
        b.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [0; 10]);
        b.read_at(&mut buf, 2 * CHUNK).unwrap();
        assert_eq!(buf, [4; 10]);
        c.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [1; 10]);
        c.read_at(&mut buf, 2 * CHUNK).unwrap();
        assert_eq!(buf, [2; 10]);
    }

    #[test]
    fn discard_zeroes_and_drops_whole_chunks() {
        let dev = MemDevice::new(4 * CHUNK);
        dev.write_at(&vec![7u8; 4 * CHUNK as usize], 0).unwrap();
        assert_eq!(dev.allocated_bytes(), 4 * CHUNK);
        // Covers the tail of chunk 0, all of chunks 1 and 2, the head of 3.
        dev.discard(CHUNK - 5, 2 * CHUNK + 10).unwrap();
        assert_eq!(dev.allocated_bytes(), 2 * CHUNK);
        let bytes = dev.to_bytes();
        let (lo, hi) = ((CHUNK - 5) as usize, (3 * CHUNK + 5) as usize);
        assert!(bytes[..lo].iter().all(|&b| b == 7));
        assert!(bytes[lo..hi].iter().all(|&b| b == 0));
        assert!(bytes[hi..].iter().all(|&b| b == 7));
    }

    #[test]
    fn from_bytes_round_trip_and_sparse() {
        let mut img = vec![0u8; 3 * CHUNK as usize + 17];
        img[5] = 1;
        img[3 * CHUNK as usize + 16] = 2;
        let dev = MemDevice::from_bytes(img.clone());
        assert_eq!(dev.size(), img.len() as u64);
        assert_eq!(dev.allocated_bytes(), CHUNK + 17);
        assert_eq!(dev.to_bytes(), img);
        assert!(dev.same_content(&MemDevice::from_bytes(img.clone())));
        // An explicit zero chunk equals an absent one.
        let other = MemDevice::new(img.len() as u64);
        other.write_at(&img, 0).unwrap();
        assert!(dev.same_content(&other));
        other.write_at(&[1], CHUNK).unwrap();
        assert!(!dev.same_content(&other));
        assert!(dev.same_content(&dev));
    }

    #[test]
    fn flush_counts_and_name() {
        let dev = MemDevice::new(10);
        assert_eq!(dev.flush_count(), 0);
        dev.flush().unwrap();
        dev.flush().unwrap();
        assert_eq!(dev.flush_count(), 2);
        assert_eq!(dev.name(), "mem");
    }
}
