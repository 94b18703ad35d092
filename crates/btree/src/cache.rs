//! A bounded cache of decoded clean nodes, shared by every tree of a pool.
//!
//! Keyed by the first copy's address and the birth txg: a live block is
//! never overwritten, and a reused address comes with a newer birth, so a
//! key can never name two different contents. Bounded by node count; the
//! least recently used node goes first.

use std::num::NonZeroUsize;
use std::sync::Arc;

use aegis_pool::BlockPtr;
use lru::LruCache;
use parking_lot::Mutex;

use crate::node::Node;

type Key = (u32, u64, u64);

pub struct NodeCache {
    inner: Mutex<LruCache<Key, Arc<Node>>>,
}

fn key(bp: &BlockPtr) -> Key {
    (bp.addrs[0].device, bp.addrs[0].offset, bp.birth_txg)
}

impl NodeCache {
    pub fn new(max_nodes: usize) -> Arc<Self> {
        let cap = NonZeroUsize::new(max_nodes.max(16)).expect("non-zero");
        Arc::new(NodeCache {
            inner: Mutex::new(LruCache::new(cap)),
        })
    }
    pub fn get(&self, bp: &BlockPtr) -> Option<Arc<Node>> {
        self.inner.lock().get(&key(bp)).cloned()
    }
    pub fn put(&self, bp: &BlockPtr, node: Arc<Node>) {
        self.inner.lock().put(key(bp), node);
    }
    /// Drop every cached node (tests use it to force reads from disk).
    pub fn clear(&self) {
        self.inner.lock().clear();
    }
}
