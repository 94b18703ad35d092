//! Plain least-recently-used replacement, bounded by bytes: the baseline
//! the adaptive policies are measured against. A sequential scan larger
//! than the cache flushes everything else out of it.

use lru::LruCache;

use super::{BlockData, Key, Policy};

pub(crate) struct LruPolicy {
    entries: LruCache<Key, (BlockData, u64)>,
    bytes: u64,
    capacity_bytes: u64,
}

impl LruPolicy {
    pub(crate) fn new(capacity_bytes: u64) -> LruPolicy {
        LruPolicy {
            entries: LruCache::unbounded(),
            bytes: 0,
            capacity_bytes,
        }
    }

    fn evict_to(&mut self, limit: u64) -> u64 {
        let mut evicted = 0;
        while self.bytes > limit {
            let Some((_, (_, charge))) = self.entries.pop_lru() else {
                break;
            };
            self.bytes -= charge;
            evicted += 1;
        }
        evicted
    }
}

impl Policy for LruPolicy {
    fn get(&mut self, key: &Key, _now: u64) -> Option<BlockData> {
        self.entries.get(key).map(|(d, _)| d.clone())
    }

    fn insert(&mut self, key: Key, data: BlockData, charge: u64, _now: u64) -> u64 {
        if charge > self.capacity_bytes || self.entries.contains(&key) {
            return 0;
        }
        self.entries.put(key, (data, charge));
        self.bytes += charge;
        self.evict_to(self.capacity_bytes)
    }

    fn remove(&mut self, key: &Key) {
        if let Some((_, charge)) = self.entries.pop(key) {
            self.bytes -= charge;
        }
    }

    fn contains(&self, key: &Key) -> bool {
        self.entries.contains(key)
    }

    fn resident_bytes(&self) -> u64 {
        self.bytes
    }

    fn set_capacity(&mut self, bytes: u64) -> u64 {
        self.capacity_bytes = bytes;
        self.evict_to(bytes)
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}
