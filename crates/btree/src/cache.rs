//! A bounded cache of decoded clean nodes, shared by every tree of a pool.
//!
//! Keyed by the first copy's address and the birth txg: a live block is
//! never overwritten, and a reused address comes with a newer birth, so a
//! key can never name two different contents. Bounded by node count; the
//! least recently used node goes first.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aegis_pool::BlockPtr;
use lru::LruCache;
use parking_lot::Mutex;

use crate::node::Node;

type Key = (u32, u64, u64);

pub struct NodeCache {
    inner: Mutex<LruCache<Key, Arc<Node>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

fn key(bp: &BlockPtr) -> Key {
    (bp.addrs[0].device, bp.addrs[0].offset, bp.birth_txg)
}

impl NodeCache {
    pub fn new(max_nodes: usize) -> Arc<Self> {
        let cap = NonZeroUsize::new(max_nodes.max(16)).expect("non-zero");
        Arc::new(NodeCache {
            inner: Mutex::new(LruCache::new(cap)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }
    pub fn get(&self, bp: &BlockPtr) -> Option<Arc<Node>> {
        let r = self.inner.lock().get(&key(bp)).cloned();
        let c = if r.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        c.fetch_add(1, Ordering::Relaxed);
        r
    }
    pub fn put(&self, bp: &BlockPtr, node: Arc<Node>) {
        self.inner.lock().put(key(bp), node);
    }
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> usize {
        self.inner.lock().cap().get()
    }
    /// Drop every cached node (tests use it to force reads from disk).
    pub fn clear(&self) {
        self.inner.lock().clear();
    }
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}
