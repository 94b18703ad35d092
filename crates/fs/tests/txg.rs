//! Transaction groups and space.
//!
//! - Changes live in the open txg in memory: nothing reaches the device
//!   until a commit, and a commit writes the dirty nodes bottom-up, flushes,
//!   writes the uberblock to every label and flushes again.
//! - Commits happen on a timer (the sync thread, never an empty commit), when
//!   the dirty amount passes its limit (at once past the limit, through the
//!   sync thread past half of it), on request and at shutdown.
//! - Frees are deferred: a block freed in txg F is reusable only once txg
//!   F + DEFER_TXGS has committed, so the older uberblocks still open intact.
//! - ENOSPC: a full pool refuses a change before making it, keeps exactly
//!   what was accepted, still commits, and deletes (reserved class) work on
//!   it until normal writes fit again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_block::{DeviceRef, MemDevice, RecordedOp, RecordingDevice};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::fsck::fsck;
use aegis_fs::{FsError, Store, StoreOptions};
use aegis_pool::label::{label_offsets, LABEL_COUNT, UBER_RING_OFFSET};
use aegis_pool::uberblock::{UBER_SLOTS, UBER_SLOT_SIZE};
use aegis_pool::{AllocClass, BlockPtr, CreateOptions, Extent, OpenOptions, DEFER_TXGS};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const DS: u64 = ROOT_DATASET;
const HOUR: Duration = Duration::from_secs(3600);

fn opts(sync_interval: Duration, dirty_limit: u64) -> StoreOptions {
    StoreOptions {
        sync_interval,
        dirty_limit,
        ..Default::default()
    }
}

/// No commits but the ones a test asks for.
fn manual() -> StoreOptions {
    opts(HOUR, StoreOptions::default().dirty_limit)
}

fn create(dev: DeviceRef, o: StoreOptions) -> Arc<Store> {
    Store::create(vec![dev], &CreateOptions::default(), o).expect("create store")
}

fn open_with(dev: MemDevice, open: &OpenOptions) -> Arc<Store> {
    Store::open(vec![Arc::new(dev) as DeviceRef], open, manual()).expect("open snapshot")
}

/// A second store on a point-in-time copy of `dev`: what a reboot now sees.
fn open_copy(dev: &MemDevice) -> Arc<Store> {
    open_with(dev.snapshot(), &OpenOptions::default())
}

fn txg(store: &Store) -> u64 {
    store.pool().last_uberblock().expect("committed").txg
}

fn contents(store: &Store) -> Model {
    store
        .read_tree(DS, |t| {
            t.iter()
                .map(|r| r.map_err(FsError::from))
                .collect::<Result<Model, FsError>>()
        })
        .expect("read tree")
}

fn dirty_bytes(store: &Store) -> u64 {
    store.read_tree(DS, |t| Ok(t.dirty_bytes())).unwrap()
}

fn is_dirty(store: &Store) -> bool {
    store.read_tree(DS, |t| Ok(t.is_dirty())).unwrap()
}

fn insert(store: &Store, k: &[u8], v: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
    store.with_tree(DS, AllocClass::Normal, |t| Ok(t.insert(k, v)?))
}

fn remove(store: &Store, k: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
    store.with_tree(DS, AllocClass::Reserved, |t| Ok(t.remove(k)?))
}

fn fsck_clean(store: &Store, when: &str) {
    let r = fsck(store, false, &mut |_, _| {}).expect("fsck runs");
    assert!(r.errors.is_empty(), "fsck {when}: {:?}", r.errors);
    assert_eq!(r.txg, txg(store), "fsck {when}: checked another txg");
}

