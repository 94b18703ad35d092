//! The block pipeline and self-heal: write_block, read_block, the copies.
//!
//! A write compresses, checksums, allocates every copy at once and leaves
//! the copies in the write-behind buffer for the commit; a read verifies
//! each copy against the checksum in its pointer before anything leaves,
//! and rewrites the damaged copies from the first good one. Why it holds
//! together: the checksum lives in the parent's pointer, so a copy that
//! matches it is the block the parent meant (not merely an intact block);
//! a pointer's addresses are checked against the data area before any
//! device is touched, since pointers come from disk; and self-heal writes
//! back exactly the verified stored bytes, zero padded as the first write
//! was, so a healed copy is byte for byte what that write put there (a
//! read-only pool reports damage but never rewrites). Freeing a block born
//! in the open txg drops its buffered copies: they need never be written.
//! Data blocks may be read through the decoded-data cache
//! (`block_cache`): it is filled only with what a verified read returned,
//! and freeing a block drops its entry.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::MutexGuard;

use super::{free_ptr, CopyCheck, CopyState, Pool, WriteProps};
use crate::allocator::Extent;
use crate::blkptr::{BlockPtr, BlockType, Dva, MAX_BLOCK_BYTES};
use crate::block_cache::{key_of, BlockData, CachePolicy, CacheStats};
use crate::checksum::ChecksumType;
use crate::compression::Compression;
use crate::error::{PoolError, Result};
use crate::write_behind::{Buffered, WriteBehind};

/// Heal reports kept for fsck to collect (older ones are counted only).
const MAX_HEAL_LOG: usize = 4096;

impl Pool {
    /// Store `data` as a new block and return its pointer.
    pub fn write_block(&self, data: &[u8], props: &WriteProps) -> Result<BlockPtr> {
        let encoded = self.encode_block(data, props);
        self.write_encoded(data, props, encoded)
    }

    /// The CPU work of writing `data` with `props`: compression and the
    /// checksum. It takes no lock, so a commit can encode many blocks on
    /// several threads and then place them one by one.
    pub fn encode_block(&self, data: &[u8], props: &WriteProps) -> EncodedBlock {
        let compressed = props.compression.compress(data);
        let stored = compressed.as_deref().unwrap_or(data);
        EncodedBlock {
            checksum: props.checksum.compute(stored),
            compression: compressed
                .as_ref()
                .map_or(Compression::None, |_| props.compression),
            compressed,
            asked: (props.compression, props.checksum),
            logical_len: data.len(),
        }
    }

