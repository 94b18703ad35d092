use std::collections::HashMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

const RECORD: usize = 128 << 10;
const CHARGE: u64 = RECORD as u64 + ENTRY_OVERHEAD_BYTES;
/// Passes of the scan; the hit rate is measured over the second half.
const PASSES: u64 = 24;
const POLICIES: [CachePolicy; 3] = [CachePolicy::Arc, CachePolicy::Lru2, CachePolicy::Lru];

fn key(n: u64) -> Key {
    (0, n * RECORD as u64, 1, n)
}

fn block(n: u64) -> BlockData {
    Arc::new(vec![n as u8; RECORD])
}

/// Read block `n` in `pieces` consecutive accesses, filling on a miss;
/// true when the first access hit.
fn read(c: &BlockCache, n: u64, pieces: usize) -> bool {
    let mut first = None;
    for _ in 0..pieces {
        let hit = match c.get(&key(n)) {
            Some(d) => {
                assert_eq!(d[0], n as u8, "block {n} came back with other bytes");
                true
            }
            None => {
                c.insert(key(n), block(n));
                false
            }
        };
        first.get_or_insert(hit);
    }
    first.unwrap_or(false)
}

/// Hit rate of a hot set of half the cache while a sequential reader
/// scans a file of twice the cache, in 4 KiB pieces, four records per
/// hot read. Measured after two passes of warm-up.
fn hot_hit_rate(policy: CachePolicy) -> f64 {
    let cache_records = 64u64;
    let c = BlockCache::new(policy, cache_records * CHARGE);
    let (hot, scan) = (cache_records / 2, cache_records * 2);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut hits, mut reads) = (0u64, 0u64);
    for pass in 0..PASSES {
        for s in 0..scan {
            read(&c, 1000 + s, 32);
            if s % 4 == 0 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let hit = read(&c, seed % hot, 1);
                if pass >= PASSES / 2 {
                    reads += 1;
                    hits += hit as u64;
                }
            }
        }
        let st = c.stats();
        assert!(
            st.resident_bytes <= st.capacity_bytes,
            "{policy:?}: over capacity"
        );
    }
    hits as f64 / reads as f64
}

#[test]
fn scan_beside_hot_set() {
    let rates: Vec<(CachePolicy, f64)> = POLICIES.iter().map(|&p| (p, hot_hit_rate(p))).collect();
    for (p, r) in &rates {
        println!("{:>5}: hot set hit rate {:.1}%", p.name(), r * 100.0);
    }
    let rate = |p| rates.iter().find(|(q, _)| *q == p).unwrap().1;
    // Plain LRU loses the working set to the scan; both adaptive policies
    // keep it.
    assert!(
        rate(CachePolicy::Lru) < 0.5,
        "LRU kept the hot set: {rates:?}"
    );
    assert!(
        rate(CachePolicy::Lru2) > 0.9,
        "LRU-2 lost the hot set: {rates:?}"
    );
    assert!(
        rate(CachePolicy::Arc) > 0.9,
        "ARC lost the hot set: {rates:?}"
    );
}

#[test]
fn a_working_set_that_moves_is_followed() {
    // After the hot set changes, the new one must take over the cache
    // (the old one is never referenced again).
    for p in POLICIES {
        let c = BlockCache::new(p, 16 * CHARGE);
        for round in 0..20 {
            for n in 0..12 {
                read(&c, n, 1);
            }
            let _ = round;
        }
        for _ in 0..20 {
            for n in 100..112 {
                read(&c, n, 1);
            }
        }
        let hits = (100..112).filter(|&n| c.get(&key(n)).is_some()).count();
        assert_eq!(hits, 12, "{p:?} did not follow the new working set");
    }
}

#[test]
fn removed_blocks_are_gone_and_capacity_shrinks() {
    for p in POLICIES {
        let c = BlockCache::new(p, 8 * CHARGE);
        for n in 0..4 {
            read(&c, n, 1);
        }
        c.remove(&key(2));
        assert!(c.get(&key(2)).is_none(), "{p:?}");
        assert!(c.get(&key(1)).is_some(), "{p:?}");
        c.configure(p, 2 * CHARGE);
        assert!(c.stats().resident_bytes <= 2 * CHARGE, "{p:?}");
        c.configure(p, 0);
        assert_eq!(c.stats().resident_bytes, 0, "{p:?}");
        c.insert(key(9), block(9));
        assert!(
            c.get(&key(9)).is_none(),
            "{p:?}: a zero cache holds nothing"
        );
    }
}

#[derive(Clone, Debug)]
enum Op {
    Read(u64, u64),
    Remove(u64),
    Resize(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u64..48, 1u64..4).prop_map(|(n, k)| Op::Read(n, k)),
        1 => (0u64..48).prop_map(Op::Remove),
        1 => (0u64..24).prop_map(Op::Resize),
    ]
}

proptest! {
    /// Against a model that remembers every block's bytes: a hit returns
    /// the bytes inserted under that key, a removed key misses, and the
    /// cache never holds more than its capacity.
    #[test]
    fn policies_never_return_wrong_bytes(ops in proptest::collection::vec(op(), 1..300)) {
        for p in POLICIES {
            let c = BlockCache::new(p, 16 * 4096);
            let mut removed: HashMap<u64, bool> = HashMap::new();
            for o in &ops {
                match *o {
                    Op::Read(n, k) => {
                        let len = (k * 2048) as usize;
                        match c.get(&key(n)) {
                            Some(d) => {
                                prop_assert!(!removed.get(&n).copied().unwrap_or(false));
                                prop_assert!(d.iter().all(|&b| b == n as u8));
                            }
                            None => {
                                c.insert(key(n), Arc::new(vec![n as u8; len]));
                                removed.insert(n, false);
                            }
                        }
                    }
                    Op::Remove(n) => {
                        c.remove(&key(n));
                        removed.insert(n, true);
                    }
                    Op::Resize(k) => c.configure(p, k * 4096),
                }
                let st = c.stats();
                prop_assert!(st.resident_bytes <= st.capacity_bytes);
            }
        }
    }
}
