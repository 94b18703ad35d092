//! Metadata integrity under damage.
//!
//! Every metadata block of a small pool in turn gets a flipped bit; reads
//! either repair from the second copy or fail with an error that names the
//! block; never a panic, never wrong data; fsck reports each case. Then the
//! single-copy cases, damaged labels and the uberblock fallback.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use aegis_block::{BlockDevice, DeviceRef, MemDevice};
use aegis_btree::{NodeCache, Tree};
use aegis_fs::dataset::{
    parse_dataset_key, DatasetRecord, DATASET_TREE_KIND, POOL_TREE_KIND, ROOT_DATASET,
};
use aegis_fs::fsck::{fsck, FsckReport};
use aegis_fs::{Store, StoreOptions};
use aegis_pool::label::{label_offsets, LABEL_SIZE, UBER_RING_OFFSET};
use aegis_pool::uberblock::{UBER_SLOTS, UBER_SLOT_SIZE};
use aegis_pool::{AllocClass, BlockPtr, CreateOptions, OpenOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEV_SIZE: u64 = 16 << 20;
const DS: u64 = ROOT_DATASET;
const KEYS: u32 = 3000;

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn key(i: u32) -> Vec<u8> {
    format!("obj/{:08}", i.wrapping_mul(2_654_435_761) % 1_000_000_007).into_bytes()
}

fn value(rng: &mut StdRng, i: u32, gen: u32) -> Vec<u8> {
    let mut v = format!("v{gen}:{i}:").into_bytes();
    let n = rng.gen_range(8..40);
    v.extend((0..n).map(|_| rng.gen::<u8>()));
    v
}

/// A committed pool and the models of its last two commits.
struct Built {
    dev: Arc<MemDevice>,
    /// Contents and txg of the older commit.
    model_a: Model,
    txg_a: u64,
    /// Contents and txg of the newest commit.
    model_b: Model,
    txg_b: u64,
}

fn build(copies: u8, seed: u64) -> Built {
    let mut rng = StdRng::seed_from_u64(seed);
    let dev = Arc::new(MemDevice::new(DEV_SIZE));
    let store = Store::create(
        vec![dev.clone() as DeviceRef],
        &CreateOptions {
            metadata_copies: copies,
            ..Default::default()
        },
        StoreOptions::default(),
    )
    .expect("create");

    let mut model = Model::new();
    for i in 0..KEYS {
        model.insert(key(i), value(&mut rng, i, 0));
    }
    store
        .with_tree(DS, AllocClass::Normal, |t| {
            for (k, v) in &model {
                t.insert(k, v)?;
            }
            Ok(())
        })
        .expect("insert");
    let txg_a = store.commit().expect("commit a");
    let model_a = model.clone();

    // Second txg: updates, deletes and new keys, so it shares some nodes
    // with the first and replaces others.
    let mut changes: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
    for i in (0..KEYS).step_by(7) {
        changes.push((key(i), Some(value(&mut rng, i, 1))));
    }
    for i in (3..KEYS).step_by(11) {
        changes.push((key(i), None));
    }
    for i in KEYS..KEYS + 200 {
        changes.push((key(i), Some(value(&mut rng, i, 1))));
    }
    store
        .with_tree(DS, AllocClass::Normal, |t| {
            for (k, v) in &changes {
                match v {
                    Some(v) => {
                        t.insert(k, v)?;
                    }
                    None => {
                        t.remove(k)?;
                    }
                }
            }
            Ok(())
        })
        .expect("update");
    for (k, v) in changes {
        match v {
            Some(v) => model.insert(k, v),
            None => model.remove(&k),
        };
    }
    let txg_b = store.commit().expect("commit b");
    assert!(txg_b > txg_a);
    let rec = store.dataset_record(DS).expect("root dataset");
    assert!(
        rec.root.height >= 2,
        "dataset tree has height {}; the test wants internal nodes",
        rec.root.height
    );
    assert_eq!(rec.root.entries, model.len() as u64);
    drop(store);
    Built {
        dev,
        model_a,
        txg_a,
        model_b: model,
        txg_b,
    }
}

fn open_on(dev: &Arc<MemDevice>, read_only: bool) -> aegis_fs::Result<Arc<Store>> {
    Store::open(
        vec![dev.clone() as DeviceRef],
        &OpenOptions {
            read_only,
            rewind_txg: None,
        },
        StoreOptions::default(),
    )
}

fn run_fsck(store: &Store, repair: bool) -> FsckReport {
    fsck(store, repair, &mut |_, _| {}).expect("fsck runs")
}

/// Every key reads back as the model says, by point reads and by a scan.
fn assert_model(store: &Store, model: &Model, ctx: &str) {
    store.cache().clear();
    store
        .read_tree(DS, |t| {
            for (k, v) in model {
                match t.get(k) {
                    Ok(Some(got)) => assert_eq!(&got, v, "{ctx}: wrong value for {k:?}"),
                    Ok(None) => panic!("{ctx}: key {k:?} missing"),
                    Err(e) => panic!("{ctx}: reading {k:?} failed: {e}"),
                }
            }
            let scanned: Vec<(Vec<u8>, Vec<u8>)> = t
                .iter()
                .collect::<Result<_, _>>()
                .unwrap_or_else(|e| panic!("{ctx}: scan failed: {e}"));
            assert_eq!(scanned.len(), model.len(), "{ctx}: scan length");
            assert!(
                scanned
                    .iter()
                    .zip(model)
                    .all(|(a, b)| a.0 == *b.0 && a.1 == *b.1),
                "{ctx}: scan differs from the model"
            );
            Ok(())
        })
        .expect("dataset exists");
}

/// Flip bit `bit` counted from byte `offset`.
fn flip_bit(dev: &MemDevice, offset: u64, bit: u64) {
    let at = offset + bit / 8;
    let mut b = [0u8; 1];
    dev.read_at(&mut b, at).unwrap();
    b[0] ^= 1 << (bit % 8);
    dev.write_at(&b, at).unwrap();
}

/// A damaged copy of `base`: one random bit flipped inside the stored bytes
/// of copy `copy` of `bp`. Returns the device and the bit flipped.
fn damage_copy(base: &MemDevice, bp: &BlockPtr, copy: usize, rng: &mut StdRng) -> (MemDevice, u64) {
    let dev = base.snapshot();
    let a = bp.addrs[copy];
    assert_eq!(a.device, 0, "one-device pool");
    let bit = rng.gen_range(0..bp.physical_size as u64 * 8);
    flip_bit(&dev, a.offset, bit);
    (dev, bit)
}

#[derive(Default)]
struct Blocks {
    /// (description, pointer) of every metadata block reachable from the
    /// uberblock: pool tree nodes, dataset tree nodes, space map blocks.
    all: Vec<(String, BlockPtr)>,
    /// Dataset tree leaves with the keys they hold.
    dataset_leaves: Vec<(BlockPtr, Vec<Vec<u8>>)>,
    pool_root: Option<BlockPtr>,
}

/// A leaf: its pointer, keys and values.
type Leaf = (BlockPtr, Vec<Vec<u8>>, Vec<Vec<u8>>);

fn walk(tree: &Tree, bp: &BlockPtr, name: &str, out: &mut Blocks, leaves: &mut Vec<Leaf>) {
    let node = tree.load(bp).expect("undamaged node loads");
    out.all
        .push((format!("{name} {}", bp.describe()), bp.clone()));
    if node.is_leaf() {
        leaves.push((
            bp.clone(),
            node.keys.iter().map(|k| k.to_vec()).collect(),
            node.vals.clone(),
        ));
        return;
    }
    for i in 0..node.len() {
        let child = node.child_ptr(i).expect("clean node has disk children");
        walk(tree, child, name, out, leaves);
    }
}

/// Every metadata block of the store's current txg, read from disk.
fn metadata_blocks(store: &Store) -> Blocks {
    let pool = store.pool();
    let ub = pool.last_uberblock().expect("committed");
    let cache = NodeCache::new(64);
    let mut out = Blocks {
        pool_root: ub.pool_root.root.clone(),
        ..Default::default()
    };
    let pool_tree = Tree::open(pool.clone(), cache.clone(), POOL_TREE_KIND, &ub.pool_root);
    let mut pool_leaves = Vec::new();
    walk(
        &pool_tree,
        ub.pool_root.root.as_ref().expect("pool tree not empty"),
        "pool tree",
        &mut out,
        &mut pool_leaves,
    );
    let mut datasets = 0;
    for (_, keys, vals) in &pool_leaves {
        for (k, v) in keys.iter().zip(vals) {
            let Some(id) = parse_dataset_key(k) else {
                continue;
            };
            datasets += 1;
            let rec = DatasetRecord::decode(v).expect("dataset record");
            let Some(root) = &rec.root.root else { continue };
            let t = Tree::open(pool.clone(), cache.clone(), DATASET_TREE_KIND, &rec.root);
            let mut leaves = Vec::new();
            walk(&t, root, &format!("dataset {id}"), &mut out, &mut leaves);
            out.dataset_leaves
                .extend(leaves.into_iter().map(|(bp, keys, _)| (bp, keys)));
        }
    }
    assert_eq!(datasets, 1, "mkfs makes one dataset");
    let chain = pool.space_map_chain();
    assert!(!chain.is_empty(), "a committed pool has a space map");
    for bp in chain {
        out.all.push((format!("space map {}", bp.describe()), bp));
    }
    out
}

/// Call `f` once per copy of every metadata block of a fresh two-copy pool,
/// with an image in which one random bit of that copy is flipped.
/// `f(built, ctx, named, copy, damaged)`: `named` is how fsck must name the
/// copy ("copy 1 (0:1234)").
fn for_each_damaged_copy(seed: u64, mut f: impl FnMut(&Built, &str, &str, usize, &MemDevice)) {
    let built = build(2, seed);
    let blocks = {
        let store = open_on(&built.dev, true).unwrap();
        metadata_blocks(&store)
    };
    let n_space = blocks
        .all
        .iter()
        .filter(|(d, _)| d.starts_with("space map"))
        .count();
    let n_pool = blocks
        .all
        .iter()
        .filter(|(d, _)| d.starts_with("pool tree"))
        .count();
    assert!(n_space >= 1 && n_pool >= 1);
    assert!(blocks.all.len() > 10, "only {} blocks", blocks.all.len());
    eprintln!(
        "sweeping {} metadata blocks ({n_pool} pool tree, {} dataset tree, {n_space} space map)",
        blocks.all.len(),
        blocks.all.len() - n_pool - n_space,
    );
    let mut rng = StdRng::seed_from_u64(seed ^ 0xb17f11b);
    for (desc, bp) in &blocks.all {
        // Space map blocks carry one extra copy (shared by every recent txg).
        let want = if desc.starts_with("space map") { 3 } else { 2 };
        assert_eq!(bp.addrs.len(), want, "{desc}: metadata copies");
        for copy in 0..bp.addrs.len() {
            let a = bp.addrs[copy];
            let (damaged, bit) = damage_copy(&built.dev, bp, copy, &mut rng);
            let ctx = format!("{desc}, copy {copy} ({}:{}), bit {bit}", a.device, a.offset);
            let named = format!("copy {copy} ({}:{})", a.device, a.offset);
            f(&built, &ctx, &named, copy, &damaged);
        }
    }
}

fn healed(store: &Store) -> u64 {
    store
        .pool()
        .counters()
        .healed
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// The sweep: each copy of each metadata block, one flipped bit at a time.
/// Reads heal or use the good copy and never return wrong data; a read-only
/// fsck names exactly the damaged copy; fsck --repair leaves a clean pool.
#[test]
fn every_metadata_copy_bit_flip_is_healed_or_reported() {
    for_each_damaged_copy(1, |built, ctx, named, copy, damaged| {
        // (a) Reads return the model exactly; the bad copy is rewritten
        // from the good one when it is the one read first.
        let reader = Arc::new(damaged.snapshot());
        {
            let store = open_on(&reader, false)
                .unwrap_or_else(|e| panic!("{ctx}: open with one good copy failed: {e}"));
            assert_eq!(store.open_report().txg, built.txg_b, "{ctx}: opened txg");
            assert!(
                store.open_report().skipped.is_empty(),
                "{ctx}: skipped a txg"
            );
            assert_model(&store, &built.model_b, ctx);
            assert_eq!(healed(&store), u64::from(copy == 0), "{ctx}: healed count");
        }
        {
            // Copy 0 was healed by the reads above; copy 1 was never read.
            let store = open_on(&reader, true).unwrap();
            let r = run_fsck(&store, false);
            let want = if copy == 0 { 0 } else { 4 };
            assert_eq!(
                r.exit_code(),
                want,
                "{ctx}: fsck after reads: {:?}",
                r.errors
            );
        }

        // (b) fsck of a fresh read-only open names exactly that copy.
        {
            let d = Arc::new(damaged.snapshot());
            let store = open_on(&d, true).unwrap();
            assert_model(&store, &built.model_b, ctx);
            let r = run_fsck(&store, false);
            let ok = r.exit_code() == 4
                && r.errors.len() == 1
                && !r.errors[0].repaired
                && r.errors[0].what.contains(named)
                && r.errors[0].what.contains("checksum");
            assert!(ok, "{ctx}: fsck found {:?}", r.errors);
            assert_eq!(healed(&store), 0, "{ctx}: read-only store healed");
            assert!(d.same_content(damaged), "{ctx}: read-only fsck wrote");
        }

        // (c), the part that holds today: after fsck --repair the pool is
        // clean and whole; whatever fsck reported was repaired and named.
        {
            let d = Arc::new(damaged.snapshot());
            let store = open_on(&d, false).unwrap();
            let r = run_fsck(&store, true);
            assert!(r.exit_code() <= 1, "{ctx}: fsck --repair: {:?}", r.errors);
            assert!(
                r.errors
                    .iter()
                    .all(|f| f.repaired && f.what.contains(named)),
                "{ctx}: fsck --repair: {:?}",
                r.errors
            );
            drop(store);
            let store = open_on(&d, true).unwrap();
            let r = run_fsck(&store, false);
            assert_eq!(r.exit_code(), 0, "{ctx}: fsck after repair: {:?}", r.errors);
            assert_model(&store, &built.model_b, &format!("{ctx}, after repair"));
        }
    });
}

/// (c) as fsck(8) promises it: fsck --repair of a pool with one damaged
/// copy exits 1 (errors corrected) and names the copy it rewrote.
///
/// Fails today for copy 0 of every block on the open path (pool tree nodes,
/// the dataset tree root, space map blocks): `Store::open` read-write reads
/// them through `Pool::read_block`, which self-heals copy 0 silently, so the
/// fsck walk afterwards finds nothing and exits 0.
#[test]
fn fsck_repair_reports_each_copy_it_fixes() {
    let mut failures: Vec<String> = Vec::new();
    for_each_damaged_copy(11, |_, ctx, named, _, damaged| {
        let d = Arc::new(damaged.snapshot());
        let store = open_on(&d, false).unwrap();
        let healed_at_open = healed(&store);
        let r = run_fsck(&store, true);
        if r.exit_code() != 1
            || r.errors.len() != 1
            || !r.errors[0].repaired
            || !r.errors[0].what.contains(named)
        {
            failures.push(format!(
                "{ctx}: fsck --repair exit {} (open healed {healed_at_open} copies), findings {:?}",
                r.exit_code(),
                r.errors
            ));
        }
    });
    assert!(
        failures.is_empty(),
        "{} damaged copies were not reported by fsck --repair:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// With one metadata copy a damaged leaf cannot be healed: reads under it
/// fail naming the block, every other key still reads, fsck says exit 4.
#[test]
fn single_copy_damaged_leaf_fails_reads_naming_the_block() {
    let built = build(1, 2);
    let blocks = {
        let store = open_on(&built.dev, true).unwrap();
        metadata_blocks(&store)
    };
    let mut rng = StdRng::seed_from_u64(7);
    // The first, a middle and the last leaf.
    let n = blocks.dataset_leaves.len();
    assert!(n >= 3, "{n} leaves");
    for li in [0, n / 2, n - 1] {
        let (bp, leaf_keys) = &blocks.dataset_leaves[li];
        assert_eq!(bp.addrs.len(), 1);
        let (damaged, bit) = damage_copy(&built.dev, bp, 0, &mut rng);
        let addr = format!("{}:{}", bp.addrs[0].device, bp.addrs[0].offset);
        let ctx = format!("leaf {li} at {addr}, bit {bit}");
        let dev = Arc::new(damaged);
        let store = open_on(&dev, false).unwrap_or_else(|e| {
            panic!("{ctx}: open (the leaf is not on the open path) failed: {e}")
        });
        store
            .read_tree(DS, |t| {
                for (k, v) in &built.model_b {
                    let got = t.get(k);
                    if leaf_keys.contains(k) {
                        let e =
                            got.expect_err(&format!("{ctx}: key {k:?} under the bad leaf read"));
                        let msg = e.to_string();
                        assert!(
                            msg.contains("checksum") && msg.contains(&addr),
                            "{ctx}: error does not name the block: {msg}"
                        );
                    } else {
                        match got {
                            Ok(Some(g)) => assert_eq!(&g, v, "{ctx}: wrong value for {k:?}"),
                            other => panic!("{ctx}: key {k:?} elsewhere: {other:?}"),
                        }
                    }
                }
                // A full scan yields correct entries up to the bad leaf, then an error.
                let mut expect = built.model_b.iter();
                let mut failed = false;
                for item in t.iter() {
                    match item {
                        Ok((k, v)) => {
                            let (mk, mv) = expect.next().expect("scan yields more than the model");
                            assert_eq!((&k, &v), (mk, mv), "{ctx}: scan returned wrong data");
                        }
                        Err(e) => {
                            assert!(e.to_string().contains(&addr), "{ctx}: scan error: {e}");
                            failed = true;
                            break;
                        }
                    }
                }
                assert!(failed, "{ctx}: the scan did not hit the bad leaf");
                // Scans that start past the bad leaf (forwards from the next
                // leaf's first key, backwards from the previous leaf's last
                // key) do not touch it and read the rest exactly.
                let first = leaf_keys.first().unwrap().clone();
                let last = leaf_keys.last().unwrap().clone();
                let m = &built.model_b;
                if let Some((next, _)) = m
                    .range::<Vec<u8>, _>((Bound::Excluded(&last), Bound::Unbounded))
                    .next()
                {
                    let got: Vec<_> = t
                        .range(Bound::Included(next), Bound::Unbounded)
                        .collect::<Result<_, _>>()
                        .unwrap_or_else(|e| panic!("{ctx}: scan after the leaf: {e}"));
                    let want: Vec<_> = m
                        .range::<Vec<u8>, _>((Bound::Included(next), Bound::Unbounded))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    assert!(got == want, "{ctx}: scan after the bad leaf differs");
                }
                if let Some((prev, _)) = m
                    .range::<Vec<u8>, _>((Bound::Unbounded, Bound::Excluded(&first)))
                    .next_back()
                {
                    let got: Vec<_> = t
                        .range_rev(Bound::Unbounded, Bound::Included(prev))
                        .collect::<Result<_, _>>()
                        .unwrap_or_else(|e| panic!("{ctx}: reverse scan before the leaf: {e}"));
                    let want: Vec<_> = m
                        .range::<Vec<u8>, _>((Bound::Unbounded, Bound::Included(prev)))
                        .rev()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    assert!(
                        got == want,
                        "{ctx}: reverse scan before the bad leaf differs"
                    );
                }
                Ok(())
            })
            .unwrap();
        drop(store);

        for repair in [false, true] {
            let store = open_on(&dev, !repair).unwrap();
            let r = run_fsck(&store, repair);
            assert_eq!(
                r.exit_code(),
                4,
                "{ctx}: fsck repair={repair}: {:?}",
                r.errors
            );
            assert!(
                r.errors
                    .iter()
                    .any(|f| !f.repaired && f.what.contains(&addr)),
                "{ctx}: fsck repair={repair} does not name the block: {:?}",
                r.errors
            );
        }
    }
}

/// One copy of the newest pool tree root damaged: open falls back to the
/// previous txg (or fails clearly), never panics or returns wrong data.
#[test]
fn single_copy_damaged_pool_root_falls_back_or_fails_clearly() {
    let built = build(1, 3);
    let blocks = {
        let store = open_on(&built.dev, true).unwrap();
        metadata_blocks(&store)
    };
    let root = blocks.pool_root.clone().unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..4 {
        let (damaged, bit) = damage_copy(&built.dev, &root, 0, &mut rng);
        let dev = Arc::new(damaged);
        match open_on(&dev, true) {
            Ok(store) => {
                let rep = store.open_report();
                eprintln!(
                    "pool root bit {bit}: opened txg {}, skipped {:?}",
                    rep.txg, rep.skipped
                );
                assert_eq!(rep.txg, built.txg_a, "bit {bit}: fell back to {}", rep.txg);
                assert!(
                    rep.skipped.iter().any(|(t, _)| *t == built.txg_b),
                    "bit {bit}: skipped {:?}",
                    rep.skipped
                );
                assert_model(&store, &built.model_a, &format!("pool root bit {bit}"));
                // The lost txg is reported until a commit supersedes it.
                let r = run_fsck(&store, false);
                assert!(
                    r.errors
                        .iter()
                        .any(|f| f.what.contains(&format!("txg {} is damaged", built.txg_b))),
                    "{:?}",
                    r.errors
                );
                // --repair needs a writable open; its commit supersedes the
                // damaged txg, and the next check is clean.
                let rw = open_on(&Arc::new(dev.snapshot()), false).unwrap();
                let r = run_fsck(&rw, true);
                assert_eq!(
                    r.exit_code(),
                    1,
                    "bit {bit}: fsck --repair of txg {}: {:?}",
                    rep.txg,
                    r.errors
                );
            }
            Err(e) => {
                let msg = e.to_string();
                eprintln!("pool root bit {bit}: open failed: {msg}");
                assert!(msg.contains("checksum"), "bit {bit}: unclear error: {msg}");
            }
        }
    }
}

/// Zeroed front labels: the back labels carry the pool. All four zeroed:
/// not an AegisFS device.
#[test]
fn damaged_labels() {
    let built = build(2, 4);
    let offs = label_offsets(DEV_SIZE);
    let zeros = vec![0u8; LABEL_SIZE as usize];

    let front = Arc::new(built.dev.snapshot());
    front.write_at(&zeros, offs[0]).unwrap();
    front.write_at(&zeros, offs[1]).unwrap();
    {
        let store = open_on(&front, true).expect("opens from the back labels");
        assert_eq!(store.open_report().txg, built.txg_b);
        assert_model(&store, &built.model_b, "front labels zeroed");
        assert_eq!(run_fsck(&store, false).exit_code(), 0);
    }
    {
        // And it keeps working: a write and commit, then a reopen.
        let store = open_on(&front, false).unwrap();
        store
            .with_tree(DS, AllocClass::Normal, |t| {
                t.insert(b"after-label-loss", b"yes")?;
                Ok(())
            })
            .unwrap();
        store.commit().unwrap();
        drop(store);
        let store = open_on(&front, true).unwrap();
        let mut m = built.model_b.clone();
        m.insert(b"after-label-loss".to_vec(), b"yes".to_vec());
        assert_model(&store, &m, "commit after front labels zeroed");
        assert_eq!(run_fsck(&store, false).exit_code(), 0);
    }

    let all = Arc::new(built.dev.snapshot());
    for off in offs {
        all.write_at(&zeros, off).unwrap();
    }
    for read_only in [true, false] {
        let err = open_on(&all, read_only)
            .err()
            .expect("open without labels must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("not an AegisFS device"),
            "all labels zeroed: {msg}"
        );
    }
}

/// The newest uberblock slot torn in every label: the previous txg opens,
/// with exactly its contents, and the pool goes on from there.
#[test]
fn torn_newest_uberblock_falls_back() {
    let built = build(2, 5);
    let dev = Arc::new(built.dev.snapshot());
    let slot = built.txg_b % UBER_SLOTS;
    for off in label_offsets(DEV_SIZE) {
        let at = off + UBER_RING_OFFSET + slot * UBER_SLOT_SIZE as u64 + 100;
        let mut b = [0u8; 1];
        dev.read_at(&mut b, at).unwrap();
        b[0] ^= 0x5a;
        dev.write_at(&b, at).unwrap();
    }
    {
        let store = open_on(&dev, true).unwrap();
        assert_eq!(store.open_report().txg, built.txg_a);
        assert_model(&store, &built.model_a, "torn newest uberblock");
        let r = run_fsck(&store, false);
        assert_eq!(r.exit_code(), 0, "{:?}", r.errors);
    }
    // A torn slot's txg number is unknowable, so numbering resumes after txg_a.
    continue_after_fallback(&dev, &built, built.txg_a);
}

/// Both copies of the newest pool tree root damaged: the previous txg opens
/// and the report names the txg passed over.
#[test]
fn damaged_newest_pool_root_falls_back() {
    let built = build(2, 6);
    let blocks = {
        let store = open_on(&built.dev, true).unwrap();
        metadata_blocks(&store)
    };
    let root = blocks.pool_root.unwrap();
    let dev = Arc::new(built.dev.snapshot());
    for a in &root.addrs {
        flip_bit(&dev, a.offset, 77);
    }
    for read_only in [true, false] {
        let d = Arc::new(dev.snapshot());
        let store = open_on(&d, read_only).unwrap();
        let rep = store.open_report();
        assert_eq!(rep.txg, built.txg_a);
        assert_eq!(rep.newest_txg, built.txg_b);
        assert!(
            rep.skipped
                .iter()
                .any(|(t, why)| *t == built.txg_b && why.contains("checksum")),
            "skipped: {:?}",
            rep.skipped
        );
        assert_model(&store, &built.model_a, "damaged newest pool root");
        let r = run_fsck(&store, false);
        assert_eq!(r.exit_code(), 4, "{:?}", r.errors);
        if !read_only {
            // --repair commits on top, which supersedes the damaged txg.
            let r = run_fsck(&store, true);
            assert_eq!(r.exit_code(), 1, "{:?}", r.errors);
            drop(store);
            let again = open_on(&d, true).unwrap();
            assert!(
                again.open_report().skipped.is_empty(),
                "{:?}",
                again.open_report().skipped
            );
            assert_eq!(run_fsck(&again, false).exit_code(), 0);
            assert_model(&again, &built.model_a, "after repair");
        }
    }
    // txg_b was seen (its uberblock is intact), so it is never reused.
    continue_after_fallback(&dev, &built, built.txg_b);
}

/// After opening an older txg, new commits must work and survive a reopen.
fn continue_after_fallback(dev: &Arc<MemDevice>, built: &Built, newest_seen: u64) {
    let store = open_on(dev, false).unwrap();
    assert_eq!(store.open_report().txg, built.txg_a);
    let mut m = built.model_a.clone();
    store
        .with_tree(DS, AllocClass::Normal, |t| {
            for i in 0..300u32 {
                let k = format!("new/{i:05}").into_bytes();
                let v = vec![i as u8; 50];
                t.insert(&k, &v)?;
                m.insert(k, v);
            }
            Ok(())
        })
        .unwrap();
    let txg = store.commit().unwrap();
    assert!(txg > newest_seen, "txg {txg} reuses a number already seen");
    drop(store);
    let store = open_on(dev, true).unwrap();
    assert_eq!(store.open_report().txg, txg);
    assert_model(&store, &m, "commit after fallback");
    let r = run_fsck(&store, false);
    assert_eq!(
        r.exit_code(),
        0,
        "fsck after commit on fallback: {:?}",
        r.errors
    );
}