/// Random bytes: incompressible, so the space a value takes is its size.
fn noise(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

fn key(i: u64) -> Vec<u8> {
    format!("key/{:010}", i.wrapping_mul(2_654_435_761) % 4_294_967_291).into_bytes()
}

/// Poll `cond` every 10 ms for at most `limit`; how long it took, if it did.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Deferred extents grouped by the txg that freed them.
fn deferred_by_txg(store: &Store) -> BTreeMap<u64, BTreeSet<Extent>> {
    let mut out: BTreeMap<u64, BTreeSet<Extent>> = BTreeMap::new();
    for (t, e) in store.pool().deferred_extents() {
        out.entry(t).or_default().insert(e);
    }
    out
}

/// Every node block of the committed dataset tree, with its children.
fn committed_nodes(store: &Store) -> Vec<(BlockPtr, Vec<BlockPtr>)> {
    let root = store
        .dataset_record(DS)
        .expect("root dataset")
        .root
        .root
        .expect("non-empty tree");
    store
        .read_tree(DS, |t| {
            let mut out = Vec::new();
            let mut todo = vec![root];
            while let Some(bp) = todo.pop() {
                let node = t.load(&bp)?;
                let kids: Vec<BlockPtr> = (0..node.len())
                    .filter_map(|i| node.child_ptr(i).cloned())
                    .collect();
                todo.extend(kids.iter().cloned());
                out.push((bp, kids));
            }
            Ok(out)
        })
        .unwrap()
}

// ---------------------------------------------------------------------------
// 1. The open txg lives in memory; the commit protocol.
// ---------------------------------------------------------------------------

#[test]
fn changes_stay_in_memory_until_commit() {
    const SIZE: u64 = 32 << 20;
    let rec = Arc::new(RecordingDevice::new(MemDevice::new(SIZE)));
    let store = create(rec.clone() as DeviceRef, manual());
    assert_eq!(txg(&store), 1);
    let mut rng = StdRng::seed_from_u64(1);
    let mut model = Model::new();

    // Enough keys for a tree of several levels.
    let ops_before = rec.len();
    let before = rec.live();
    for i in 0..3000 {
        let v = noise(&mut rng, 60);
        assert_eq!(insert(&store, &key(i), &v).unwrap(), None);
        model.insert(key(i), v);
    }
    assert!(is_dirty(&store));
    assert_eq!(rec.len(), ops_before, "inserts wrote to the device");
    assert!(rec.live().same_content(&before));
    assert_eq!(contents(&store), model, "the open txg reads its own writes");

    let other = open_copy(&rec.live());
    assert_eq!(txg(&other), 1, "a copy taken before the commit");
    assert!(contents(&other).is_empty(), "uncommitted keys on disk");
    drop(other);

    // The commit: nodes and space map, flush, one uberblock per label,
    // flush.
    let first_op = rec.len();
    assert_eq!(store.commit().unwrap(), 2);
    assert_eq!(txg(&store), 2);
    assert!(!is_dirty(&store));
    let ops = rec.ops()[first_op..].to_vec();
    let flushes: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i] == RecordedOp::Flush)
        .collect();
    assert_eq!(flushes.len(), 2, "a commit flushes twice");
    assert_eq!(flushes[1], ops.len() - 1, "a commit ends with a flush");
    let slot = (2 % UBER_SLOTS) * UBER_SLOT_SIZE as u64;
    let want: BTreeSet<u64> = label_offsets(SIZE)
        .iter()
        .map(|o| o + UBER_RING_OFFSET + slot)
        .collect();
    let uber: BTreeSet<u64> = ops[flushes[0] + 1..flushes[1]]
        .iter()
        .map(|op| match op {
            RecordedOp::Write { offset, .. } => *offset,
            other => panic!("{other:?} among the uberblock writes"),
        })
        .collect();
    assert_eq!(uber.len(), LABEL_COUNT, "one uberblock per label");
    assert_eq!(
        uber, want,
        "uberblocks at the ring slot of txg 2 in every label"
    );
    // Op index of every write before the first flush, by offset.
    let mut written: HashMap<u64, usize> = HashMap::new();
    for (i, op) in ops[..flushes[0]].iter().enumerate() {
        if let RecordedOp::Write { offset, .. } = op {
            written.insert(*offset, i);
        }
    }
    let at = |bp: &BlockPtr| -> (usize, usize) {
        let idx: Vec<usize> = bp
            .addrs
            .iter()
            .map(|a| {
                *written
                    .get(&a.offset)
                    .unwrap_or_else(|| panic!("{} not written before the flush", bp.describe()))
            })
            .collect();
        (*idx.iter().min().unwrap(), *idx.iter().max().unwrap())
    };
    // Every block of the txg is on the device before the first flush; their
    // order among themselves does not matter (nothing is reachable until
    // the uberblock after that flush), so the pool writes them sorted by
    // offset.
    let nodes = committed_nodes(&store);
    assert!(nodes.len() > 20, "only {} nodes", nodes.len());
    for (bp, kids) in &nodes {
        assert_eq!(bp.birth_txg, 2);
        at(bp);
        for k in kids {
            at(k);
        }
    }
    let sm = store.pool().last_uberblock().unwrap().space_map.unwrap();
    at(&sm);

    let other = open_copy(&rec.live());
    assert_eq!(txg(&other), 2);
    assert_eq!(contents(&other), model);
    fsck_clean(&other, "copy after commit");
    drop(other);

    // Overwrites and removes: still the old txg on disk until the next commit.
    let committed = model.clone();
    for i in (0..3000).step_by(3) {
        if i % 2 == 0 {
            assert!(remove(&store, &key(i)).unwrap().is_some());
            model.remove(&key(i));
        } else {
            let v = noise(&mut rng, 80);
            assert!(insert(&store, &key(i), &v).unwrap().is_some());
            model.insert(key(i), v);
        }
    }
    let other = open_copy(&rec.live());
    assert_eq!(txg(&other), 2);
    assert_eq!(contents(&other), committed);
    drop(other);
    assert_eq!(store.sync_if_dirty().unwrap(), Some(3));
    let other = open_copy(&rec.live());
    assert_eq!(txg(&other), 3);
    assert_eq!(contents(&other), model);
    drop(other);

    // On request: sync_if_dirty skips a clean txg, commit() does not (and
    // an empty commit writes only uberblocks).
    let n = rec.len();
    assert_eq!(store.sync_if_dirty().unwrap(), None);
    assert_eq!(rec.len(), n, "sync_if_dirty wrote a clean txg");
    assert_eq!(store.commit().unwrap(), 4);
    let ops = rec.ops()[n..].to_vec();
    assert_eq!(ops[0], RecordedOp::Flush, "an empty commit wrote data");
    assert_eq!(ops.len(), LABEL_COUNT + 2);
    assert_eq!(contents(&open_copy(&rec.live())), model);
    fsck_clean(&store, "after empty commit");
}

