//! Large aligned writes sent with `O_DIRECT`, past the host's page cache.
//!
//! A commit writes its txg's blocks in one burst and then flushes. Written
//! through the page cache, every byte is first copied into a cache page
//! (the kernel's `copy_folio_from_iter`: 42% of the daemon's samples
//! during a 1 GiB sequential write) and written back by the flush; the
//! pool keeps its own caches, so the host's copy only costs. Direct writes
//! go from a bounce buffer of ours straight to the device.
//!
//! Invariants:
//! - only writes whose offset and length are multiples of [`ALIGN_BYTES`]
//!   and at least [`MIN_BYTES`] long go direct; the rest (labels, the
//!   uberblock, small blocks) stay buffered. The kernel keeps the two
//!   coherent: a direct write first writes back and then drops the cached
//!   pages it covers, so a buffered read afterwards reads the device.
//! - a filesystem that refuses `O_DIRECT` (tmpfs) or one direct write
//!   (`EINVAL`) turns it off for good, and the write is done buffered: the
//!   caller never sees that refusal.
//! - durability is unchanged: `flush` (`fdatasync` on the buffered
//!   descriptor) still ends every commit, and sends the device's cache
//!   flush for direct writes too.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Offsets, lengths and buffer addresses of direct writes are multiples
/// of this: the largest logical sector size in use (4Kn disks).
pub(crate) const ALIGN_BYTES: usize = 4096;
/// Shorter writes stay buffered: they are metadata, few and small.
pub(crate) const MIN_BYTES: usize = 64 << 10;
/// One direct write sends at most this much (the bounce buffer's size).
const CHUNK_BYTES: usize = 1 << 20;

/// A second descriptor of a writable device, opened with `O_DIRECT`.
pub(crate) struct DirectWriter {
    file: File,
    enabled: AtomicBool,
}

impl DirectWriter {
    /// `None` when the filesystem holding `path` refuses `O_DIRECT`.
    pub(crate) fn open(path: &Path) -> Option<DirectWriter> {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()?;
        Some(DirectWriter {
            file,
            enabled: AtomicBool::new(true),
        })
    }

    /// Write `buf` at `offset` directly if it qualifies: `Ok(true)` when
    /// written, `Ok(false)` when the caller must write it buffered.
    pub(crate) fn write(&self, buf: &[u8], offset: u64) -> std::io::Result<bool> {
        let aligned =
            offset.is_multiple_of(ALIGN_BYTES as u64) && buf.len().is_multiple_of(ALIGN_BYTES);
        if !aligned || buf.len() < MIN_BYTES || !self.enabled.load(Ordering::Relaxed) {
            return Ok(false);
        }
        BOUNCE.with(|b| {
            let mut bounce = b.borrow_mut();
            for (i, chunk) in buf.chunks(CHUNK_BYTES).enumerate() {
                let staged = bounce.stage(chunk);
                let at = offset + (i * CHUNK_BYTES) as u64;
                match self.file.write_all_at(staged, at) {
                    Ok(()) => {}
                    // Refused (the filesystem has no O_DIRECT after all):
                    // the caller writes the whole range buffered, which
                    // also makes right any chunk already written here.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        self.enabled.store(false, Ordering::Relaxed);
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(true)
        })
    }
}

thread_local! {
    /// Each writing thread's bounce buffer, made on its first direct write.
    static BOUNCE: RefCell<Bounce> = const { RefCell::new(Bounce { buf: None }) };
}

/// [`CHUNK_BYTES`] of memory aligned to [`ALIGN_BYTES`]: a buffer one
/// alignment longer, used from its first aligned byte.
struct Bounce {
    buf: Option<Vec<u8>>,
}

impl Bounce {
    /// `src` copied to the aligned start of the buffer (at most
    /// [`CHUNK_BYTES`]).
    fn stage(&mut self, src: &[u8]) -> &[u8] {
        debug_assert!(src.len() <= CHUNK_BYTES);
        let buf = self
            .buf
            .get_or_insert_with(|| vec![0u8; CHUNK_BYTES + ALIGN_BYTES]);
        let at = buf.as_ptr().align_offset(ALIGN_BYTES);
        let staged = &mut buf[at..at + src.len()];
        staged.copy_from_slice(src);
        staged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_writes_read_back_through_the_buffered_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        f.set_len(4 << 20).unwrap();
        let Some(w) = DirectWriter::open(&path) else {
            return; // this filesystem has no O_DIRECT: nothing to test
        };
        // A buffered write first, so the page cache holds the old bytes.
        f.write_all_at(&[1u8; 8192], 1 << 20).unwrap();
        let data: Vec<u8> = (0..(CHUNK_BYTES + MIN_BYTES))
            .map(|i| (i % 251) as u8)
            .collect();
        assert!(w.write(&data, 1 << 20).unwrap());
        let mut back = vec![0u8; data.len()];
        f.read_exact_at(&mut back, 1 << 20).unwrap();
        assert!(back == data, "a buffered read sees the direct write");
        assert!(!w.write(&data[..4096], 0).unwrap(), "short: buffered");
        assert!(
            !w.write(&data[..MIN_BYTES], 512).unwrap(),
            "unaligned: buffered"
        );
    }
}
