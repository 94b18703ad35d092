//! The pool: devices joined into one store of checksummed blocks.
//!
//! Writing a block runs the pipeline compress → checksum → allocate → write
//! every copy; reading runs it backwards, verifying each copy against the
//! checksum in the block pointer and rewriting damaged copies from a good
//! one (self-heal). A commit persists the txg's space map records, flushes,
//! writes the uberblock to every label of every device, and flushes again:
//! only after the second flush is the txg durable.
//!
//! Invariants:
//! - a block is written only to space the allocator just handed out, never
//!   over a live block (self-heal rewrites identical bytes, the one exception);
//! - no data leaves `read_block` unless its checksum matched;
//! - after a failed commit the pool refuses further commits (its on-disk
//!   state is whatever the last good uberblock says; reopen to continue).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aegis_block::DeviceRef;
use parking_lot::Mutex;

use crate::allocator::{AllocClass, Allocator, Extent};
use crate::blkptr::{BlockPtr, BlockType, Dva, MAX_BLOCK_BYTES};
use crate::checksum::ChecksumType;
use crate::compression::Compression;
use crate::error::{PoolError, Result};
use crate::features::Features;
use crate::label::{
    data_area, label_offsets, DeviceEntry, LabelConfig, BLOCK_SIZES, CONFIG_SIZE, FORMAT_VERSION,
    LABEL_COUNT, LABEL_SIZE, MAX_DEVICES, MAX_LABEL_NAME, MIN_DEVICE_SIZE, UBER_RING_OFFSET,
};
use crate::space_map::{entries_per_block, SpaceMapBlock, FLAG_CONDENSED};
use crate::tree_root::TreeRoot;
use crate::uberblock::{Uberblock, UBER_SLOTS, UBER_SLOT_SIZE};
use crate::write_behind::{Buffered, WriteBehind};

/// Hard cap on a space map chain walked at open: a damaged uberblock must
/// not send the loader around forever.
const MAX_SPACE_MAP_BLOCKS: u64 = 1 << 20;
/// Condense when the chain is this many blocks longer than a fresh one.
const CONDENSE_SLACK: u64 = 32;

#[derive(Clone, Debug)]
pub struct CreateOptions {
    pub block_size: u32,
    pub label: String,
    pub metadata_copies: u8,
    pub checksum: ChecksumType,
    pub metadata_compression: Compression,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            block_size: 4096,
            label: String::new(),
            metadata_copies: 2,
            checksum: ChecksumType::Blake3,
            metadata_compression: Compression::Lz4,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    pub read_only: bool,
    /// Open this exact txg instead of the newest (time travel / rewind).
    pub rewind_txg: Option<u64>,
}

/// What `open` found and chose, for `info` and `fsck` to report.
#[derive(Clone, Debug, Default)]
pub struct OpenReport {
    pub txg: u64,
    pub newest_txg: u64,
    /// Newer uberblocks passed over, with the reason.
    pub skipped: Vec<(u64, String)>,
    /// Labels that were damaged (the pool opened from another copy).
    pub label_problems: Vec<String>,
}