// ---------------------------------------------------------------------------
// 2. The timer.
// ---------------------------------------------------------------------------

#[test]
fn sync_thread_commits_on_timer_only_when_dirty() {
    let dev = Arc::new(MemDevice::new(32 << 20));
    let interval = Duration::from_millis(200);
    let store = create(dev.clone() as DeviceRef, opts(interval, 64 << 20));
    store.start_sync_thread();
    let mut rng = StdRng::seed_from_u64(2);
    let mut model = Model::new();

    for round in 0..2u64 {
        let t0 = txg(&store);
        for i in 0..200 {
            let k = key(round * 1000 + i);
            let v = noise(&mut rng, 50);
            insert(&store, &k, &v).unwrap();
            model.insert(k, v);
        }
        // The thread commits within a few intervals and leaves nothing dirty
        // (the tree lock is held for a whole commit, so clean means done).
        let took = wait_until(Duration::from_secs(3), || {
            txg(&store) > t0 && !is_dirty(&store)
        })
        .unwrap_or_else(|| panic!("round {round}: no timer commit within 3 s"));
        eprintln!("round {round}: timer commit after {took:?}");
        let copy = open_copy(&dev);
        assert_eq!(contents(&copy), model, "round {round}");
        drop(copy);

        // Nothing dirty: no commits from the timer.
        let t1 = txg(&store);
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(txg(&store), t1, "round {round}: empty commits on the timer");
    }
    fsck_clean(&store, "after timer commits");

    store.shutdown().unwrap();
    assert_eq!(
        Arc::strong_count(&store),
        1,
        "the sync thread still holds the store after shutdown"
    );
    // The thread is gone: new changes stay uncommitted.
    let t2 = txg(&store);
    insert(&store, b"after shutdown", b"x").unwrap();
    std::thread::sleep(interval * 4);
    assert_eq!(txg(&store), t2, "a commit after shutdown");
    assert!(is_dirty(&store));
}