    /// Store `data` as a new block, as `encoded` (from
    /// [`Pool::encode_block`] of these bytes and props) says. An encoding
    /// of another length or other props is not used: the block is encoded
    /// again.
    pub fn write_encoded(
        &self,
        data: &[u8],
        props: &WriteProps,
        encoded: EncodedBlock,
    ) -> Result<BlockPtr> {
        self.check_writable()?;
        if data.is_empty() || data.len() > MAX_BLOCK_BYTES as usize {
            return Err(PoolError::Invalid(format!("block of {} bytes", data.len())));
        }
        let encoded = match encoded.fits(data, props) {
            true => encoded,
            false => self.encode_block(data, props),
        };
        let EncodedBlock {
            compressed,
            compression,
            checksum,
            ..
        } = encoded;
        let stored = compressed.as_deref().unwrap_or(data);
        let copies = (props.copies.max(1) as usize).min(crate::blkptr::MAX_ADDRS);
        let placed = self
            .alloc
            .lock()
            .alloc(stored.len() as u64, copies, props.class);
        let txg = self.open_txg();
        let extents = match placed {
            Ok(x) => x,
            Err(PoolError::NoSpace { .. }) if self.may_gang(stored.len(), copies) => {
                // No free extent holds it whole: in pieces (gang.rs).
                let header = self.place_gang(stored, checksum, data, props.class)?;
                let mut bp = make_ptr_with(
                    props,
                    compression,
                    data.len(),
                    stored,
                    txg,
                    &[header],
                    checksum,
                );
                bp.gang = true;
                self.counters.gang_blocks.fetch_add(1, Ordering::Relaxed);
                return Ok(bp);
            }
            Err(e) => return Err(e),
        };
        let bp = make_ptr_with(
            props,
            compression,
            data.len(),
            stored,
            txg,
            &extents,
            checksum,
        );
        // The copies wait for the commit (see write_behind.rs); compressed
        // bytes are ours already, so they are padded in place.
        let padded = match compressed {
            Some(mut z) => {
                z.resize(bp.copy_size(self.config.block_size) as usize, 0);
                z
            }
            None => self.padded(&bp, data),
        };
        let buffered = Buffered {
            stored: Arc::new(padded),
            checksum: bp.checksum,
            logical: (compression != Compression::None).then(|| Arc::new(data.to_vec())),
        };
        if props.block_type == BlockType::Data {
            self.cache_written(&bp, &buffered);
        }
        let mut wb = self.buffer(&bp, buffered);
        if wb.over_limit() {
            if let Err(e) = wb.write_out(&self.devices) {
                for a in &bp.addrs {
                    wb.drop_copy(a.device, a.offset);
                }
                drop(wb);
                if let Some(key) = key_of(&bp) {
                    self.data_cache.remove(&key);
                }
                let mut a = self.alloc.lock();
                for x in &extents {
                    // Born in this txg and never referenced: reusable at once.
                    let _ = a.free(*x, txg, true);
                }
                return Err(e);
            }
        }
        Ok(bp)
    }

    /// Keep a just-written data block's bytes in the data cache, shared
    /// with the write-behind buffer (no copy): a small write into a record
    /// after its commit finds it decoded, instead of reading and
    /// decompressing it again (since direct writes, from the device
    /// itself), as ZFS's ARC keeps the blocks a txg wrote. The bytes are
    /// the very ones the checksum was computed from, so the cache's rule
    /// (only bytes known to match their pointer) holds. An uncompressed
    /// block whose stored copy was padded has no unpadded buffer to share
    /// and is left out.
    fn cache_written(&self, bp: &BlockPtr, buffered: &Buffered) {
        let logical = match &buffered.logical {
            Some(l) => l.clone(),
            None if buffered.stored.len() == bp.logical_size as usize => buffered.stored.clone(),
            None => return,
        };
        if let Some(key) = key_of(bp) {
            self.data_cache.insert(key, logical);
        }
    }

    /// Leave every copy of new block `bp` (its `stored` bytes, not
    /// compressed) in the write-behind buffer for the commit.
    pub(super) fn buffer_copies(&self, bp: &BlockPtr, stored: &[u8]) {
        let buffered = Buffered {
            stored: Arc::new(self.padded(bp, stored)),
            checksum: bp.checksum,
            logical: None,
        };
        drop(self.buffer(bp, buffered));
    }

