//! A bounded cache of decoded data blocks, shared by every reader of a
//! pool: a hit costs a lookup and no device read, checksum or
//! decompression.
//!
//! Keyed by the block's first address, its physical birth txg (a
//! reflink's pointers to one block share its entry) and the first bytes
//! of its checksum. A live block is never overwritten (self-heal rewrites
//! the same bytes), and a reused address holds other stored bytes, so
//! other checksum bytes: a key can never name two different contents,
//! which is why a stale entry (a block freed, or read ahead just as it was
//! freed) can waste room but never be returned for another block.
//! Entries are filled only with the bytes of a verified read or with the
//! bytes a data block was just written (and checksummed) from, and the
//! pool drops an entry when it frees the block.
//!
//! Bounded by bytes: each entry is charged its length plus
//! [`ENTRY_OVERHEAD_BYTES`]; the policy evicts before it holds more than
//! the capacity. Three policies share the interface, so that they can be
//! measured against each other on the same workload
//! (`tests::scan_beside_hot_set` and the filesystem's
//! `data_cache_policies` test): LRU-2 (the default), ARC (as ZFS) and
//! plain LRU. On a hot set of half the cache read beside a looping scan
//! of twice the cache, both adaptive policies end up keeping the hot set
//! (99% of its reads hit after 12 passes) where LRU keeps under a third;
//! LRU-2 gets there sooner (95% against ARC's 78% over passes 6 to 12
//! through the filesystem), because while T1 is full of scan blocks ARC's
//! B1 ghost list has no room left to notice a hot block coming back,
//! whereas LRU-2's history always covers a cache's worth of evictions. Both adaptive ones treat a re-reference within
//! [`CORRELATED_ACCESSES`] cache accesses as the same reference (the
//! "correlated reference period" of LRU-K, ZFS's `arc_min_prefetch`):
//! a sequential reader that takes a record in 32 pieces reads it once,
//! not 32 times, so a scan does not look hot.

mod arc;
mod lru;
mod lru_k;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::blkptr::BlockPtr;

/// A decoded block, shared with every reader that asked for it.
pub type BlockData = Arc<Vec<u8>>;

/// Accesses within which a second reference to a block counts as part of
/// the first (see the module doc).
pub(crate) const CORRELATED_ACCESSES: u64 = 64;

/// Bookkeeping charged per entry on top of its bytes (key, links, Arc).
pub(crate) const ENTRY_OVERHEAD_BYTES: u64 = 128;

/// Smallest capacity: below it a cache of 128 KiB records holds fewer
/// entries than the correlated-reference window spans.
pub const MIN_CACHE_BYTES: u64 = 1 << 20;

/// (device, offset, physical birth txg, checksum prefix) of a block's first copy.
pub(crate) type Key = (u32, u64, u64, u64);

pub(crate) fn key_of(bp: &BlockPtr) -> Option<Key> {
    let a = bp.addrs.first()?;
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&bp.checksum[..8]);
    Some((
        a.device,
        a.offset,
        bp.physical_birth(),
        u64::from_le_bytes(sum),
    ))
}

/// Which blocks a full cache gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CachePolicy {
    /// Adaptive replacement (recent and frequent lists, each with a ghost
    /// list steering the split between them): scan resistant, and it
    /// follows a working set that moves.
    Arc,
    /// LRU-2: evicts the block whose second-last reference is oldest, so
    /// blocks referenced once go first. The default: it learns a working
    /// set beside a scan fastest (see the module doc).
    #[default]
    Lru2,
    /// Least recently used: the baseline the others are measured against.
    Lru,
}

impl CachePolicy {
    pub fn parse(s: &str) -> Option<CachePolicy> {
        match s {
            "arc" => Some(CachePolicy::Arc),
            "lru2" | "lru-2" | "lruk" | "lru-k" => Some(CachePolicy::Lru2),
            "lru" => Some(CachePolicy::Lru),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            CachePolicy::Arc => "arc",
            CachePolicy::Lru2 => "lru2",
            CachePolicy::Lru => "lru",
        }
    }
}

/// What each policy provides. `now` is the cache's access clock: it
/// advances by one per lookup, so "recent" means "few accesses ago".
pub(crate) trait Policy: Send {
    fn get(&mut self, key: &Key, now: u64) -> Option<BlockData>;
    /// Add an entry of `charge` bytes that the caller just missed; the
    /// policy may decline it (a block bigger than the whole cache, or a
    /// block LRU-2 would evict first anyway). Returns the entries evicted.
    fn insert(&mut self, key: Key, data: BlockData, charge: u64, now: u64) -> u64;
    fn remove(&mut self, key: &Key);
    /// Resident, without counting as a reference.
    fn contains(&self, key: &Key) -> bool;
    fn resident_bytes(&self) -> u64;
    /// Shrink or grow; returns the entries evicted to fit.
    fn set_capacity(&mut self, bytes: u64) -> u64;
    fn clear(&mut self);
}

fn new_policy(policy: CachePolicy, capacity_bytes: u64) -> Box<dyn Policy> {
    match policy {
        CachePolicy::Arc => Box::new(arc::ArcPolicy::new(capacity_bytes)),
        CachePolicy::Lru2 => Box::new(lru_k::Lru2Policy::new(capacity_bytes)),
        CachePolicy::Lru => Box::new(lru::LruPolicy::new(capacity_bytes)),
    }
}

/// Hit and miss counts, for `stats`, the benchmarks and the policy tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub resident_bytes: u64,
    pub capacity_bytes: u64,
}

pub(crate) struct BlockCache {
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

struct Inner {
    policy: Box<dyn Policy>,
    kind: CachePolicy,
    capacity_bytes: u64,
    clock: u64,
}

impl BlockCache {
    pub(crate) fn new(policy: CachePolicy, capacity_bytes: u64) -> BlockCache {
        BlockCache {
            inner: Mutex::new(Inner {
                policy: new_policy(policy, capacity_bytes),
                kind: policy,
                capacity_bytes,
                clock: 0,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, key: &Key) -> Option<BlockData> {
        let mut g = self.inner.lock();
        g.clock += 1;
        let now = g.clock;
        let found = g.policy.get(key, now);
        drop(g);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Add the verified contents of a block that was just missed.
    pub(crate) fn insert(&self, key: Key, data: BlockData) {
        let charge = data.len() as u64 + ENTRY_OVERHEAD_BYTES;
        let mut g = self.inner.lock();
        let now = g.clock;
        let evicted = g.policy.insert(key, data, charge, now);
        drop(g);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    pub(crate) fn contains(&self, key: &Key) -> bool {
        self.inner.lock().policy.contains(key)
    }

    pub(crate) fn remove(&self, key: &Key) {
        self.inner.lock().policy.remove(key);
    }

    /// Change the size, or the policy (which starts empty).
    pub(crate) fn configure(&self, policy: CachePolicy, capacity_bytes: u64) {
        let mut g = self.inner.lock();
        if g.kind != policy {
            g.policy = new_policy(policy, capacity_bytes);
            g.kind = policy;
        } else {
            let evicted = g.policy.set_capacity(capacity_bytes);
            self.evictions.fetch_add(evicted, Ordering::Relaxed);
        }
        g.capacity_bytes = capacity_bytes;
    }

    pub(crate) fn clear(&self) {
        self.inner.lock().policy.clear();
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let g = self.inner.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            resident_bytes: g.policy.resident_bytes(),
            capacity_bytes: g.capacity_bytes,
        }
    }
}

#[cfg(test)]
mod tests;