// ---------------------------------------------------------------------------
// 3. Dirty size.
// ---------------------------------------------------------------------------

const DIRTY_LIMIT: u64 = 256 << 10;

#[test]
fn dirty_limit_forces_commits_and_bounds_memory() {
    let dev = Arc::new(MemDevice::new(64 << 20));
    let store = create(dev.clone() as DeviceRef, opts(HOUR, DIRTY_LIMIT));
    let bs = store.pool().block_size() as u64;
    let mut rng = StdRng::seed_from_u64(3);
    let mut model = Model::new();
    let t0 = txg(&store);
    let mut peak_inside = 0;
    let mut peak_after = 0;
    let mut commits_seen = 0;
    let mut last = t0;
    for i in 0..8000u64 {
        let k = key(i);
        let v = noise(&mut rng, 100);
        let inside = store
            .with_tree(DS, AllocClass::Normal, |t| {
                t.insert(&k, &v)?;
                Ok(t.dirty_bytes())
            })
            .unwrap();
        model.insert(k, v);
        peak_inside = peak_inside.max(inside);
        let after = dirty_bytes(&store);
        peak_after = peak_after.max(after);
        assert!(
            after <= DIRTY_LIMIT,
            "insert {i}: {after} dirty bytes after the call, limit {DIRTY_LIMIT}"
        );
        let now = txg(&store);
        if now != last {
            assert_eq!(now, last + 1);
            assert!(
                inside > DIRTY_LIMIT,
                "insert {i}: a commit with only {inside} bytes dirty"
            );
            assert_eq!(after, 0, "insert {i}: dirty after its commit");
            commits_seen += 1;
            last = now;
        }
    }
    eprintln!(
        "dirty limit: {commits_seen} commits, peak {peak_inside} B inside an op, {peak_after} B after"
    );
    // ~8000 × 120 B through 64-node batches: many commits, none requested.
    assert!(commits_seen >= 10, "only {commits_seen} commits");
    let h = store.read_tree(DS, |t| Ok(t.height())).unwrap() as u64;
    assert!(peak_inside <= DIRTY_LIMIT + 2 * (h + 1) * bs);

    // What the size-triggered commits wrote is on disk; the tail is not.
    let copy = open_copy(&dev);
    assert_eq!(txg(&copy), last);
    let on_disk = contents(&copy);
    assert!(on_disk.len() > 7000, "{} keys on disk", on_disk.len());
    assert!(on_disk.iter().all(|(k, v)| model.get(k) == Some(v)));
    drop(copy);
    store.commit().unwrap();
    assert_eq!(contents(&open_copy(&dev)), model);
    fsck_clean(&store, "after dirty-limit commits");
}

#[test]
fn half_the_dirty_limit_wakes_the_sync_thread() {
    let dev = Arc::new(MemDevice::new(32 << 20));
    let store = create(dev.clone() as DeviceRef, opts(HOUR, DIRTY_LIMIT));
    store.start_sync_thread();
    let mut rng = StdRng::seed_from_u64(33);
    let t0 = txg(&store);
    let mut n = 0u64;
    // Dirty a little past half the limit, far from the limit itself.
    while txg(&store) == t0 && dirty_bytes(&store) <= DIRTY_LIMIT / 2 {
        let v = noise(&mut rng, 100);
        insert(&store, &key(n), &v).unwrap();
        n += 1;
        assert!(n < 100_000);
    }
    assert!(dirty_bytes(&store) < DIRTY_LIMIT);
    let took = wait_until(Duration::from_secs(3), || txg(&store) > t0)
        .expect("no commit from the sync thread past half the dirty limit");
    eprintln!("half-limit: {n} inserts, sync thread committed after {took:?}");
    store.shutdown().unwrap();
    assert_eq!(contents(&open_copy(&dev)).len() as u64, n);
}

