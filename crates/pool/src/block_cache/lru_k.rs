//! LRU-2 (O'Neil, O'Neil and Weikum's LRU-K with K = 2), bounded by
//! bytes: the victim is the block whose second-last reference is oldest,
//! and a block referenced once has none, so blocks seen once go first
//! (oldest first among them). A history of evicted keys (their last
//! reference) lets a block that comes back soon count its earlier
//! reference.
//!
//! Invariants: `bytes <= capacity` after every call and is the sum of the
//! resident charges; `order` holds exactly one `(penultimate, last, key)`
//! per resident entry, matching it; the history holds at most as many
//! bytes (by the evicted entries' charges) as the capacity.

use std::collections::{BTreeSet, HashMap};

use lru::LruCache;

use super::{BlockData, Key, Policy, CORRELATED_ACCESSES};

struct Entry {
    data: BlockData,
    charge: u64,
    last: u64,
    /// The reference before `last`; 0 when there was none.
    penultimate: u64,
}

pub(crate) struct Lru2Policy {
    entries: HashMap<Key, Entry>,
    order: BTreeSet<(u64, u64, Key)>,
    /// Evicted keys: (last reference, charge).
    history: LruCache<Key, (u64, u64)>,
    history_bytes: u64,
    bytes: u64,
    capacity_bytes: u64,
}

impl Lru2Policy {
    pub(crate) fn new(capacity_bytes: u64) -> Lru2Policy {
        Lru2Policy {
            entries: HashMap::new(),
            order: BTreeSet::new(),
            history: LruCache::unbounded(),
            history_bytes: 0,
            bytes: 0,
            capacity_bytes,
        }
    }

    fn evict_to(&mut self, limit: u64) -> u64 {
        let mut evicted = 0;
        while self.bytes > limit {
            let Some((_, _, key)) = self.order.pop_first() else {
                break;
            };
            let e = self.entries.remove(&key).expect("order matches entries");
            self.bytes -= e.charge;
            self.remember(key, e.last, e.charge);
            evicted += 1;
        }
        evicted
    }

    fn remember(&mut self, key: Key, last: u64, charge: u64) {
        if let Some((_, old)) = self.history.put(key, (last, charge)) {
            self.history_bytes -= old;
        }
        self.history_bytes += charge;
        while self.history_bytes > self.capacity_bytes {
            match self.history.pop_lru() {
                Some((_, (_, c))) => self.history_bytes -= c,
                None => break,
            }
        }
    }
}

impl Policy for Lru2Policy {
    fn get(&mut self, key: &Key, now: u64) -> Option<BlockData> {
        let e = self.entries.get_mut(key)?;
        self.order.remove(&(e.penultimate, e.last, *key));
        if now.saturating_sub(e.last) > CORRELATED_ACCESSES {
            e.penultimate = e.last;
        }
        e.last = now;
        self.order.insert((e.penultimate, e.last, *key));
        Some(e.data.clone())
    }

    fn insert(&mut self, key: Key, data: BlockData, charge: u64, now: u64) -> u64 {
        if charge > self.capacity_bytes || self.entries.contains_key(&key) {
            return 0;
        }
        let penultimate = match self.history.pop(&key) {
            Some((last, c)) => {
                self.history_bytes -= c;
                if now.saturating_sub(last) > CORRELATED_ACCESSES {
                    last
                } else {
                    0
                }
            }
            None => 0,
        };
        let e = Entry {
            data,
            charge,
            last: now,
            penultimate,
        };
        self.order.insert((penultimate, now, key));
        self.entries.insert(key, e);
        self.bytes += charge;
        self.evict_to(self.capacity_bytes)
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.entries.remove(key) {
            self.order.remove(&(e.penultimate, e.last, *key));
            self.bytes -= e.charge;
        } else if let Some((_, c)) = self.history.pop(key) {
            self.history_bytes -= c;
        }
    }

    fn contains(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    fn resident_bytes(&self) -> u64 {
        self.bytes
    }

    fn set_capacity(&mut self, bytes: u64) -> u64 {
        self.capacity_bytes = bytes;
        self.evict_to(bytes)
    }

    fn clear(&mut self) {
        *self = Lru2Policy::new(self.capacity_bytes);
    }
}
