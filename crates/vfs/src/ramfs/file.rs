//! Regular file data: fixed-size chunks in a sparse map.
//!
//! A file is a logical size plus a `BTreeMap` from chunk index to a
//! [`CHUNK`]-byte block. A missing chunk is a hole and reads as zeroes, so
//! sparse files cost nothing. SEEK_DATA/SEEK_HOLE work at chunk
//! granularity: a present chunk is data (even if it holds zeroes, e.g. after
//! fallocate), a missing one is a hole.
//!
//! Invariant: every byte of a present chunk at or past `size` is zero, so
//! extending the size exposes zeroes.

use std::collections::BTreeMap;

use crate::error::{FsError, Result};

/// Allocation unit of ramfs file data, and the SEEK_DATA/SEEK_HOLE granularity.
pub const CHUNK: u64 = 4096;

type Chunk = Box<[u8; CHUNK as usize]>;

fn zero_chunk() -> Chunk {
    vec![0u8; CHUNK as usize]
        .into_boxed_slice()
        .try_into()
        .expect("chunk size")
}

#[derive(Debug, Default)]
pub(crate) struct FileData {
    pub size: u64,
    chunks: BTreeMap<u64, Chunk>,
}

impl FileData {
    /// Chunks allocated.
    pub fn chunk_count(&self) -> u64 {
        self.chunks.len() as u64
    }

    /// Chunks that writing `[offset, end)` would newly allocate.
    pub fn chunks_needed(&self, offset: u64, end: u64) -> u64 {
        if end <= offset {
            return 0;
        }
        let (first, last) = (offset / CHUNK, (end - 1) / CHUNK);
        let present = self.chunks.range(first..=last).count() as u64;
        (last - first + 1) - present
    }

    pub fn read(&self, offset: u64, size: u32) -> Vec<u8> {
        // An empty read must not reach `end - 1` below.
        if offset >= self.size || size == 0 {
            return Vec::new();
        }
        let end = self.size.min(offset.saturating_add(size as u64));
        let mut out = vec![0u8; (end - offset) as usize];
        let (first, last) = (offset / CHUNK, (end - 1) / CHUNK);
        for (&idx, chunk) in self.chunks.range(first..=last) {
            let cstart = idx * CHUNK;
            let from = offset.max(cstart);
            let to = end.min(cstart + CHUNK);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&chunk[(from - cstart) as usize..(to - cstart) as usize]);
        }
        out
    }

    /// Write `data` at `offset`; the caller checked the range and space.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let idx = pos / CHUNK;
            let cstart = idx * CHUNK;
            let to = end.min(cstart + CHUNK);
            let chunk = self.chunks.entry(idx).or_insert_with(zero_chunk);
            chunk[(pos - cstart) as usize..(to - cstart) as usize]
                .copy_from_slice(&data[(pos - offset) as usize..(to - offset) as usize]);
            pos = to;
        }
        self.size = self.size.max(end);
    }

    /// Zero `[offset, end)` and free the chunks it covers whole.
    fn zero_range(&mut self, offset: u64, end: u64) {
        if end <= offset {
            return;
        }
        let (first, last) = (offset / CHUNK, (end - 1) / CHUNK);
        let idxs: Vec<u64> = self.chunks.range(first..=last).map(|(&i, _)| i).collect();
        for idx in idxs {
            let cstart = idx * CHUNK;
            let from = offset.max(cstart);
            let to = end.min(cstart + CHUNK);
            if from == cstart && to == cstart + CHUNK {
                self.chunks.remove(&idx);
            } else if let Some(c) = self.chunks.get_mut(&idx) {
                c[(from - cstart) as usize..(to - cstart) as usize].fill(0);
            }
        }
    }

    /// Set the size: shrinking frees chunks past the end and zeroes the tail
    /// of the last one, growing leaves a hole.
    pub fn truncate(&mut self, size: u64) {
        if size < self.size {
            // Also drops preallocated chunks past the old size.
            let keep = size.div_ceil(CHUNK);
            let _ = self.chunks.split_off(&keep);
            self.zero_range(size, keep * CHUNK);
        }
        self.size = size;
    }

    /// Deallocate `[offset, end)` (PUNCH_HOLE; size unchanged).
    pub fn punch(&mut self, offset: u64, end: u64) {
        self.zero_range(offset, end);
    }

    /// Allocate zeroed chunks over `[offset, end)`; extend the size unless
    /// `keep_size`.
    pub fn allocate(&mut self, offset: u64, end: u64, keep_size: bool) {
        if end > offset {
            for idx in offset / CHUNK..=(end - 1) / CHUNK {
                self.chunks.entry(idx).or_insert_with(zero_chunk);
            }
        }
        if !keep_size {
            self.size = self.size.max(end);
        }
    }

    /// COLLAPSE_RANGE: drop the chunks of `[offset, offset + len)` and move
    /// the later ones down (both multiples of [`CHUNK`], checked by the
    /// caller); the size shrinks by `len`.
    pub fn collapse(&mut self, offset: u64, len: u64) {
        let (lo, n) = (offset / CHUNK, len / CHUNK);
        let mut tail = self.chunks.split_off(&lo);
        let moved = tail.split_off(&(lo + n));
        self.chunks
            .extend(moved.into_iter().map(|(i, c)| (i - n, c)));
        self.size = self.size.saturating_sub(len);
    }

    /// INSERT_RANGE: move the chunks at or past `offset` up by `len` (both
    /// multiples of [`CHUNK`]), leaving a hole; the size grows by `len`.
    pub fn insert(&mut self, offset: u64, len: u64) {
        let (lo, n) = (offset / CHUNK, len / CHUNK);
        let moved = self.chunks.split_off(&lo);
        self.chunks
            .extend(moved.into_iter().map(|(i, c)| (i + n, c)));
        self.size += len;
    }

    /// First data at or after `offset` (ENXIO past the end or if none).
    pub fn seek_data(&self, offset: u64) -> Result<u64> {
        if offset >= self.size {
            return Err(FsError::NoSuchOffset);
        }
        match self.chunks.range(offset / CHUNK..).next() {
            Some((&idx, _)) => {
                let pos = offset.max(idx * CHUNK);
                if pos < self.size {
                    Ok(pos)
                } else {
                    Err(FsError::NoSuchOffset)
                }
            }
            None => Err(FsError::NoSuchOffset),
        }
    }

    /// First hole at or after `offset`; the end of file is a hole.
    pub fn seek_hole(&self, offset: u64) -> Result<u64> {
        if offset >= self.size {
            return Err(FsError::NoSuchOffset);
        }
        let mut idx = offset / CHUNK;
        for (&i, _) in self.chunks.range(idx..) {
            if i != idx {
                break;
            }
            idx += 1;
        }
        Ok(offset.max(idx.saturating_mul(CHUNK)).min(self.size))
    }
}