    /// `buffered` as every copy of new block `bp`; the buffer stays locked
    /// for the caller.
    fn buffer(&self, bp: &BlockPtr, buffered: Buffered) -> MutexGuard<'_, WriteBehind> {
        let mut wb = self.behind.lock();
        for a in &bp.addrs {
            wb.insert(a.device, a.offset, buffered.clone());
        }
        wb
    }

    /// `stored` zero padded to the whole blocks each copy of `bp` takes.
    fn padded(&self, bp: &BlockPtr, stored: &[u8]) -> Vec<u8> {
        let mut p = stored.to_vec();
        p.resize(bp.copy_size(self.config.block_size) as usize, 0);
        p
    }

    /// Write `stored`, zero padded to whole blocks, to the copies `which`
    /// of `bp` (new blocks, or self-heal of damaged copies).
    pub(super) fn write_copies(
        &self,
        bp: &BlockPtr,
        stored: &[u8],
        which: impl IntoIterator<Item = usize>,
    ) -> Result<()> {
        let padded = self.padded(bp, stored);
        for i in which {
            let a = bp.addrs[i];
            self.devices[a.device as usize].write_at(&padded, a.offset)?;
        }
        Ok(())
    }

    /// Check that each address of `bp` lies in its device's data area.
    fn check_addrs(&self, bp: &BlockPtr) -> Result<()> {
        if bp.gang && !self.gangs() {
            return Err(PoolError::corrupt(
                "block pointer",
                format!(
                    "gang block in a pool without the gang feature: {}",
                    bp.describe()
                ),
            ));
        }
        let len = bp.copy_size(self.config.block_size);
        for a in &bp.addrs {
            let e = Extent {
                device: a.device,
                offset: a.offset,
                len,
            };
            self.check_extent(&e).map_err(|_| {
                PoolError::corrupt(
                    "block pointer",
                    format!("address outside the data area: {}", bp.describe()),
                )
            })?;
        }
        Ok(())
    }

    /// Check that `e` lies in its device's data area, on block boundaries.
    pub(super) fn check_extent(&self, e: &Extent) -> Result<()> {
        let bs = self.config.block_size as u64;
        let ok = self.config.devices.get(e.device as usize).is_some_and(|d| {
            e.offset.is_multiple_of(bs)
                && e.offset >= d.data_start
                && e.offset
                    .checked_add(e.len)
                    .is_some_and(|end| end <= d.data_end)
        });
        if !ok {
            return Err(PoolError::corrupt(
                "block address",
                format!("{}:{}+{} outside the data area", e.device, e.offset, e.len),
            ));
        }
        Ok(())
    }

    /// Read copy `i`'s stored bytes and verify them against the checksum.
    fn read_copy(&self, bp: &BlockPtr, i: usize) -> std::result::Result<Vec<u8>, String> {
        if bp.gang {
            let buf = self.read_gang(bp)?;
            return self.verified(bp, buf);
        }
        let a = bp.addrs[i];
        let buffered = self.behind.lock().get(a.device, a.offset);
        let mut buf = vec![0u8; bp.physical_size as usize];
        if let Some(b) = buffered {
            // Still checked: a pointer to the wrong block must not pass.
            match b.stored.get(..buf.len()) {
                Some(src) => buf.copy_from_slice(src),
                None => return Err("buffered copy shorter than the block".into()),
            }
        } else if let Err(e) = self.devices[a.device as usize].read_at(&mut buf, a.offset) {
            self.counters.io_errors.fetch_add(1, Ordering::Relaxed);
            return Err(format!("read error: {e}"));
        }
        self.verified(bp, buf)
    }

    /// `buf` if it is the stored bytes `bp`'s checksum names.
    fn verified(&self, bp: &BlockPtr, buf: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
        if bp.checksum_type.compute(&buf) != bp.checksum {
            self.counters
                .checksum_errors
                .fetch_add(1, Ordering::Relaxed);
            return Err("checksum mismatch".into());
        }
        Ok(buf)
    }

    /// Read, verify and decompress a block, healing bad copies from a good one.
    pub fn read_block(&self, bp: &BlockPtr) -> Result<Vec<u8>> {
        self.read_verified(bp, true)
    }

    /// A data block's decoded bytes, from the data cache when it holds
    /// them; a miss reads (and heals) as [`read_block`](Self::read_block)
    /// and, with `fill`, keeps the verified result. Writers that are about
    /// to replace the block pass `fill = false`: it would only push out
    /// blocks that will be read again.
    pub fn read_data(&self, bp: &BlockPtr, fill: bool) -> Result<BlockData> {
        let Some(key) = key_of(bp) else {
            return Err(PoolError::corrupt("block pointer", "no address"));
        };
        // The key names one content; the length check only guards
        // against a damaged pointer that shares a live one's key.
        let cached = || {
            self.data_cache
                .get(&key)
                .filter(|d| d.len() == bp.logical_size as usize)
        };
        if let Some(d) = cached() {
            return Ok(d);
        }
        // A read ahead of this very block may be under way: its result
        // lands in the cache, which saves reading the block twice.
        if self.flights.wait_for(&key) {
            if let Some(d) = cached() {
                return Ok(d);
            }
        }
        let data = Arc::new(self.read_block(bp)?);
        if fill {
            self.data_cache.insert(key, data.clone());
        }
        Ok(data)
    }

    /// Read a data block into the cache ahead of its reader. It never
    /// heals: the reader that asked for it may have let go of the tree, so
    /// the block may be freed and its room reused while this runs, and a
    /// "repair" would then overwrite someone else's block. A freed block
    /// fails its checksum or lands under a key no live pointer names.
    pub fn prefetch_data(&self, bp: &BlockPtr) -> Result<()> {
        let Some(key) = key_of(bp) else {
            return Ok(());
        };
        if self.data_cache.contains(&key) {
            return Ok(());
        }
        let Some(flight) = self.flights.take_off(key) else {
            // Another worker reads it, or too many are in flight.
            return Ok(());
        };
        let read = self
            .read_verified(bp, false)
            .map(|data| self.data_cache.insert(key, Arc::new(data)));
        self.flights.land(&key, &flight);
        read
    }

    /// Set the data cache's policy and size (bytes; 0 turns it off).
    pub fn configure_data_cache(&self, policy: CachePolicy, capacity_bytes: u64) {
        self.data_cache.configure(policy, capacity_bytes);
    }

    pub fn data_cache_stats(&self) -> CacheStats {
        self.data_cache.stats()
    }

    /// Empty the data cache (tests and benchmarks force device reads).
    pub fn clear_data_cache(&self) {
        self.data_cache.clear();
    }

    fn read_verified(&self, bp: &BlockPtr, heal: bool) -> Result<Vec<u8>> {
        self.check_addrs(bp)?;
        if let Some(l) = self.read_buffered(bp) {
            return Ok(l);
        }
        let stored = self.read_stored_copies(bp, heal)?;
        bp.compression.decompress(stored, bp.logical_size as usize)
    }

    /// A block's stored bytes (compressed as they lie on the device),
    /// verified against its checksum and healing bad copies as
    /// [`read_block`](Self::read_block) does: what a send stream carries.
    pub fn read_stored(&self, bp: &BlockPtr) -> Result<Vec<u8>> {
        self.check_addrs(bp)?;
        self.read_stored_copies(bp, true)
    }

    /// Store a block given in its stored form (a received stream's): the
    /// bytes must match `checksum` and decode to `logical_size` bytes, so
    /// nothing unverified is ever written; they are written as they are,
    /// never compressed again. `props` gives the type, copies and class;
    /// its compression and checksum are replaced by the block's.
    pub fn write_stored(
        &self,
        stored: Vec<u8>,
        form: StoredForm,
        props: &WriteProps,
    ) -> Result<BlockPtr> {
        let bad = |d: String| PoolError::corrupt("received block", d);
        if form.checksum_type.compute(&stored) != form.checksum {
            return Err(bad("checksum mismatch".into()));
        }
        let compressed = (form.compression != Compression::None).then(|| stored.clone());
        let logical = form
            .compression
            .decompress(stored, form.logical_size as usize)?;
        if logical.len() != form.logical_size as usize {
            return Err(bad(format!(
                "{} bytes, not {}",
                logical.len(),
                form.logical_size
            )));
        }
        let props = WriteProps {
            compression: form.compression,
            checksum: form.checksum_type,
            ..*props
        };
        let encoded = EncodedBlock {
            compressed,
            compression: form.compression,
            checksum: form.checksum,
            asked: (props.compression, props.checksum),
            logical_len: logical.len(),
        };
        self.write_encoded(&logical, &props, encoded)
    }

    /// The verified stored bytes of the first good copy of `bp`.
    fn read_stored_copies(&self, bp: &BlockPtr, heal: bool) -> Result<Vec<u8>> {
        let mut bad = Vec::new();
        let mut good = None;
        for i in 0..bp.addrs.len() {
            match self.read_copy(bp, i) {
                Ok(b) => {
                    good = Some(b);
                    break;
                }
                Err(e) => bad.push((i, e)),
            }
        }
        let Some(stored) = good else {
            let why: Vec<String> = bad.iter().map(|(i, e)| format!("copy {i}: {e}")).collect();
            return Err(PoolError::Checksum {
                what: format!("{} ({})", bp.describe(), why.join(", ")),
            });
        };
        // A gang block has one copy: nothing to heal from.
        if heal && !bad.is_empty() && !self.read_only && !bp.gang {
            for (i, why) in &bad {
                if self.heal_copy(bp, *i, &stored).is_ok() {
                    tracing::warn!(block = %bp.describe(), copy = i, %why, "repaired damaged copy");
                    let mut log = self.heal_log.lock();
                    if log.len() < MAX_HEAL_LOG {
                        let a = bp.addrs[*i];
                        log.push(format!(
                            "{} copy {i} ({}:{}): {why}",
                            bp.describe(),
                            a.device,
                            a.offset
                        ));
                    }
                }
            }
        }
        Ok(stored)
    }

    /// The logical bytes of `bp` when its first copy is a block of this
    /// txg still in the write-behind buffer.
    fn read_buffered(&self, bp: &BlockPtr) -> Option<Vec<u8>> {
        let a = bp.addrs.first()?;
        let b = self.behind.lock().get(a.device, a.offset)?;
        // A block of this txg, still in memory: it is the one `bp`
        // names if its checksum is the one computed from these bytes.
        if b.checksum != bp.checksum {
            return None;
        }
        let logical = match &b.logical {
            Some(l) => Some(&l[..]),
            None => b.stored.get(..bp.physical_size as usize),
        };
        logical
            .filter(|l| l.len() == bp.logical_size as usize)
            .map(|l| l.to_vec())
    }

    fn heal_copy(&self, bp: &BlockPtr, i: usize, stored: &[u8]) -> Result<()> {
        self.write_copies(bp, stored, [i])?;
        self.counters.healed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Copies self-heal rewrote since the last call (fsck reports them).
    pub fn take_heal_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.heal_log.lock())
    }

    /// Read and verify every copy of a block independently (fsck, scrub),
    /// and with `repair` rewrite each bad copy from a good one. Returns each
    /// copy's state (as found) and the block's contents when a copy is good.
    pub fn check_copies(&self, bp: &BlockPtr, repair: bool) -> Result<CopyCheck> {
        self.check_addrs(bp)?;
        if repair {
            self.check_writable()?;
        }
        let mut states = Vec::with_capacity(bp.addrs.len());
        let mut good = None;
        for i in 0..bp.addrs.len() {
            match self.read_copy(bp, i) {
                Ok(b) => {
                    good.get_or_insert(b);
                    states.push(CopyState::Good);
                }
                Err(e) => states.push(CopyState::Bad(e)),
            }
        }
        let mut repaired = Vec::new();
        if let (true, Some(stored), false) = (repair, &good, bp.gang) {
            for (i, s) in states.iter_mut().enumerate() {
                if let CopyState::Bad(why) = s {
                    match self.heal_copy(bp, i, stored) {
                        Ok(()) => repaired.push(i),
                        Err(e) => why.push_str(&format!("; rewrite failed: {e}")),
                    }
                }
            }
        }
        let data = good
            .map(|g| bp.compression.decompress(g, bp.logical_size as usize))
            .transpose()?;
        Ok(CopyCheck {
            states,
            data,
            repaired,
        })
    }

    /// Free a block's space. Blocks whose bytes were written in the open
    /// txg (physical birth: a reflink's pointer born now may name older
    /// bytes) are reusable at once; older ones wait out the deferral.
    pub fn free(&self, bp: &BlockPtr) -> Result<()> {
        self.check_writable()?;
        let txg = self.open_txg();
        if let Some(key) = key_of(bp) {
            self.data_cache.remove(&key);
        }
        let now = bp.physical_birth() == txg;
        if !bp.gang {
            if now {
                let mut wb = self.behind.lock();
                for a in &bp.addrs {
                    wb.drop_copy(a.device, a.offset);
                }
            }
            return free_ptr(&mut self.alloc.lock(), bp, self.config.block_size, txg);
        }
        // A gang block's pieces are known only from its header.
        let extents = self.extents_of(bp)?;
        if now {
            let mut wb = self.behind.lock();
            for e in &extents {
                wb.drop_copy(e.device, e.offset);
            }
        }
        let mut a = self.alloc.lock();
        for e in extents {
            a.free(e, txg, now)?;
        }
        Ok(())
    }

    /// Bytes of new blocks held for the commit (the store counts them as
    /// dirty, so they bring the next commit closer as dirty nodes do).
    pub fn buffered_bytes(&self) -> u64 {
        self.behind.lock().bytes()
    }

    /// Hold at most `bytes` of new blocks until the commit (default
    /// `WRITE_BEHIND_LIMIT`); 0 writes each block at once (fault tests aim
    /// device write errors at single operations with it).
    pub fn set_write_behind(&self, bytes: u64) {
        self.behind.lock().limit = bytes;
    }
}