/// How to store one block.
#[derive(Clone, Copy, Debug)]
pub struct WriteProps {
    pub block_type: BlockType,
    pub level: u8,
    pub copies: u8,
    pub checksum: ChecksumType,
    pub compression: Compression,
    pub class: AllocClass,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceInfo {
    pub total: u64,
    pub free: u64,
    pub deferred: u64,
    pub reserve: u64,
}

impl SpaceInfo {
    pub fn used(&self) -> u64 {
        self.total - self.free - self.deferred
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    pub healed: AtomicU64,
    pub checksum_errors: AtomicU64,
    pub io_errors: AtomicU64,
}

/// Outcome of checking every copy of a block.
#[derive(Clone, Debug)]
pub struct CopyCheck {
    pub states: Vec<CopyState>,
    /// The block's (decompressed) contents, when some copy was good.
    pub data: Option<Vec<u8>>,
    /// Indices of the bad copies rewritten from a good one.
    pub repaired: Vec<usize>,
}

/// Outcome of checking one copy of a block (fsck, scrub).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyState {
    Good,
    Bad(String),
}

struct State {
    open_txg: u64,
    last: Option<Uberblock>,
    /// The space map chain, oldest first.
    chain: Vec<BlockPtr>,
    failed: Option<String>,
    /// Write a condensed space map at the next commit (after a rebuild).
    force_condense: bool,
}

/// Heal reports kept for fsck to collect (older ones are counted only).
const MAX_HEAL_LOG: usize = 4096;

pub struct Pool {
    devices: Vec<DeviceRef>,
    /// Copies rewritten by self-heal since the last `take_heal_log`.
    heal_log: Mutex<Vec<String>>,
    config: LabelConfig,
    read_only: bool,
    alloc: Mutex<Allocator>,
    state: Mutex<State>,
    counters: Counters,
    /// New blocks of the open txg, written out by the commit.
    behind: Mutex<WriteBehind>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Pool {
    /// Write fresh labels on `devices` and return the pool, with txg 1 open
    /// and nothing committed: the caller builds its trees and commits.
    pub fn create(devices: Vec<DeviceRef>, opts: &CreateOptions) -> Result<Pool> {
        if !BLOCK_SIZES.contains(&opts.block_size) {
            return Err(PoolError::Invalid(format!(
                "block size {} is not one of 4K, 8K, 16K, 32K, 64K",
                opts.block_size
            )));
        }
        if opts.label.len() > MAX_LABEL_NAME {
            return Err(PoolError::Invalid(format!(
                "label is {} bytes; at most {MAX_LABEL_NAME}",
                opts.label.len()
            )));
        }
        if opts.label.contains('\0') {
            return Err(PoolError::Invalid("label contains a NUL byte".into()));
        }
        if !(1..=3).contains(&opts.metadata_copies) {
            return Err(PoolError::Invalid(
                "metadata copies must be 1, 2 or 3".into(),
            ));
        }
        if devices.is_empty() || devices.len() > MAX_DEVICES {
            return Err(PoolError::Invalid(format!(
                "a pool has 1 to {MAX_DEVICES} devices"
            )));
        }
        for d in &devices {
            if d.size() < MIN_DEVICE_SIZE {
                return Err(PoolError::Invalid(format!(
                    "{} is {} bytes; the smallest device AegisFS can use is {} MiB",
                    d.name(),
                    d.size(),
                    MIN_DEVICE_SIZE >> 20
                )));
            }
        }
        let pool_uuid = *uuid::Uuid::new_v4().as_bytes();
        let created_ns = now_ns();
        let table: Vec<DeviceEntry> = devices
            .iter()
            .map(|d| {
                let (data_start, data_end) = data_area(d.size(), opts.block_size);
                DeviceEntry {
                    uuid: *uuid::Uuid::new_v4().as_bytes(),
                    size: d.size(),
                    data_start,
                    data_end,
                }
            })
            .collect();
        let mut config = None;
        for (i, dev) in devices.iter().enumerate() {
            let cfg = LabelConfig {
                version: FORMAT_VERSION,
                block_size: opts.block_size,
                features: Features::current(),
                pool_uuid,
                device_uuid: table[i].uuid,
                device_index: i as u32,
                device_size: table[i].size,
                created_ns,
                generation: 1,
                label: opts.label.clone(),
                metadata_copies: opts.metadata_copies,
                checksum: opts.checksum,
                metadata_compression: opts.metadata_compression,
                devices: table.clone(),
            };
            // The whole label region is written, so stale signatures of other
            // filesystems and stale uberblocks inside it are gone.
            let mut region = vec![0u8; LABEL_SIZE as usize];
            region[..CONFIG_SIZE].copy_from_slice(&cfg.encode());
            for off in label_offsets(dev.size()) {
                dev.write_at(&region, off)?;
            }
            dev.flush()?;
            if i == 0 {
                config = Some(cfg);
            }
        }
        let config = config.expect("at least one device");
        Ok(Pool::assemble(devices, config, false, 1))
    }

    /// A pool in memory with every device's data area free and `open_txg`
    /// open; `open` then replays the chosen space map into it.
    fn assemble(
        devices: Vec<DeviceRef>,
        config: LabelConfig,
        read_only: bool,
        open_txg: u64,
    ) -> Pool {
        Pool {
            devices,
            alloc: Mutex::new(empty_allocator(&config)),
            config,
            read_only,
            state: Mutex::new(State {
                open_txg,
                last: None,
                chain: Vec::new(),
                failed: None,
                force_condense: false,
            }),
            counters: Counters::default(),
            behind: Mutex::new(WriteBehind::default()),
            heal_log: Mutex::new(Vec::new()),
        }
    }

    /// Open an existing pool: best label per device, then the newest
    /// uberblock whose space map and root block verify.
    pub fn open(devices: Vec<DeviceRef>, opts: &OpenOptions) -> Result<(Arc<Pool>, OpenReport)> {
        // Without a layer above to decode it, reading the pool tree's root
        // block (checksum verified) is the test of a candidate.
        Pool::open_verified(devices, opts, &|pool, ub| match &ub.pool_root.root {
            Some(bp) => pool.read_block(bp).map(|_| ()),
            None => Ok(()),
        })
    }

    /// As [`Pool::open`], with `verify` deciding whether a candidate
    /// uberblock whose space map replays is usable (the layer above decodes
    /// its trees).
    pub fn open_verified(
        devices: Vec<DeviceRef>,
        opts: &OpenOptions,
        verify: &dyn Fn(&Arc<Pool>, &Uberblock) -> Result<()>,
    ) -> Result<(Arc<Pool>, OpenReport)> {
        let mut report = OpenReport::default();
        let mut found: Vec<(LabelConfig, DeviceRef)> = Vec::new();
        for dev in devices {
            let cfg = read_best_label(&dev, &mut report.label_problems)?;
            found.push((cfg, dev));
        }
        let first = found
            .first()
            .ok_or_else(|| PoolError::Invalid("no devices given".into()))?
            .0
            .clone();
        if found.len() != first.devices.len() {
            return Err(PoolError::Invalid(format!(
                "the pool has {} devices, {} given",
                first.devices.len(),
                found.len()
            )));
        }
        for (cfg, dev) in &found {
            if cfg.pool_uuid != first.pool_uuid {
                return Err(PoolError::Invalid(format!(
                    "{} belongs to another pool",
                    dev.name()
                )));
            }
        }
        found.sort_by_key(|(c, _)| c.device_index);
        if found
            .iter()
            .enumerate()
            .any(|(i, (c, _))| c.device_index as usize != i)
        {
            return Err(PoolError::Invalid("the same device was given twice".into()));
        }
        // The config with the highest generation carries the current table.
        let config = found
            .iter()
            .max_by_key(|(c, _)| c.generation)
            .map(|(c, _)| c.clone())
            .expect("non-empty");
        let unknown_ro = config.unknown_ro_compat();
        if unknown_ro != 0 && !opts.read_only {
            return Err(PoolError::UnknownRoCompat {
                device: found[0].1.name(),
                bits: unknown_ro,
            });
        }
        let devices: Vec<DeviceRef> = found.into_iter().map(|(_, d)| d).collect();
        for (d, entry) in devices.iter().zip(&config.devices) {
            if d.size() < entry.size {
                return Err(PoolError::corrupt(
                    format!("device {}", d.name()),
                    format!(
                        "it is {} bytes but was formatted with {} (truncated?)",
                        d.size(),
                        entry.size
                    ),
                ));
            }
        }
        let pool = Arc::new(Pool::assemble(devices, config, opts.read_only, 0));

        let candidates = pool.read_uberblocks(&mut report.label_problems);
        report.newest_txg = candidates.keys().next_back().copied().unwrap_or(0);
        if candidates.is_empty() {
            return Err(PoolError::NoUberblock(
                "no valid uberblock in any label (was mkfs interrupted?)".into(),
            ));
        }
        for (&txg, ub) in candidates.iter().rev() {
            if let Some(want) = opts.rewind_txg {
                if txg != want {
                    continue;
                }
            }
            match pool
                .load_space(ub)
                .and_then(|r| verify(&pool, ub).map(|()| r))
            {
                Ok((alloc, chain)) => {
                    *pool.alloc.lock() = alloc;
                    {
                        let mut st = pool.state.lock();
                        st.open_txg = report.newest_txg + 1;
                        st.last = Some(ub.clone());
                        st.chain = chain;
                    }
                    report.txg = txg;
                    return Ok((pool, report));
                }
                Err(e) => {
                    tracing::warn!(txg, error = %e, "uberblock does not verify; trying an older one");
                    report.skipped.push((txg, e.to_string()));
                }
            }
        }
        let why = match opts.rewind_txg {
            Some(t) if !candidates.contains_key(&t) => format!(
                "txg {t} is not in the uberblock ring (have {:?})",
                candidates.keys().collect::<Vec<_>>()
            ),
            _ => report
                .skipped
                .iter()
                .map(|(t, e)| format!("txg {t}: {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        };
        Err(PoolError::NoUberblock(why))
    }

    /// Every valid uberblock in every label of every device, by txg.
    fn read_uberblocks(&self, problems: &mut Vec<String>) -> BTreeMap<u64, Uberblock> {
        let mut out = BTreeMap::new();
        let mut ring = vec![0u8; (UBER_SLOTS as usize) * UBER_SLOT_SIZE];
        for (dev, entry) in self.devices.iter().zip(&self.config.devices) {
            for off in label_offsets(entry.size) {
                if let Err(e) = dev.read_at(&mut ring, off + UBER_RING_OFFSET) {
                    problems.push(format!("{}: uberblock ring at {off}: {e}", dev.name()));
                    continue;
                }
                for slot in ring.chunks(UBER_SLOT_SIZE) {
                    match Uberblock::decode(slot) {
                        Ok(Some(ub)) if ub.pool_uuid == self.config.pool_uuid => {
                            out.entry(ub.txg).or_insert(ub);
                        }
                        Ok(_) => {}
                        // A torn or damaged slot: the ring holds older ones.
                        Err(_) => {}
                    }
                }
            }
        }
        out
    }

    /// Replay the space map chain of `ub`.
    fn load_space(&self, ub: &Uberblock) -> Result<(Allocator, Vec<BlockPtr>)> {
        let mut alloc = empty_allocator(&self.config);
        let mut blocks = Vec::new();
        let mut chain = Vec::new();
        let mut next = ub.space_map.clone();
        let limit = ub.space_map_blocks.min(MAX_SPACE_MAP_BLOCKS);
        while let Some(bp) = next {
            if chain.len() as u64 >= limit {
                return Err(PoolError::corrupt(
                    "space map",
                    format!(
                        "chain longer than the {} blocks the uberblock records",
                        ub.space_map_blocks
                    ),
                ));
            }
            if bp.block_type != BlockType::SpaceMap || bp.birth_txg > ub.txg {
                return Err(PoolError::corrupt(
                    "space map",
                    format!("chain points at {}", bp.describe()),
                ));
            }
            let blk = SpaceMapBlock::decode(&self.read_block(&bp)?)?;
            next = blk.prev.clone();
            chain.push(bp);
            blocks.push(blk);
        }
        if chain.len() as u64 != ub.space_map_blocks {
            return Err(PoolError::corrupt(
                "space map",
                format!(
                    "chain has {} blocks, uberblock records {}",
                    chain.len(),
                    ub.space_map_blocks
                ),
            ));
        }
        if let Some(first) = blocks.last() {
            if first.flags & FLAG_CONDENSED == 0 {
                return Err(PoolError::corrupt(
                    "space map",
                    "chain does not start with a condensed block",
                ));
            }
        }
        for blk in blocks.iter().rev() {
            for e in &blk.entries {
                alloc.replay(e, ub.txg)?;
            }
        }
        chain.reverse();
        Ok((alloc, chain))
    }

    pub fn config(&self) -> &LabelConfig {
        &self.config
    }
    pub fn devices(&self) -> &[DeviceRef] {
        &self.devices
    }
    pub fn block_size(&self) -> u32 {
        self.config.block_size
    }
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// The txg that new blocks are born in.
    pub fn open_txg(&self) -> u64 {
        self.state.lock().open_txg
    }
    /// The last committed uberblock (None only before the first commit).
    pub fn last_uberblock(&self) -> Option<Uberblock> {
        self.state.lock().last.clone()
    }
    /// The space map chain blocks, oldest first (fsck counts them as reachable).
    pub fn space_map_chain(&self) -> Vec<BlockPtr> {
        self.state.lock().chain.clone()
    }
    pub fn space(&self) -> SpaceInfo {
        let a = self.alloc.lock();
        SpaceInfo {
            total: a.total_bytes(),
            free: a.free_bytes(),
            deferred: a.deferred_bytes(),
            reserve: a.reserve_bytes(),
        }
    }
    pub fn available(&self, class: AllocClass) -> u64 {
        self.alloc.lock().available(class)
    }
    /// Worst-case bytes a commit needs beyond writing `dirty_blocks` blocks
    /// of metadata: its space map records (an alloc per copy of each block
    /// written, a free per copy of each block replaced) and, should this
    /// commit condense, a fresh copy of the whole map. Writers check this
    /// before changing anything so that a commit can never run out of room.
    pub fn commit_overhead(&self, dirty_blocks: u64) -> u64 {
        let copies = self.config.metadata_copies as u64;
        let bs = self.config.block_size;
        let per = entries_per_block(bs) as u64;
        let records = 2 * copies * dirty_blocks + 16;
        let log_blocks = records.div_ceil(per) + 1;
        let condensed_blocks =
            (self.alloc.lock().extent_count() as u64 + records).div_ceil(per) + 1;
        (log_blocks + condensed_blocks + 2) * self.space_map_copies() as u64 * bs as u64
    }

    /// Space map blocks carry one copy more than other metadata (at most
    /// 3): every recent uberblock shares the older blocks of the chain, so
    /// one block lost on every copy would leave no txg that opens (ZFS gives
    /// its pool-wide metadata an extra ditto copy for the same reason).
    pub fn space_map_copies(&self) -> usize {
        (self.config.metadata_copies as usize + 1).min(3)
    }

    /// Allocated extents per the space map (for fsck's accounting check).
    pub fn allocated_extents(&self) -> Vec<Extent> {
        self.alloc.lock().allocated_extents()
    }
    pub fn deferred_extents(&self) -> Vec<(u64, Extent)> {
        self.alloc.lock().deferred_extents()
    }
    /// Why commits are refused, if an earlier commit failed.
    pub fn failure(&self) -> Option<String> {
        self.state.lock().failed.clone()
    }

    /// Default properties for a metadata block of the given type and level.
    pub fn metadata_props(&self, block_type: BlockType, level: u8) -> WriteProps {
        WriteProps {
            block_type,
            level,
            copies: self.config.metadata_copies,
            checksum: self.config.checksum,
            compression: self.config.metadata_compression,
            class: AllocClass::Reserved,
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(PoolError::ReadOnly);
        }
        if let Some(f) = &self.state.lock().failed {
            return Err(PoolError::Invalid(format!(
                "an earlier commit failed ({f}); reopen the pool"
            )));
        }
        Ok(())
    }

    /// Store `data` as a new block and return its pointer.
    pub fn write_block(&self, data: &[u8], props: &WriteProps) -> Result<BlockPtr> {
        self.check_writable()?;
        if data.is_empty() || data.len() > MAX_BLOCK_BYTES as usize {
            return Err(PoolError::Invalid(format!("block of {} bytes", data.len())));
        }
        let compressed = props.compression.compress(data);
        let (stored, compression) = match &compressed {
            Some(z) => (&z[..], props.compression),
            None => (data, Compression::None),
        };
        let copies = (props.copies.max(1) as usize).min(crate::blkptr::MAX_ADDRS);
        let extents = self
            .alloc
            .lock()
            .alloc(stored.len() as u64, copies, props.class)?;
        let txg = self.open_txg();
        let bp = make_ptr(props, compression, data.len(), stored, txg, &extents);
        // The copies wait for the commit (see write_behind.rs).
        let buffered = Buffered {
            stored: Arc::new(self.padded(&bp, stored)),
            checksum: bp.checksum,
            logical: (compression != Compression::None).then(|| Arc::new(data.to_vec())),
        };
        let mut wb = self.behind.lock();
        for a in &bp.addrs {
            wb.insert(a.device, a.offset, buffered.clone());
        }
        if wb.bytes() > wb.limit {
            if let Err(e) = wb.write_out(&self.devices) {
                for a in &bp.addrs {
                    wb.drop_copy(a.device, a.offset);
                }
                drop(wb);
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

    /// `stored` zero padded to the whole blocks `bp` occupies.
    fn padded(&self, bp: &BlockPtr, stored: &[u8]) -> Vec<u8> {
        let mut p = stored.to_vec();
        p.resize(bp.allocated_size(self.config.block_size) as usize, 0);
        p
    }

    /// Write `stored`, zero padded to whole blocks, to the copies `which`
    /// of `bp` (new blocks, or self-heal of damaged copies).
    fn write_copies(
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
        let bs = self.config.block_size as u64;
        let len = bp.allocated_size(self.config.block_size);
        for a in &bp.addrs {
            let ok = self.config.devices.get(a.device as usize).is_some_and(|d| {
                a.offset % bs == 0
                    && a.offset >= d.data_start
                    && a.offset
                        .checked_add(len)
                        .is_some_and(|end| end <= d.data_end)
            });
            if !ok {
                return Err(PoolError::corrupt(
                    "block pointer",
                    format!("address outside the data area: {}", bp.describe()),
                ));
            }
        }
        Ok(())
    }

    /// Read copy `i`'s stored bytes and verify them against the checksum.
    fn read_copy(&self, bp: &BlockPtr, i: usize) -> std::result::Result<Vec<u8>, String> {
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
        self.check_addrs(bp)?;
        if let Some(b) = self
            .behind
            .lock()
            .get(bp.addrs[0].device, bp.addrs[0].offset)
        {
            // A block of this txg, still in memory: it is the one `bp`
            // names if its checksum is the one computed from these bytes.
            if b.checksum == bp.checksum {
                let logical = match &b.logical {
                    Some(l) => Some(&l[..]),
                    None => b.stored.get(..bp.physical_size as usize),
                };
                if let Some(l) = logical.filter(|l| l.len() == bp.logical_size as usize) {
                    return Ok(l.to_vec());
                }
            }
        }
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
        if !bad.is_empty() && !self.read_only {
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
        bp.compression.decompress(stored, bp.logical_size as usize)
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
        if let (true, Some(stored)) = (repair, &good) {
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

    /// Free a block's space. Blocks born in the open txg are reusable at
    /// once; older ones wait out the deferral.
    pub fn free(&self, bp: &BlockPtr) -> Result<()> {
        self.check_writable()?;
        let txg = self.open_txg();
        if bp.birth_txg == txg {
            let mut wb = self.behind.lock();
            for a in &bp.addrs {
                wb.drop_copy(a.device, a.offset);
            }
        }
        free_ptr(&mut self.alloc.lock(), bp, self.config.block_size, txg)
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

    /// Fault injection: refuse the `n`th allocation from now with ENOSPC
    /// (`None` stops). Every allocation counts: data blocks, tree nodes and
    /// space map blocks at commit, intent log places.
    pub fn inject_no_space(&self, n: Option<u64>) {
        self.alloc.lock().inject_no_space(n);
    }

    /// Allocations made since the pool was opened.
    pub fn allocation_count(&self) -> u64 {
        self.alloc.lock().allocation_count()
    }

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
        if len == 0 || len % bs != 0 {
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

    /// Check that a log ring named on disk lies inside a device's data
    /// area, before anything reads or writes it.
    pub fn check_ring(&self, e: Extent) -> Result<()> {
        let bs = self.config.block_size as u64;
        let ok = e.len > 0
            && e.len % bs == 0
            && self.config.devices.get(e.device as usize).is_some_and(|d| {
                e.offset % bs == 0
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
                .map_or(true, |end| end > ring.len)
        {
            return Err(PoolError::Invalid(format!(
                "log I/O of {len} bytes at {offset} outside a ring of {}",
                ring.len
            )));
        }
        Ok(())
    }

    /// Replace the in-memory space state with exactly `allocated` (fsck
    /// repair: the reachable set is the truth). The next commit writes it
    /// as a condensed space map.
    pub fn rebuild_space_map(&self, allocated: &[Extent]) -> Result<()> {
        self.check_writable()?;
        let mut fresh = empty_allocator(&self.config);
        let txg = self.open_txg();
        for e in allocated {
            let rec = crate::space_map::SpaceEntry {
                op: crate::space_map::SpaceOp::Alloc,
                device: e.device,
                offset: e.offset,
                len: e.len,
                txg,
            };
            fresh.replay(&rec, txg)?;
        }
        *self.alloc.lock() = fresh;
        self.state.lock().force_condense = true;
        Ok(())
    }

    /// Make the open txg durable with `pool_root` as its root. Returns the
    /// committed txg.
    pub fn commit(&self, pool_root: &TreeRoot) -> Result<u64> {
        self.check_writable()?;
        let txg = self.open_txg();
        match self.commit_inner(txg, pool_root) {
            Ok(()) => Ok(txg),
            Err(e) => {
                self.state.lock().failed = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn commit_inner(&self, txg: u64, pool_root: &TreeRoot) -> Result<()> {
        let (head, nblocks) = self.write_space_map(txg)?;
        self.behind.lock().write_out(&self.devices)?;
        for d in &self.devices {
            d.flush()?;
        }
        let ub = Uberblock {
            txg,
            timestamp_ns: now_ns(),
            pool_uuid: self.config.pool_uuid,
            space_map_blocks: nblocks,
            pool_root: pool_root.clone(),
            space_map: head,
            log_head: None,
        };
        let bytes = ub.encode();
        let slot = (txg % UBER_SLOTS) * UBER_SLOT_SIZE as u64;
        let mut written = 0;
        let mut last_err = None;
        for (dev, entry) in self.devices.iter().zip(&self.config.devices) {
            for off in label_offsets(entry.size) {
                // One bad label must not fail the commit: the others carry it.
                match dev.write_at(&bytes, off + UBER_RING_OFFSET + slot) {
                    Ok(()) => written += 1,
                    Err(e) => last_err = Some(e),
                }
            }
        }
        if written == 0 {
            return Err(last_err
                .map(PoolError::from)
                .unwrap_or_else(|| PoolError::Invalid("no label written".into())));
        }
        for d in &self.devices {
            d.flush()?;
        }
        self.alloc.lock().release_deferred(txg);
        let mut st = self.state.lock();
        st.last = Some(ub);
        st.open_txg = txg + 1;
        Ok(())
    }

    /// Persist this txg's space records; returns the new chain head and length.
    fn write_space_map(&self, txg: u64) -> Result<(Option<BlockPtr>, u64)> {
        let bs = self.config.block_size;
        let per = entries_per_block(bs);
        let copies = self.space_map_copies();
        let props = WriteProps {
            compression: Compression::None,
            ..self.metadata_props(BlockType::SpaceMap, 0)
        };
        let (old_chain, old_head, forced) = {
            let mut st = self.state.lock();
            (
                st.chain.clone(),
                st.last.as_ref().and_then(|u| u.space_map.clone()),
                std::mem::take(&mut st.force_condense),
            )
        };
        let mut alloc = self.alloc.lock();
        if alloc.log_len() == 0 && old_head.is_some() && !forced {
            return Ok((old_head, old_chain.len() as u64));
        }
        let fresh_estimate = (alloc.extent_count() as u64 + 1).div_ceil(per as u64);
        let condense = forced
            || old_head.is_none()
            || old_chain.len() as u64 > 2 * fresh_estimate + CONDENSE_SLACK;

        let (entries, extents, mut prev, flags) = if condense {
            for bp in &old_chain {
                free_ptr(&mut alloc, bp, bs, txg)?;
            }
            let mut n = fresh_estimate.max(1) as usize;
            loop {
                let mut extents = Vec::with_capacity(n);
                for _ in 0..n {
                    extents.push(alloc.alloc(bs as u64, copies, AllocClass::Reserved)?);
                }
                let entries = alloc.condensed();
                if entries.len() <= n * per {
                    alloc.take_log(); // the condensed records subsume this txg's log
                    break (entries, extents, None, FLAG_CONDENSED);
                }
                for x in extents.iter().flatten() {
                    alloc.free(*x, txg, true)?;
                }
                n = entries.len().div_ceil(per) + 1;
            }
        } else {
            let mut entries = alloc.take_log();
            let mut n = entries.len().div_ceil(per);
            while (entries.len() + n * copies).div_ceil(per) > n {
                n = (entries.len() + n * copies).div_ceil(per);
            }
            let mut extents = Vec::with_capacity(n);
            for _ in 0..n {
                extents.push(alloc.alloc(bs as u64, copies, AllocClass::Reserved)?);
            }
            entries.extend(alloc.take_log());
            assert!(entries.len() <= n * per, "space map blocks under-allocated");
            (entries, extents, old_head, 0)
        };
        drop(alloc);

        let mut chain = if flags == FLAG_CONDENSED {
            Vec::new()
        } else {
            old_chain
        };
        let mut chunks = entries.chunks(per);
        for (i, ext) in extents.iter().enumerate() {
            let blk = SpaceMapBlock {
                flags: if i == 0 { flags } else { 0 },
                txg,
                prev: prev.take(),
                entries: chunks.next().map(|c| c.to_vec()).unwrap_or_default(),
            };
            let data = blk.encode(bs);
            let bp = make_ptr(&props, Compression::None, data.len(), &data, txg, ext);
            self.write_copies(&bp, &data, 0..ext.len())?;
            prev = Some(bp.clone());
            chain.push(bp);
        }
        let n = chain.len() as u64;
        self.state.lock().chain = chain;
        Ok((prev, n))
    }
}

/// The pointer to `stored` (the bytes written, compressed or not) at
/// `extents`, born in `txg`.
fn make_ptr(
    props: &WriteProps,
    compression: Compression,
    logical: usize,
    stored: &[u8],
    txg: u64,
    extents: &[Extent],
) -> BlockPtr {
    BlockPtr {
        checksum_type: props.checksum,
        compression,
        block_type: props.block_type,
        level: props.level,
        logical_size: logical as u32,
        physical_size: stored.len() as u32,
        birth_txg: txg,
        checksum: props.checksum.compute(stored),
        addrs: extents
            .iter()
            .map(|x| Dva {
                device: x.device,
                offset: x.offset,
            })
            .collect(),
    }
}

/// An allocator with every device's data area free.
fn empty_allocator(config: &LabelConfig) -> Allocator {
    let areas: Vec<(u64, u64)> = config
        .devices
        .iter()
        .map(|d| (d.data_start, d.data_end))
        .collect();
    Allocator::new(&areas, config.block_size)
}

/// Free every copy of `bp` in the txg `txg`: at once if it was born in
/// that (still open) txg, else deferred.
fn free_ptr(alloc: &mut Allocator, bp: &BlockPtr, block_size: u32, txg: u64) -> Result<()> {
    let len = bp.allocated_size(block_size);
    for d in &bp.addrs {
        alloc.free(
            Extent {
                device: d.device,
                offset: d.offset,
                len,
            },
            txg,
            bp.birth_txg == txg,
        )?;
    }
    Ok(())
}

/// The valid label with the highest generation on `dev`. Labels of a future
/// version or with unknown incompat features stop the open with that error.
fn read_best_label(dev: &DeviceRef, problems: &mut Vec<String>) -> Result<LabelConfig> {
    let name = dev.name();
    if dev.size() < CONFIG_SIZE as u64 {
        return Err(PoolError::NotAegis { device: name });
    }
    let mut offsets: Vec<u64> = vec![0, LABEL_SIZE];
    offsets.retain(|&o| o + CONFIG_SIZE as u64 <= dev.size());
    if dev.size() >= MIN_DEVICE_SIZE {
        offsets.extend(&label_offsets(dev.size())[2..]);
    }
    let mut best: Option<LabelConfig> = None;
    let mut damaged = 0;
    let mut buf = vec![0u8; CONFIG_SIZE];
    for (i, off) in offsets.iter().enumerate() {
        if let Err(e) = dev.read_at(&mut buf, *off) {
            problems.push(format!("{name}: label {i}: {e}"));
            damaged += 1;
            continue;
        }
        match LabelConfig::decode(&buf, &name) {
            Ok(Some(c)) => {
                if best.as_ref().is_none_or(|b| c.generation > b.generation) {
                    best = Some(c);
                }
            }
            Ok(None) => {}
            Err(e @ (PoolError::UnknownIncompat { .. } | PoolError::UnsupportedVersion { .. })) => {
                return Err(e)
            }
            Err(e) => {
                problems.push(format!("{name}: label {i}: {e}"));
                damaged += 1;
            }
        }
    }
    debug_assert!(offsets.len() <= LABEL_COUNT);
    match best {
        Some(c) => Ok(c),
        None if damaged > 0 => Err(PoolError::corrupt(
            format!("labels of {name}"),
            problems.join("; "),
        )),
        None => Err(PoolError::NotAegis { device: name }),
    }
}
