//! The tree against a `BTreeMap` model: random inserts, updates, deletes,
//! point reads and range scans in both directions, with flushes, pool
//! commits and reopenings from disk (cold cache) in between.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use aegis_block::{DeviceRef, MemDevice};
use aegis_btree::{NodeCache, Tree};
use aegis_pool::{CreateOptions, OpenOptions, Pool, TreeRoot};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KIND: u64 = 9;

fn fresh_pool(size: u64, bs: u32) -> (Arc<Pool>, DeviceRef) {
    let dev: DeviceRef = Arc::new(MemDevice::new(size));
    let pool = Pool::create(
        vec![dev.clone()],
        &CreateOptions {
            block_size: bs,
            ..Default::default()
        },
    )
    .unwrap();
    (Arc::new(pool), dev)
}

/// Flush the tree, free what it replaced, commit the pool.
fn commit(pool: &Pool, tree: &mut Tree) -> TreeRoot {
    let f = tree.flush().unwrap();
    for bp in &f.freed {
        pool.free(bp).unwrap();
    }
    pool.commit(&f.root).unwrap();
    f.root
}

fn random_key(rng: &mut StdRng, space: u64) -> Vec<u8> {
    let n = rng.gen_range(0..space);
    // Variable length keys sharing prefixes, as names and (id, type, offset) keys do.
    let mut k = format!("k{:06}", n % 997).into_bytes();
    k.extend(std::iter::repeat_n(b'x', (n % 13) as usize));
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn check_ranges(tree: &Tree, model: &BTreeMap<Vec<u8>, Vec<u8>>, rng: &mut StdRng) {
    let a = random_key(rng, 20_000);
    let b = random_key(rng, 20_000);
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let bounds = [
        (
            Bound::Included(lo.as_slice()),
            Bound::Excluded(hi.as_slice()),
        ),
        (
            Bound::Excluded(lo.as_slice()),
            Bound::Included(hi.as_slice()),
        ),
        (Bound::Unbounded, Bound::Excluded(hi.as_slice())),
        (Bound::Included(lo.as_slice()), Bound::Unbounded),
    ];
    for (l, h) in bounds {
        let want: Vec<_> = model
            .range::<[u8], _>((l, h))
            .take(50)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let got: Vec<_> = tree.range(l, h).take(50).map(|r| r.unwrap()).collect();
        assert_eq!(got, want, "forward range {l:?}..{h:?}");
        let want: Vec<_> = model
            .range::<[u8], _>((l, h))
            .rev()
            .take(50)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let got: Vec<_> = tree.range_rev(l, h).take(50).map(|r| r.unwrap()).collect();
        assert_eq!(got, want, "reverse range {l:?}..{h:?}");
    }
}

fn run_model(seed: u64, ops: usize, bs: u32) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (pool, mem) = fresh_pool(256 << 20, bs);
    let mut pool = pool;
    let cache = NodeCache::new(512);
    let mut tree = Tree::open(pool.clone(), cache.clone(), KIND, &TreeRoot::default());
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let max_val = tree.max_value_len(40);
    for i in 0..ops {
        let r = rng.gen_range(0..100);
        if r < 50 {
            let k = random_key(&mut rng, 20_000);
            let len = if rng.gen_bool(0.05) {
                rng.gen_range(0..=max_val)
            } else {
                rng.gen_range(0..64)
            };
            let v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            assert_eq!(tree.insert(&k, &v).unwrap(), model.insert(k, v));
        } else if r < 80 {
            // Delete: half the time a key that exists.
            let k = if rng.gen_bool(0.5) && !model.is_empty() {
                let n = rng.gen_range(0..model.len());
                model.keys().nth(n).unwrap().clone()
            } else {
                random_key(&mut rng, 20_000)
            };
            assert_eq!(tree.remove(&k).unwrap(), model.remove(&k));
        } else if r < 97 {
            let k = random_key(&mut rng, 20_000);
            assert_eq!(tree.get(&k).unwrap(), model.get(&k).cloned());
        } else {
            check_ranges(&tree, &model, &mut rng);
        }
        assert_eq!(tree.len(), model.len() as u64);
        if i % 2000 == 1999 {
            let root = commit(&pool, &mut tree);
            if rng.gen_bool(0.3) {
                // Reopen from the device with a cold cache: everything must
                // come back from disk through the checksums.
                drop(tree);
                let (p, rep) = Pool::open(vec![mem.clone()], &OpenOptions::default()).unwrap();
                assert_eq!(p.last_uberblock().unwrap().pool_root, root);
                assert!(rep.skipped.is_empty());
                pool = p;
                tree = Tree::open(pool.clone(), NodeCache::new(512), KIND, &root);
            }
        }
    }
    let all: Vec<_> = tree.iter().map(|r| r.unwrap()).collect();
    let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(all, want);
    let rev: Vec<_> = tree
        .range_rev(Bound::Unbounded, Bound::Unbounded)
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(rev.len(), want.len());
    assert!(rev.iter().rev().eq(want.iter()));
    // Empty the tree entirely: it must shrink back to nothing.
    for k in model.keys() {
        assert!(tree.remove(k).unwrap().is_some());
    }
    assert_eq!(tree.len(), 0);
    assert_eq!(tree.height(), 0);
    let root = commit(&pool, &mut tree);
    assert_eq!(root, TreeRoot::default());
}

