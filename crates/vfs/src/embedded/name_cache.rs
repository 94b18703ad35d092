//! The dentry cache (name → inode, negative entries included) and the
//! attribute cache of the embedded VFS, both bounded.
//!
//! Only this VFS changes the filesystems under it (a disk image is locked
//! while open), so the caches are kept exact by invalidation: every call
//! that changes a name forgets that name, and every call that may change
//! attributes (times included: a read moves atime) forgets those
//! attributes, before it returns. A cached inode that is gone all the same
//! shows up as ENOENT from the filesystem, and the walk retries uncached.
//!
//! Bound: at most `capacity` entries of each kind; past it the oldest
//! insertions go first (FIFO), the queue compacted once it holds four
//! times the capacity.

use std::collections::{HashMap, VecDeque};

use parking_lot::Mutex;

use super::Loc;
use crate::types::{Attr, Ino};

/// Entries of each cache by default.
pub const CACHE_ENTRIES: usize = 65536;

type NameKey = (Loc, Vec<u8>);

struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn get(&self, k: &K) -> Option<V> {
        self.map.get(k).cloned()
    }

    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
        while self.map.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        if self.order.len() > 4 * self.capacity {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }

    fn remove(&mut self, k: &K) {
        self.map.remove(k);
    }

    fn retain(&mut self, f: impl Fn(&K) -> bool) {
        self.map.retain(|k, _| f(k));
        self.order.retain(|k| f(k));
    }
}

pub(crate) struct NameCache {
    names: Mutex<Bounded<NameKey, Option<Ino>>>,
    attrs: Mutex<Bounded<Loc, Attr>>,
}

impl NameCache {
    pub(crate) fn new(capacity: usize) -> NameCache {
        NameCache {
            names: Mutex::new(Bounded::new(capacity)),
            attrs: Mutex::new(Bounded::new(capacity)),
        }
    }

    /// `Some(Some(ino))` for a cached name, `Some(None)` for a cached
    /// absence, `None` when nothing is known.
    pub(crate) fn name(&self, dir: Loc, name: &[u8]) -> Option<Option<Ino>> {
        self.names.lock().get(&(dir, name.to_vec()))
    }

    pub(crate) fn put_name(&self, dir: Loc, name: &[u8], ino: Option<Ino>) {
        self.names.lock().insert((dir, name.to_vec()), ino);
    }

    pub(crate) fn forget_name(&self, dir: Loc, name: &[u8]) {
        self.names.lock().remove(&(dir, name.to_vec()));
    }

    pub(crate) fn attr(&self, loc: Loc) -> Option<Attr> {
        self.attrs.lock().get(&loc)
    }

    pub(crate) fn put_attr(&self, loc: Loc, a: Attr) {
        self.attrs.lock().insert(loc, a);
    }

    pub(crate) fn forget_attr(&self, loc: Loc) {
        self.attrs.lock().remove(&loc);
    }

    /// Forget everything of one mount (it is going away).
    pub(crate) fn forget_mount(&self, mount: u32) {
        self.names.lock().retain(|(l, _)| l.mount != mount);
        self.attrs.lock().retain(|l| l.mount != mount);
    }

    pub(crate) fn len(&self) -> (usize, usize) {
        (self.names.lock().map.len(), self.attrs.lock().map.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_and_the_oldest_go_first() {
        let c = NameCache::new(3);
        let d = Loc { mount: 0, ino: 1 };
        for i in 0..5u64 {
            c.put_name(d, format!("n{i}").as_bytes(), Some(i + 10));
        }
        assert_eq!(c.len().0, 3);
        assert_eq!(c.name(d, b"n0"), None);
        assert_eq!(c.name(d, b"n4"), Some(Some(14)));
        c.put_name(d, b"gone", None);
        assert_eq!(c.name(d, b"gone"), Some(None), "negative entries are kept");
        c.forget_name(d, b"gone");
        assert_eq!(c.name(d, b"gone"), None);
        c.forget_mount(0);
        assert_eq!(c.len(), (0, 0));
    }
}