// ---------------------------------------------------------------------------
// 4. Deferred frees.
// ---------------------------------------------------------------------------

#[test]
fn frees_are_deferred_for_two_txgs() {
    assert_eq!(DEFER_TXGS, 2);
    // Small, so the churn below wraps the allocator around the device.
    let dev = Arc::new(MemDevice::new(16 << 20));
    let store = create(dev.clone() as DeviceRef, manual());
    let mut rng = StdRng::seed_from_u64(4);
    let mut model = Model::new();
    let mut states: BTreeMap<u64, Model> = BTreeMap::from([(1, Model::new())]);
    let mut next = 0u64;
    for _ in 0..4000 {
        let v = noise(&mut rng, 200);
        model.insert(key(next), v);
        insert(&store, &key(next), &model[&key(next)]).unwrap();
        next += 1;
    }
    states.insert(store.commit().unwrap(), model.clone());

    // Churn: every commit frees blocks; each txg's frees stay deferred until
    // txg + 2 commits, and meanwhile the two older txgs open intact.
    let mut prev = deferred_by_txg(&store);
    // Device addresses of committed tree nodes → the txg that wrote them.
    let mut seen: HashMap<(u32, u64), u64> = HashMap::new();
    let mut reused = 0;
    for round in 0..16 {
        let mut keys: Vec<Vec<u8>> = model.keys().cloned().collect();
        keys.shuffle(&mut rng);
        for k in keys.iter().take(250) {
            assert_eq!(remove(&store, k).unwrap().as_ref(), model.get(k));
            model.remove(k);
        }
        for _ in 0..250 {
            let v = noise(&mut rng, 200);
            insert(&store, &key(next), &v).unwrap();
            model.insert(key(next), v);
            next += 1;
        }
        let c = store.commit().unwrap();
        states.insert(c, model.clone());
        let space = store.pool().space();
        for (bp, _) in committed_nodes(&store) {
            if bp.birth_txg == c {
                for a in &bp.addrs {
                    if seen.insert((a.device, a.offset), c).is_some() {
                        reused += 1;
                    }
                }
            }
        }

        let now = deferred_by_txg(&store);
        let total: u64 = now.values().flatten().map(|e| e.len).sum();
        assert_eq!(total, space.deferred, "round {round}: deferred bytes");
        assert!(now.contains_key(&c), "round {round}: txg {c} freed nothing");
        for (&t, set) in &now {
            assert!(
                t + DEFER_TXGS > c,
                "round {round}: frees of txg {t} still deferred after txg {c}"
            );
            if t < c {
                assert_eq!(
                    Some(set),
                    prev.get(&t),
                    "round {round}: frees of txg {t} changed"
                );
            }
        }
        assert_eq!(
            prev.get(&(c - 1)),
            now.get(&(c - 1)),
            "round {round}: frees of txg {} released after one commit",
            c - 1
        );
        prev = now;
        fsck_clean(&store, &format!("round {round}"));

        // The blocks of the two previous txgs were not reused.
        for back in 1..=DEFER_TXGS {
            let t = c - back;
            let old = open_with(
                dev.snapshot(),
                &OpenOptions {
                    read_only: true,
                    rewind_txg: Some(t),
                },
            );
            assert_eq!(txg(&old), t);
            assert_eq!(&contents(&old), &states[&t], "round {round}: rewind to {t}");
        }
    }
    eprintln!("deferred: {reused} node copies written over freed space");
    assert!(
        reused > 100,
        "freed space was hardly reused ({reused} blocks)"
    );

    // Drain, then one deleting commit D: its frees come back exactly at
    // D + 2, and a reopen in between keeps them deferred.
    store.commit().unwrap();
    store.commit().unwrap();
    assert_eq!(store.pool().space().deferred, 0, "drained after 2 commits");
    let keys: Vec<Vec<u8>> = model.keys().take(2000).cloned().collect();
    for k in &keys {
        remove(&store, k).unwrap();
        model.remove(k);
    }
    let d = store.commit().unwrap();
    let s0 = store.pool().space();
    assert!(s0.deferred > 0, "deletes of 2000 keys deferred nothing");
    assert_eq!(deferred_by_txg(&store).keys().collect::<Vec<_>>(), vec![&d]);
    fsck_clean(&store, "after the deleting commit");

    assert_eq!(store.commit().unwrap(), d + 1);
    let s1 = store.pool().space();
    assert_eq!(s1.deferred, s0.deferred, "released after one commit");
    assert_eq!(s1.free, s0.free);
    let copy = open_copy(&dev);
    assert_eq!(copy.pool().space().deferred, s0.deferred, "reopen at D+1");
    assert_eq!(copy.pool().space().free, s0.free, "reopen at D+1");
    drop(copy);
    fsck_clean(&store, "at D+1");

    assert_eq!(store.commit().unwrap(), d + 2);
    let s2 = store.pool().space();
    assert_eq!(s2.deferred, 0, "not released at D+2");
    assert_eq!(s2.free, s0.free + s0.deferred);
    let copy = open_copy(&dev);
    assert_eq!(copy.pool().space(), s2, "reopen at D+2");
    assert_eq!(contents(&copy), model);
    drop(copy);
    fsck_clean(&store, "at D+2");
}

