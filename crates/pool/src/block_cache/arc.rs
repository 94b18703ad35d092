//! Adaptive replacement (Megiddo and Modha's ARC, by bytes as ZFS keeps
//! it). T1 holds blocks referenced once recently, T2 blocks referenced
//! again; B1 and B2 remember (key and size only) what each evicted. A miss
//! that hits B1 says T1 was too small and moves the target `p` (T1's share
//! of the capacity) up; one that hits B2 moves it down. A scan fills T1
//! only, and T1's blocks go first while T1 is over its target, so the
//! blocks in T2 (the working set) survive it.
//!
//! Invariants: `t1 + t2 <= capacity` after every call, `t1 + b1 <=
//! capacity` and `t1 + t2 + b1 + b2 <= 2 * capacity` (the ghosts are
//! bounded like the paper's directory), `p <= capacity`; each byte
//! counter is the sum of its list's charges.

use lru::LruCache;

use super::{BlockData, Key, Policy, CORRELATED_ACCESSES};

struct Entry {
    data: BlockData,
    charge: u64,
    last: u64,
}

/// A list and the sum of its entries' charges.
struct List<V> {
    map: LruCache<Key, V>,
    bytes: u64,
}

impl<V> List<V> {
    fn new() -> Self {
        List {
            map: LruCache::unbounded(),
            bytes: 0,
        }
    }
}

pub(crate) struct ArcPolicy {
    t1: List<Entry>,
    t2: List<Entry>,
    b1: List<u64>,
    b2: List<u64>,
    /// Target bytes of T1.
    p: u64,
    capacity_bytes: u64,
}

impl ArcPolicy {
    pub(crate) fn new(capacity_bytes: u64) -> ArcPolicy {
        ArcPolicy {
            t1: List::new(),
            t2: List::new(),
            b1: List::new(),
            b2: List::new(),
            p: 0,
            capacity_bytes,
        }
    }

    /// Evict from T1 or T2 (by the target) until `extra` more bytes fit.
    fn replace(&mut self, extra: u64, hit_b2: bool) -> u64 {
        let mut evicted = 0;
        while self.t1.bytes + self.t2.bytes + extra > self.capacity_bytes {
            let from_t1 = !self.t1.map.is_empty()
                && (self.t1.bytes > self.p
                    || (hit_b2 && self.t1.bytes >= self.p)
                    || self.t2.map.is_empty());
            let (from, ghost) = if from_t1 {
                (&mut self.t1, &mut self.b1)
            } else {
                (&mut self.t2, &mut self.b2)
            };
            let Some((k, e)) = from.map.pop_lru() else {
                break;
            };
            from.bytes -= e.charge;
            ghost.map.put(k, e.charge);
            ghost.bytes += e.charge;
            evicted += 1;
        }
        evicted
    }

    /// Keep the ghost lists within their bounds.
    fn trim_ghosts(&mut self) {
        let c = self.capacity_bytes;
        while self.t1.bytes + self.b1.bytes > c {
            match self.b1.map.pop_lru() {
                Some((_, size)) => self.b1.bytes -= size,
                None => break,
            }
        }
        while self.t1.bytes + self.t2.bytes + self.b1.bytes + self.b2.bytes > 2 * c {
            match self.b2.map.pop_lru() {
                Some((_, size)) => self.b2.bytes -= size,
                None => break,
            }
        }
    }

    /// Adapt the target to a miss that a ghost list remembered.
    fn adapt(&mut self, key: &Key, charge: u64) -> Option<bool> {
        if let Some(size) = self.b1.map.pop(key) {
            self.b1.bytes -= size;
            let ratio = (self.b2.bytes / self.b1.bytes.max(1)).max(1);
            self.p = (self.p + ratio * charge).min(self.capacity_bytes);
            return Some(false);
        }
        if let Some(size) = self.b2.map.pop(key) {
            self.b2.bytes -= size;
            let ratio = (self.b1.bytes / self.b2.bytes.max(1)).max(1);
            self.p = self.p.saturating_sub(ratio * charge);
            return Some(true);
        }
        None
    }
}

impl Policy for ArcPolicy {
    fn get(&mut self, key: &Key, now: u64) -> Option<BlockData> {
        if let Some(e) = self.t2.map.get_mut(key) {
            e.last = now;
            return Some(e.data.clone());
        }
        let e = self.t1.map.get_mut(key)?;
        let correlated = now.saturating_sub(e.last) <= CORRELATED_ACCESSES;
        e.last = now;
        let data = e.data.clone();
        if !correlated {
            let (k, e) = self.t1.map.pop_entry(key).expect("found in t1");
            self.t1.bytes -= e.charge;
            self.t2.bytes += e.charge;
            self.t2.map.put(k, e);
        }
        Some(data)
    }

    fn insert(&mut self, key: Key, data: BlockData, charge: u64, now: u64) -> u64 {
        if charge > self.capacity_bytes || self.t1.map.contains(&key) || self.t2.map.contains(&key)
        {
            return 0;
        }
        let entry = Entry {
            data,
            charge,
            last: now,
        };
        let evicted = match self.adapt(&key, charge) {
            // Seen before: it is referenced again, so it is frequent.
            Some(hit_b2) => {
                let n = self.replace(charge, hit_b2);
                self.t2.bytes += charge;
                self.t2.map.put(key, entry);
                n
            }
            None => {
                let n = self.replace(charge, false);
                self.t1.bytes += charge;
                self.t1.map.put(key, entry);
                n
            }
        };
        self.trim_ghosts();
        evicted
    }

    fn remove(&mut self, key: &Key) {
        if let Some(e) = self.t1.map.pop(key) {
            self.t1.bytes -= e.charge;
        } else if let Some(e) = self.t2.map.pop(key) {
            self.t2.bytes -= e.charge;
        } else if let Some(size) = self.b1.map.pop(key) {
            self.b1.bytes -= size;
        } else if let Some(size) = self.b2.map.pop(key) {
            self.b2.bytes -= size;
        }
    }

    fn contains(&self, key: &Key) -> bool {
        self.t1.map.contains(key) || self.t2.map.contains(key)
    }

    fn resident_bytes(&self) -> u64 {
        self.t1.bytes + self.t2.bytes
    }

    fn set_capacity(&mut self, bytes: u64) -> u64 {
        self.capacity_bytes = bytes;
        self.p = self.p.min(bytes);
        let n = self.replace(0, false);
        self.trim_ghosts();
        n
    }

    fn clear(&mut self) {
        *self = ArcPolicy::new(self.capacity_bytes);
    }
}
