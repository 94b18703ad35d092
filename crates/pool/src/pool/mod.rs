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
//!
//! This file holds the [`Pool`] itself, the types of its interface and the
//! small accessors; the work is split by concern: `open.rs` (create, open,
//! labels, the choice of uberblock), `io.rs` (the block pipeline and
//! self-heal), `commit.rs` (the space map and the commit) and
//! `log_region.rs` (the intent-log ring). The device list and the config's
//! device table have the same length and order once a pool exists (`open`
//! refuses labels that disagree), so a device index checked against the
//! table also indexes `devices`.

mod commit;
mod gang;
mod io;
mod log_region;
mod open;
mod prefetch_flights;

pub use commit::ClosedTxg;
pub use io::{EncodedBlock, StoredForm};

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aegis_block::{DeviceRef, GatedDevice};
use parking_lot::Mutex;

use crate::allocator::{AllocClass, Allocator, Extent};
use crate::blkptr::{BlockPtr, BlockType};
use crate::block_cache::{BlockCache, CachePolicy};
use crate::checksum::ChecksumType;
use crate::compression::Compression;
use crate::error::{PoolError, Result};
use crate::label::LabelConfig;
use crate::uberblock::Uberblock;
use crate::write_behind::WriteBehind;

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
    /// Blocks written in pieces behind a gang header (a fragmented pool).
    pub gang_blocks: AtomicU64,
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

pub struct Pool {
    /// The devices, each behind its gate (`devices[i]` is `gates[i]`).
    devices: Vec<DeviceRef>,
    /// Shut by [`Pool::halt`]: from then on nothing reaches a device.
    gates: Vec<Arc<GatedDevice>>,
    /// Copies rewritten by self-heal since the last `take_heal_log`.
    heal_log: Mutex<Vec<String>>,
    config: LabelConfig,
    read_only: bool,
    alloc: Mutex<Allocator>,
    state: Mutex<State>,
    counters: Counters,
    /// New blocks of the open txg, written out by the commit.
    behind: Mutex<WriteBehind>,
    /// Decoded data blocks (`read_data`), dropped as they are freed.
    data_cache: BlockCache,
    /// Reads ahead in progress, which readers of the same block wait for.
    flights: prefetch_flights::Flights,
}

/// The data cache's size until the store above sets its own.
const DEFAULT_DATA_CACHE_BYTES: u64 = 64 << 20;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Pool {
    /// A pool in memory with every device's data area free and `open_txg`
    /// open; `open` then replays the chosen space map into it.
    fn assemble(
        devices: Vec<DeviceRef>,
        config: LabelConfig,
        read_only: bool,
        open_txg: u64,
    ) -> Pool {
        let gates: Vec<Arc<GatedDevice>> = devices
            .into_iter()
            .map(|d| Arc::new(GatedDevice::new(d)))
            .collect();
        Pool {
            devices: gates.iter().map(|g| g.clone() as DeviceRef).collect(),
            gates,
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
            data_cache: BlockCache::new(CachePolicy::default(), DEFAULT_DATA_CACHE_BYTES),
            flights: Default::default(),
        }
    }

    pub fn config(&self) -> &LabelConfig {
        &self.config
    }
    /// Does this pool have the `snapshots` feature (so the layer above may
    /// keep blocks a dataset freed for its snapshots)?
    pub fn snapshots_enabled(&self) -> bool {
        self.config.features.incompat & crate::features::INCOMPAT_SNAPSHOTS != 0
    }
    /// Does this pool have the `received_snapshots` feature (so snapshot
    /// records may carry the guid of a sent snapshot)?
    pub fn received_enabled(&self) -> bool {
        self.config.features.incompat & crate::features::INCOMPAT_RECEIVED != 0
    }
    /// Does this pool have the `reflinks` feature (so a block may be
    /// named by several pointers, counted in the clone table)?
    pub fn reflinks_enabled(&self) -> bool {
        self.config.features.incompat & crate::features::INCOMPAT_REFLINKS != 0
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

    /// Stop every write to every device, for good (`FS_IOC_SHUTDOWN`):
    /// the devices keep exactly what was durable now. Commits and intent
    /// log writes still trying fail; a reopen sees the last durable state.
    pub fn halt(&self) {
        for g in &self.gates {
            g.shut();
        }
        let mut st = self.state.lock();
        if st.failed.is_none() {
            st.failed = Some("the pool was shut down".into());
        }
    }

    pub fn is_halted(&self) -> bool {
        self.gates.iter().any(|g| g.is_shut())
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    /// The txg that new blocks are born in.
    pub fn open_txg(&self) -> u64 {
        self.state.lock().open_txg
    }
    /// The newest txg on disk: every change of it and before is durable.
    /// During a commit's second stage this is the txg before the closed
    /// one, while `open_txg` is already the one after it.
    pub fn durable_txg(&self) -> u64 {
        self.state.lock().last.as_ref().map_or(0, |u| u.txg)
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

/// Free every copy of `bp` in the txg `txg`: at once if its bytes were
/// written in that (still open) txg, else deferred.
fn free_ptr(alloc: &mut Allocator, bp: &BlockPtr, block_size: u32, txg: u64) -> Result<()> {
    let len = bp.copy_size(block_size);
    for d in &bp.addrs {
        alloc.free(
            Extent {
                device: d.device,
                offset: d.offset,
                len,
            },
            txg,
            bp.physical_birth() == txg,
        )?;
    }
    Ok(())
}