/// How a block's stored bytes were made: what [`Pool::write_stored`]
/// needs to check and keep them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredForm {
    pub compression: Compression,
    pub checksum_type: ChecksumType,
    pub checksum: [u8; 32],
    pub logical_size: u32,
}

impl StoredForm {
    pub fn of(bp: &BlockPtr) -> StoredForm {
        StoredForm {
            compression: bp.compression,
            checksum_type: bp.checksum_type,
            checksum: bp.checksum,
            logical_size: bp.logical_size,
        }
    }
}

/// A block compressed and checksummed, not yet placed
/// ([`Pool::encode_block`]).
pub struct EncodedBlock {
    compressed: Option<Vec<u8>>,
    compression: Compression,
    checksum: [u8; 32],
    /// What it was encoded for: the props' compression and checksum, and
    /// the data's length.
    asked: (Compression, ChecksumType),
    logical_len: usize,
}

impl EncodedBlock {
    fn fits(&self, data: &[u8], props: &WriteProps) -> bool {
        self.logical_len == data.len() && self.asked == (props.compression, props.checksum)
    }
}

/// The pointer to `stored` (the bytes written, compressed or not) at
/// `extents`, born in `txg`.
pub(super) fn make_ptr(
    props: &WriteProps,
    compression: Compression,
    logical: usize,
    stored: &[u8],
    txg: u64,
    extents: &[Extent],
) -> BlockPtr {
    let checksum = props.checksum.compute(stored);
    make_ptr_with(props, compression, logical, stored, txg, extents, checksum)
}

/// As [`make_ptr`], with the checksum of `stored` already computed.
pub(super) fn make_ptr_with(
    props: &WriteProps,
    compression: Compression,
    logical: usize,
    stored: &[u8],
    txg: u64,
    extents: &[Extent],
    checksum: [u8; 32],
) -> BlockPtr {
    BlockPtr {
        checksum_type: props.checksum,
        compression,
        block_type: props.block_type,
        level: props.level,
        logical_size: logical as u32,
        physical_size: stored.len() as u32,
        birth_txg: txg,
        birth_delta: 0,
        checksum,
        addrs: extents
            .iter()
            .map(|x| Dva {
                device: x.device,
                offset: x.offset,
            })
            .collect(),
        gang: false,
    }
}
