//! B+tree throughput: inserts and point lookups over 1,000,000 keys in
//! memory, and commit throughput (MB/s of dirty metadata written to an
//! image file with flushes).
//! Run: cargo bench -p aegis-btree --bench tree

use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_block::{DeviceRef, FileDevice, MemDevice};
use aegis_btree::{NodeCache, Tree};
use aegis_pool::{CreateOptions, Pool, TreeRoot};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const N: u64 = 1_000_000;

fn key(i: u64) -> [u8; 16] {
    // Scatter keys (a multiplicative hash) so inserts are not sequential.
    let h = i.wrapping_mul(0x9E3779B97F4A7C15);
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&h.to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn mem_pool() -> Arc<Pool> {
    let dev: DeviceRef = Arc::new(MemDevice::new(4 << 30));
    Arc::new(Pool::create(vec![dev], &CreateOptions::default()).unwrap())
}

fn commit(pool: &Pool, tree: &mut Tree) {
    let f = tree.flush().unwrap();
    for bp in &f.freed {
        pool.free(bp).unwrap();
    }
    pool.commit(&f.root).unwrap();
}

fn inserts_and_lookups(c: &mut Criterion) {
    let mut g = c.benchmark_group("btree_1M");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(N));
    g.bench_function("insert_random_keys", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let pool = mem_pool();
                let mut tree = Tree::open(
                    pool.clone(),
                    NodeCache::new(1 << 20),
                    2,
                    &TreeRoot::default(),
                );
                let t = Instant::now();
                for i in 0..N {
                    tree.insert(&key(i), &i.to_le_bytes()).unwrap();
                }
                total += t.elapsed();
            }
            total
        })
    });
    // One tree, committed, then looked up with a warm cache.
    let pool = mem_pool();
    let mut tree = Tree::open(
        pool.clone(),
        NodeCache::new(1 << 20),
        2,
        &TreeRoot::default(),
    );
    for i in 0..N {
        tree.insert(&key(i), &i.to_le_bytes()).unwrap();
    }
    commit(&pool, &mut tree);
    g.bench_function("lookup_random_keys", |b| {
        b.iter(|| {
            for i in 0..N {
                let j = i.wrapping_mul(7919) % N;
                assert!(tree.get(&key(j)).unwrap().is_some());
            }
        })
    });
    g.finish();
}

fn commit_throughput(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("aegis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("commit.img");
    let _ = std::fs::remove_file(&path);
    let dev: DeviceRef = Arc::new(FileDevice::create(&path, 8 << 30).unwrap());
    let pool = Arc::new(Pool::create(vec![dev], &CreateOptions::default()).unwrap());
    let mut tree = Tree::open(
        pool.clone(),
        NodeCache::new(1 << 16),
        2,
        &TreeRoot::default(),
    );
    // A stationary workload: a 200,000-key tree; each commit follows 20,000
    // updates of random existing keys, so every commit writes about the
    // same number of dirty nodes (2 copies each, through fdatasync).
    const KEYS: u64 = 200_000;
    const UPDATES: u64 = 20_000;
    for i in 0..KEYS {
        tree.insert(&key(i), &[0u8; 32]).unwrap();
    }
    commit(&pool, &mut tree);
    let mut round = 0u64;
    let dirty = |tree: &mut Tree, round: u64| {
        for j in 0..UPDATES {
            let i = (j.wrapping_mul(0x9E3779B97F4A7C15) ^ round.wrapping_mul(7919)) % KEYS;
            tree.insert(&key(i), &[round as u8; 32]).unwrap();
        }
        tree.dirty_bytes() * pool.config().metadata_copies as u64
    };
    round += 1;
    let bytes = dirty(&mut tree, round);
    commit(&pool, &mut tree);
    eprintln!(
        "commit bench: about {} MiB of node blocks per commit",
        bytes >> 20
    );
    let mut g = c.benchmark_group("commit");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("commit_20k_updates_200k_tree_file", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                dirty(&mut tree, round);
                let t = Instant::now();
                commit(&pool, &mut tree);
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    drop(tree);
    drop(pool);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, inserts_and_lookups, commit_throughput);
criterion_main!(benches);