// ---------------------------------------------------------------------------
// 5. ENOSPC and the reserve.
// ---------------------------------------------------------------------------

fn big_value(store: &Store, rng: &mut StdRng, k: &[u8]) -> Vec<u8> {
    let len = store
        .read_tree(DS, |t| Ok(t.max_value_len(k.len())))
        .unwrap();
    assert!(len > 500);
    noise(rng, len)
}

#[test]
fn full_pool_refuses_cleanly_and_recovers() {
    let dev = Arc::new(MemDevice::new(8 << 20));
    let store = create(dev.clone() as DeviceRef, manual());
    let mut rng = StdRng::seed_from_u64(5);
    let mut model = Model::new();
    let start = Instant::now();

    let mut next = 0u64;
    let err = loop {
        assert!(next < 20_000, "an 8 MiB pool took {next} big values");
        let k = key(next);
        let v = big_value(&store, &mut rng, &k);
        match insert(&store, &k, &v) {
            Ok(prev) => {
                assert_eq!(prev, None);
                model.insert(k, v);
                next += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(err.is_no_space(), "not ENOSPC: {err}");
    assert!(err.is_no_space(), "{err}");
    let space = store.pool().space();
    eprintln!(
        "ENOSPC after {} values ({:?}): {err}; space {space:?}",
        model.len(),
        start.elapsed()
    );
    assert!(model.len() > 1000, "only {} values fit", model.len());
    assert!(
        store.pool().available(AllocClass::Normal) < space.total / 16,
        "refused with room left: {space:?}"
    );
    assert_eq!(contents(&store), model, "a refused insert changed the tree");
    assert!(store.pool().failure().is_none());

    // More attempts on the full pool: each is done or refused whole.
    for _ in 0..20 {
        let k = key(next);
        next += 1;
        let v = big_value(&store, &mut rng, &k);
        match insert(&store, &k, &v) {
            Ok(_) => {
                model.insert(k, v);
            }
            Err(e) => assert!(e.is_no_space(), "{e}"),
        }
        let k = model.keys().nth(model.len() / 2).unwrap().clone();
        let v = big_value(&store, &mut rng, &k);
        match insert(&store, &k, &v) {
            Ok(prev) => assert_eq!(prev.as_ref(), model.insert(k, v).as_ref()),
            Err(e) => assert!(e.is_no_space(), "{e}"),
        }
    }
    assert_eq!(contents(&store), model);

    let full_txg = store.commit().expect("commit on a full pool");
    assert_eq!(txg(&store), full_txg);
    fsck_clean(&store, "full pool");
    let copy = open_copy(&dev);
    assert_eq!(contents(&copy), model, "reopen of the full pool");
    fsck_clean(&copy, "reopened full pool");
    drop(copy);

    // Deletes work on the full pool (reserved class), and so do commits.
    let doomed: Vec<Vec<u8>> = model.keys().take(model.len() / 2).cloned().collect();
    let t_del = txg(&store);
    for (i, k) in doomed.iter().enumerate() {
        let got = remove(&store, k)
            .unwrap_or_else(|e| panic!("delete {i} of {} on a full pool: {e}", doomed.len()));
        assert_eq!(got.as_ref(), model.get(k));
        model.remove(k);
    }
    store.commit().expect("commit of the deletes");
    eprintln!(
        "deleted {} keys in {} txgs",
        doomed.len(),
        txg(&store) - t_del
    );
    for _ in 0..DEFER_TXGS {
        store.commit().unwrap();
    }
    let space = store.pool().space();
    assert_eq!(space.deferred, 0);
    assert!(
        store.pool().available(AllocClass::Normal) > space.total / 4,
        "deletes gave nothing back: {space:?}"
    );
    for _ in 0..50 {
        let k = key(next);
        next += 1;
        let v = big_value(&store, &mut rng, &k);
        insert(&store, &k, &v).expect("normal insert after deletes");
        model.insert(k, v);
    }
    store.commit().unwrap();
    assert_eq!(contents(&store), model);
    fsck_clean(&store, "after recovery");
    let copy = open_copy(&dev);
    assert_eq!(contents(&copy), model, "reopen after recovery");
    fsck_clean(&copy, "reopened after recovery");
    eprintln!("ENOSPC test body: {:?}", start.elapsed());
}

// ---------------------------------------------------------------------------
// 6. Shutdown commits.
// ---------------------------------------------------------------------------

#[test]
fn shutdown_commits_what_is_dirty() {
    for with_thread in [true, false] {
        let dev = Arc::new(MemDevice::new(16 << 20));
        let store = create(dev.clone() as DeviceRef, manual());
        if with_thread {
            store.start_sync_thread();
        }
        let mut rng = StdRng::seed_from_u64(6);
        let mut model = Model::new();
        for i in 0..500 {
            let v = noise(&mut rng, 40);
            insert(&store, &key(i), &v).unwrap();
            model.insert(key(i), v);
        }
        assert_eq!(txg(&store), 1);
        assert!(contents(&open_copy(&dev)).is_empty());
        store.shutdown().unwrap();
        assert_eq!(txg(&store), 2, "thread {with_thread}");
        assert_eq!(Arc::strong_count(&store), 1);
        // A second shutdown has nothing to commit.
        store.shutdown().unwrap();
        assert_eq!(txg(&store), 2);
        drop(store);

        let copy = open_copy(&dev);
        assert_eq!(txg(&copy), 2);
        assert_eq!(contents(&copy), model, "thread {with_thread}");
        fsck_clean(&copy, "after shutdown");
    }
}

// ---------------------------------------------------------------------------
// Regression tests for two bugs found by this file (both fixed).
// ---------------------------------------------------------------------------

/// `Store::check_space` budgets a fixed 8 blocks (per copy) for the commit's
/// space map, but a commit of D dirty nodes appends about
/// copies × (D written + D freed) records, ⌈… / entries_per_block⌉ blocks per
/// copy (≈ D/30 blocks, 2 copies, 4 KiB blocks). Deletes (reserved class)
/// may let the dirty set grow until its commit needs all free space, so once
/// the reserve is big enough for D ≳ 600 (pools of ≳ 150 MiB at 4 KiB
/// blocks) the commit that `with_tree` makes runs out of space: the delete
/// fails with ENOSPC and the pool refuses every later commit ("an earlier
/// commit failed"). A full large pool cannot be emptied by deleting.
#[test]
fn deletes_on_a_large_full_pool_commit() {
    let dev = Arc::new(MemDevice::new(192 << 20));
    let store = create(dev.clone() as DeviceRef, manual());
    let mut rng = StdRng::seed_from_u64(7);
    let len = store
        .read_tree(DS, |t| Ok(t.max_value_len(key(0).len())))
        .unwrap();
    let mut model = Model::new();
    let mut next = 0u64;
    let err = loop {
        let (k, v) = (key(next), noise(&mut rng, len));
        match insert(&store, &k, &v) {
            Ok(_) => {
                model.insert(k, v);
                next += 1;
            }
            Err(e) => break e,
        }
        if next.is_multiple_of(4000) {
            store.commit().unwrap();
        }
    };
    assert!(err.is_no_space(), "{err}");
    store.commit().unwrap();

    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    for (i, k) in keys.iter().enumerate().step_by(2) {
        let dirty = store.read_tree(DS, |t| Ok(t.dirty_nodes())).unwrap();
        if let Err(e) = remove(&store, k) {
            // What reached the disk is still a consistent older txg.
            let copy = open_copy(&dev);
            fsck_clean(&copy, "reopened after the failed commit");
            panic!(
                "delete {i} of {} on a full pool ({dirty} nodes dirty): {e}; pool failure: {:?}; {:?}",
                keys.len(),
                store.pool().failure(),
                store.pool().space()
            );
        }
        model.remove(k);
    }
    store.commit().expect("commit of the deletes");
    assert_eq!(contents(&open_copy(&dev)), model);
    fsck_clean(&store, "after deleting half of a full pool");
}

/// The sync thread upgrades its `Weak<Store>` before it sleeps for
/// `sync_interval` and holds the strong reference while it sleeps. A store
/// dropped without `shutdown` therefore lives on for up to an interval, and
/// when the thread wakes it commits the dropped store's dirty txg with its
/// stale allocator and txg number, over whatever another store opened on
/// the same device has written since: here the newer store's txgs are
/// destroyed and the pool goes back to the dropped store's late commit.
#[test]
fn dropped_store_does_not_commit_later() {
    let dev = Arc::new(MemDevice::new(32 << 20));
    let interval = Duration::from_secs(2);
    let a = create(dev.clone() as DeviceRef, opts(interval, 64 << 20));
    let started = Instant::now();
    a.start_sync_thread();
    // Once the thread is waiting for its interval it holds a reference.
    wait_until(Duration::from_millis(500), || Arc::strong_count(&a) == 2);
    for i in 0..300 {
        insert(&a, &key(i), b"A").unwrap();
    }
    a.commit().unwrap();
    for i in 300..600 {
        insert(&a, &key(i), b"A, never committed").unwrap();
    }
    let weak = Arc::downgrade(&a);
    drop(a); // no shutdown: like a crash, the dirty txg is simply lost

    let b = Store::open(
        vec![dev.clone() as DeviceRef],
        &OpenOptions::default(),
        manual(),
    )
    .unwrap();
    for i in 1000..1900 {
        insert(&b, &key(i), b"B").unwrap();
        if i % 300 == 0 {
            b.commit().unwrap();
        }
    }
    b.commit().unwrap();
    let (b_txg, b_model) = (txg(&b), contents(&b));
    drop(b);

    let released = wait_until(Duration::from_millis(200), || weak.upgrade().is_none());
    // The other store's work is done long before the old thread's wake-up
    // (`interval` after it started); wait until past it.
    assert!(started.elapsed() < interval / 2, "too slow to show the bug");
    std::thread::sleep((interval + Duration::from_millis(500)).saturating_sub(started.elapsed()));
    let c = open_copy(&dev);
    assert_eq!(
        (txg(&c), contents(&c) == b_model),
        (b_txg, true),
        "the pool lost the reopened store's commits (dropped store released: {released:?}; skipped: {:?})",
        c.open_report().skipped
    );
    assert!(released.is_some(), "the dropped store is still alive");
}