#[test]
fn model_120k_ops_4k_blocks() {
    run_model(1, 120_000, 4096);
}

#[test]
fn model_40k_ops_64k_blocks() {
    run_model(2, 40_000, 65536);
}

#[test]
fn sequential_and_reverse_inserts_keep_shape() {
    let (pool, _mem) = fresh_pool(64 << 20, 4096);
    let mut tree = Tree::open(pool.clone(), NodeCache::new(64), KIND, &TreeRoot::default());
    for i in 0..20_000u64 {
        tree.insert(&i.to_be_bytes(), &[7u8; 16]).unwrap();
    }
    for i in (20_000..40_000u64).rev() {
        tree.insert(&i.to_be_bytes(), &[7u8; 16]).unwrap();
    }
    let root = commit(&pool, &mut tree);
    assert_eq!(root.entries, 40_000);
    assert!(root.height <= 4, "height {}", root.height);
    // Fill: 40k entries of 28 bytes in 4K nodes should need few nodes.
    assert!(root.nodes < 40_000 * 28 / 4096 * 3, "{} nodes", root.nodes);
    let keys: Vec<u64> = tree
        .iter()
        .map(|r| u64::from_be_bytes(r.unwrap().0.try_into().unwrap()))
        .collect();
    assert_eq!(keys, (0..40_000).collect::<Vec<_>>());
}

#[test]
fn oversized_keys_and_values_are_refused_without_change() {
    let (pool, _mem) = fresh_pool(16 << 20, 4096);
    let mut tree = Tree::open(pool, NodeCache::new(64), KIND, &TreeRoot::default());
    assert!(tree.insert(&[1u8; 513], b"v").is_err());
    let max = tree.max_value_len(1);
    assert!(tree.insert(&[1u8], &vec![0u8; max + 1]).is_err());
    assert!(tree.insert(&[1u8], &vec![0u8; max]).is_ok());
    assert_eq!(tree.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
    #[test]
    fn small_sequences_match_the_model(ops in proptest::collection::vec((0u8..3, 0u16..300, 0usize..200), 1..400)) {
        let (pool, _mem) = fresh_pool(16 << 20, 4096);
        let mut tree = Tree::open(pool.clone(), NodeCache::new(64), KIND, &TreeRoot::default());
        let mut model = BTreeMap::new();
        for (i, (op, k, vlen)) in ops.into_iter().enumerate() {
            let key = k.to_be_bytes().to_vec();
            match op {
                0 => { prop_assert_eq!(tree.insert(&key, &vec![k as u8; vlen]).unwrap(), model.insert(key, vec![k as u8; vlen])); }
                1 => { prop_assert_eq!(tree.remove(&key).unwrap(), model.remove(&key)); }
                _ => { prop_assert_eq!(tree.get(&key).unwrap(), model.get(&key).cloned()); }
            }
            if i % 50 == 49 { commit(&pool, &mut tree); }
        }
        let got: Vec<_> = tree.iter().map(|r| r.unwrap()).collect();
        let want: Vec<_> = model.into_iter().collect();
        prop_assert_eq!(got, want);
    }
}

/// A recorded batch of changes rolled back leaves exactly the tree before
/// it, across splits and merges, committed state or not.
#[test]
fn rollback_restores_the_tree_exactly() {
    let (pool, _dev) = fresh_pool(64 << 20, 4096);
    let cache = NodeCache::new(4096);
    let mut tree = Tree::open(pool.clone(), cache, 7, &TreeRoot::default());
    let mut model = BTreeMap::new();
    let mut rng = StdRng::seed_from_u64(77);
    for round in 0..60 {
        // Some kept changes...
        for _ in 0..200 {
            let k = random_key(&mut rng, 5_000);
            let v = vec![rng.gen::<u8>(); rng.gen_range(0..300)];
            tree.insert(&k, &v).unwrap();
            model.insert(k, v);
        }
        if round % 5 == 0 {
            commit(&pool, &mut tree);
        }
        // ...then a batch that is undone.
        tree.begin_undo();
        for _ in 0..rng.gen_range(1..400) {
            let k = random_key(&mut rng, 5_000);
            if rng.gen_bool(0.5) {
                tree.insert(&k, &vec![9u8; rng.gen_range(0..300)]).unwrap();
            } else {
                tree.remove(&k).unwrap();
            }
        }
        tree.rollback().unwrap();
        let got: Vec<(Vec<u8>, Vec<u8>)> = tree.iter().map(|e| e.unwrap()).collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> =
            model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert_eq!(got, want, "round {round}");
        assert_eq!(tree.len(), model.len() as u64);
    }
}
