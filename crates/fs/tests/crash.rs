//! Crash consistency at transaction-group granularity.
//!
//! A seeded workload of random inserts, overwrites and removes, committed
//! round by round, runs on a [`RecordingDevice`] that logs every write and
//! flush. The log is then replayed into crash images: the device as of every
//! flush point, and, for every stretch of writes between two flushes, many
//! random subsets of those writes applied in random order (what a power cut
//! may leave when the disk reorders or drops unflushed writes). Every image
//! must open — no error, no panic — to exactly the state of the newest commit
//! whose uberblock reached the image: the last fully completed commit, or
//! the one being committed if one of its uberblock copies survived. Its
//! dataset tree must hold exactly what the model held after that commit,
//! and fsck must find nothing wrong. Before the first commit (an interrupted
//! mkfs) the image must be refused as holding no pool, not opened as garbage.
//! A second test keeps writing on recovered images and reopens them, so a
//! pool that went through a crash is shown to be fully usable.

use std::collections::{BTreeMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_block::{DeviceRef, MemDevice, RecordedOp, RecordingDevice};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::fsck::fsck;
use aegis_fs::{FsError, Store, StoreOptions};
use aegis_pool::{AllocClass, CreateOptions, OpenOptions, PoolError};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

const DEVICE_SIZE: u64 = 32 << 20;
const WORKLOAD_SEED: u64 = 0xC0FF_EE15_AE61_5F5D;
const SUBSET_SEED: u64 = 0x5EED_0FC4_A511;
/// Random write subsets drawn per stretch between flushes (stretches of at
/// most `EXHAUSTIVE_MAX` writes get every subset instead).
const SUBSETS_PER_GAP: usize = 16;
const EXHAUSTIVE_MAX: usize = 4;
/// Commits made on a recovered pool: enough that frees deferred by the
/// first are released (DEFER_TXGS = 2) before the last.
const DEFER_COMMITS: usize = aegis_pool::DEFER_TXGS as usize + 2;

/// The workload seed: fixed, or `AEGIS_CRASH_SEED` (decimal or 0x-hex) to
/// explore another workload; a failure message names the seed it used.
fn workload_seed() -> u64 {
    match std::env::var("AEGIS_CRASH_SEED") {
        Ok(s) => {
            let s = s.trim();
            match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            }
            .expect("AEGIS_CRASH_SEED is a number")
        }
        Err(_) => WORKLOAD_SEED,
    }
}

fn store_opts() -> StoreOptions {
    // No background commits: every txg is one the test asked for.
    StoreOptions {
        sync_interval: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// One commit as the recording saw it: the op index of the flush that made
/// its data and space map durable, and of the flush after its uberblock
/// writes. The ops strictly between the two are its uberblock writes.
#[derive(Clone, Copy, Debug)]
struct Commit {
    txg: u64,
    data_flush: usize,
    uber_flush: usize,
}

/// What the workload reached, so the test can show it covered node splits,
/// merges and a space map condense.
#[derive(Debug, Default)]
struct Coverage {
    max_height: u8,
    max_entries: u64,
    node_count_drops: usize,
    condenses: usize,
    empty_commits: usize,
}

/// A recorded workload: the device log, the model after every commit, and
/// where each commit's flushes sit in the log.
struct History {
    seed: u64,
    rec: Arc<RecordingDevice>,
    states: BTreeMap<u64, Model>,
    commits: Vec<Commit>,
    coverage: Coverage,
}

impl History {
    /// The txg a crash image built from `ops[..prefix]` plus `extra` must
    /// open to: the newest commit whose second flush is inside the prefix,
    /// or a newer one if one of its uberblock writes is among `extra`. None
    /// when no commit got that far (the image holds no pool yet).
    fn expected_txg(&self, prefix: usize, extra: &[usize]) -> Option<u64> {
        let mut want = self
            .commits
            .iter()
            .filter(|c| c.uber_flush < prefix)
            .map(|c| c.txg)
            .max();
        for c in &self.commits {
            if extra.iter().any(|&i| i > c.data_flush && i < c.uber_flush) {
                want = want.max(Some(c.txg));
            }
        }
        want
    }

    /// Where in the history op `i` falls, for failure messages.
    fn describe_op(&self, i: usize) -> String {
        match self.commits.iter().find(|c| i <= c.uber_flush) {
            Some(c) if i > c.data_flush => format!("uberblock writes of txg {}", c.txg),
            Some(c) => format!("data and space map writes of txg {}", c.txg),
            None => "after the last commit".into(),
        }
    }
}

fn random_key(rng: &mut StdRng) -> Vec<u8> {
    // A small alphabet, so keys share prefixes and short keys recur.
    let len = rng.gen_range(1..=40);
    (0..len).map(|_| b"abcdefgh"[rng.gen_range(0..8)]).collect()
}

fn random_value(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.gen_range(0..300);
    let mut v = vec![0u8; len];
    if rng.gen_bool(0.5) {
        rng.fill(&mut v[..]);
    } else {
        // Compressible, as much metadata is.
        v.fill(rng.gen());
    }
    v
}

fn existing_key(rng: &mut StdRng, model: &Model) -> Option<Vec<u8>> {
    if model.is_empty() {
        return None;
    }
    let i = rng.gen_range(0..model.len());
    model.keys().nth(i).cloned()
}

fn contents(store: &Store) -> Result<Model, FsError> {
    store.read_tree(ROOT_DATASET, |t| {
        t.iter()
            .map(|r| r.map_err(FsError::from))
            .collect::<Result<Model, FsError>>()
    })
}

fn open_image(dev: &Arc<MemDevice>) -> Result<Arc<Store>, FsError> {
    Store::open(
        vec![dev.clone() as DeviceRef],
        &OpenOptions::default(),
        store_opts(),
    )
}

/// Apply `n` random operations to both the store and the model. `mix` is
/// the weight of (insert a new key, overwrite an existing one, remove an
/// existing one, remove a missing one).
fn random_ops(store: &Store, model: &mut Model, rng: &mut StdRng, n: usize, mix: [u32; 4]) {
    let total: u32 = mix.iter().sum();
    for _ in 0..n {
        let mut pick = rng.gen_range(0..total);
        let kind = mix
            .iter()
            .position(|&w| {
                if pick < w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .expect("weights sum to total");
        match kind {
            0 | 1 => {
                let key = match kind {
                    1 => existing_key(rng, model).unwrap_or_else(|| random_key(rng)),
                    _ => random_key(rng),
                };
                let val = random_value(rng);
                let prev = store
                    .with_tree(ROOT_DATASET, AllocClass::Normal, |t| {
                        Ok(t.insert(&key, &val)?)
                    })
                    .unwrap();
                assert_eq!(
                    prev,
                    model.insert(key, val),
                    "insert returned a wrong old value"
                );
            }
            _ => {
                let key = match kind {
                    2 => existing_key(rng, model).unwrap_or_else(|| random_key(rng)),
                    _ => random_key(rng),
                };
                let prev = store
                    .with_tree(ROOT_DATASET, AllocClass::Reserved, |t| Ok(t.remove(&key)?))
                    .unwrap();
                assert_eq!(
                    prev,
                    model.remove(&key),
                    "remove returned a wrong old value"
                );
            }
        }
    }
}

/// Commit and record where the commit's flushes landed in the log.
fn commit(store: &Store, h: &mut History, model: &Model) {
    let before = h.rec.len();
    let chain_before = store.pool().space_map_chain().len();
    let txg = store.commit().unwrap();
    let last = *h.states.keys().next_back().expect("txg 1 is recorded");
    assert_eq!(txg, last + 1, "txgs are consecutive");
    assert_eq!(store.pool().last_uberblock().unwrap().txg, txg);

    let flushes: Vec<usize> = h
        .rec
        .flush_points()
        .into_iter()
        .filter(|&i| i >= before)
        .collect();
    assert_eq!(
        flushes.len(),
        2,
        "a commit flushes twice (data, then uberblocks)"
    );
    let ops = h.rec.ops();
    assert_eq!(
        ops.len(),
        flushes[1] + 1,
        "a commit ends with its second flush"
    );
    assert!(
        ops[flushes[0] + 1..flushes[1]]
            .iter()
            .all(|op| matches!(op, RecordedOp::Write { .. })),
        "only uberblock writes between a commit's two flushes"
    );
    assert!(flushes[1] > flushes[0] + 1, "txg {txg} wrote no uberblock");
    h.commits.push(Commit {
        txg,
        data_flush: flushes[0],
        uber_flush: flushes[1],
    });
    h.states.insert(txg, model.clone());

    let cov = &mut h.coverage;
    if flushes[0] == before {
        cov.empty_commits += 1;
    }
    if store.pool().space_map_chain().len() < chain_before {
        cov.condenses += 1;
    }
}

/// Create a store on a recording device and run `rounds` rounds of random
/// operations, each followed by a commit.
fn run_workload(seed: u64, rounds: usize) -> History {
    let rec = Arc::new(RecordingDevice::new(MemDevice::new(DEVICE_SIZE)));
    let store = Store::create(
        vec![rec.clone() as DeviceRef],
        &CreateOptions::default(),
        store_opts(),
    )
    .unwrap();
    assert_eq!(store.pool().last_uberblock().unwrap().txg, 1);

    // mkfs: label writes, a flush, then txg 1 as any commit.
    let fps = rec.flush_points();
    assert_eq!(fps.len(), 3, "mkfs flushes its labels, then commits txg 1");
    assert_eq!(rec.len(), fps[2] + 1);
    let mut h = History {
        seed,
        rec,
        states: BTreeMap::from([(1, Model::new())]),
        commits: vec![Commit {
            txg: 1,
            data_flush: fps[1],
            uber_flush: fps[2],
        }],
        coverage: Coverage::default(),
    };

    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::new();
    let mut last_nodes = 0;
    for round in 0..rounds {
        let n = if round % 4 == 0 {
            rng.gen_range(150..=200)
        } else {
            rng.gen_range(20..=200)
        };
        // Grow for a while, then mostly churn, with regular shrinking rounds
        // so nodes merge and freed space is reused.
        let mix = match round % 6 {
            _ if round < 12 => [80, 10, 5, 5],
            2 | 5 => [10, 15, 70, 5],
            _ => [45, 25, 25, 5],
        };
        let ops_before = h.rec.len();
        random_ops(&store, &mut model, &mut rng, n, mix);
        assert_eq!(
            h.rec.len(),
            ops_before,
            "tree changes reached the device before the commit"
        );
        commit(&store, &mut h, &model);
        if round % 10 == 9 {
            // Nothing dirty: a commit that writes only uberblocks.
            commit(&store, &mut h, &model);
        }

        let (height, nodes, entries) = store
            .read_tree(ROOT_DATASET, |t| Ok((t.height(), t.node_count(), t.len())))
            .unwrap();
        assert_eq!(entries, model.len() as u64);
        let cov = &mut h.coverage;
        cov.max_height = cov.max_height.max(height);
        cov.max_entries = cov.max_entries.max(entries);
        if nodes < last_nodes {
            cov.node_count_drops += 1;
        }
        last_nodes = nodes;
    }

    // The live store agrees with the model and is clean.
    assert_eq!(contents(&store).unwrap(), model);
    let report = fsck(&store, false, &mut |_, _| {}).unwrap();
    assert!(report.errors.is_empty(), "live store: {:?}", report.errors);
    h
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// Open a crash image built from `ops[..prefix]` plus `extra`, and check it
/// opens to the expected txg with exactly that txg's contents and a clean
/// fsck (or, before the first commit, that it is refused as holding no
/// pool). Returns the opened store and its device, if one was expected.
fn check_crash_image(
    h: &History,
    prefix: usize,
    extra: &[usize],
) -> Option<(Arc<Store>, Arc<MemDevice>)> {
    let want = h.expected_txg(prefix, extra);
    let dev = Arc::new(h.rec.image_with(prefix, extra));
    let outcome = catch_unwind(AssertUnwindSafe(
        || -> Result<Option<Arc<Store>>, String> {
            let opened = open_image(&dev);
            let Some(want) = want else {
                return match opened {
                    Err(FsError::Pool(PoolError::NoUberblock(_) | PoolError::NotAegis { .. })) => {
                        Ok(None)
                    }
                    Err(e) => Err(format!(
                        "no commit had completed; want 'no uberblock', got: {e}"
                    )),
                    Ok(s) => Err(format!(
                        "no commit had completed, yet it opened txg {}",
                        s.pool().last_uberblock().unwrap().txg
                    )),
                };
            };
            let store = opened.map_err(|e| format!("open failed: {e} (want txg {want})"))?;
            let txg = store.pool().last_uberblock().unwrap().txg;
            if txg != want || store.open_report().txg != want {
                return Err(format!(
                    "opened txg {txg} (report {}), want txg {want}; skipped: {:?}",
                    store.open_report().txg,
                    store.open_report().skipped
                ));
            }
            let got = contents(&store).map_err(|e| format!("reading the tree: {e}"))?;
            let model = &h.states[&want];
            if &got != model {
                let missing = model.keys().filter(|k| !got.contains_key(*k)).count();
                let extra_keys = got.keys().filter(|k| !model.contains_key(*k)).count();
                let changed = model
                    .iter()
                    .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                    .count();
                return Err(format!(
                    "txg {want} contents differ from the model: {missing} keys missing, \
                     {extra_keys} unexpected, {changed} values differ"
                ));
            }
            let report =
                fsck(&store, false, &mut |_, _| {}).map_err(|e| format!("fsck failed: {e}"))?;
            if !report.errors.is_empty() {
                return Err(format!("fsck of txg {want}: {:?}", report.errors));
            }
            Ok(Some(store))
        },
    ));
    let failure = match outcome {
        Ok(Ok(store)) => return store.map(|s| (s, dev)),
        Ok(Err(why)) => why,
        Err(p) => format!("panicked: {}", panic_message(&*p)),
    };
    let gap_of = prefix
        .checked_sub(1)
        .map_or("the start of the log".to_string(), |i| {
            format!("op {i} ({})", h.describe_op(i))
        });
    panic!(
        "crash image (workload seed {:#x}) = ops[..{prefix}] + {extra:?}, \
         i.e. durable through {gap_of}, plus {} of the later writes: {failure}",
        h.seed,
        extra.len()
    );
}

/// The crash images to check: every flush point (with nothing after it),
/// and per stretch of writes after a flush, subsets of those writes in
/// random order. Each entry is (prefix, extra ops).
fn crash_states(h: &History, rng: &mut StdRng) -> Vec<(usize, Vec<usize>)> {
    let ops = h.rec.ops();
    let mut starts = vec![0];
    starts.extend(h.rec.flush_points().into_iter().map(|f| f + 1));
    let mut out = Vec::new();
    for &prefix in &starts {
        if prefix > 0 {
            out.push((prefix, Vec::new()));
        }
        let end = ops[prefix..]
            .iter()
            .position(|op| *op == RecordedOp::Flush)
            .map_or(ops.len(), |p| prefix + p);
        let writes: Vec<usize> = (prefix..end).collect();
        // Copy-on-write: the writes between two flushes go to distinct
        // places, so the order they land in does not change the image.
        let mut ranges: Vec<(u64, u64)> = writes
            .iter()
            .map(|&i| match &ops[i] {
                RecordedOp::Write { offset, data } => (*offset, offset + data.len() as u64),
                op => panic!("op {i} between flushes is {op:?}, not a write"),
            })
            .collect();
        ranges.sort_unstable();
        assert!(
            ranges.windows(2).all(|w| w[0].1 <= w[1].0),
            "overlapping writes between the flushes around op {prefix}"
        );
        let mut seen = HashSet::new();
        let mut add = |mut chosen: Vec<usize>, rng: &mut StdRng| {
            let mut key = chosen.clone();
            key.sort_unstable();
            // The empty subset is the flush point itself, and as the writes
            // do not overlap, one order per set is enough.
            if !chosen.is_empty() && seen.insert(key) {
                chosen.shuffle(rng);
                out.push((prefix, chosen));
            }
        };
        if writes.len() <= EXHAUSTIVE_MAX {
            for mask in 1u32..(1 << writes.len()) {
                let chosen = (0..writes.len())
                    .filter(|b| mask & (1 << b) != 0)
                    .map(|b| writes[b])
                    .collect();
                add(chosen, rng);
            }
        } else {
            for _ in 0..SUBSETS_PER_GAP {
                let p = rng.gen_range(0.05..0.95);
                let chosen = writes.iter().copied().filter(|_| rng.gen_bool(p)).collect();
                add(chosen, rng);
            }
        }
    }
    out
}

#[test]
fn every_crash_image_opens_to_the_last_completed_commit() {
    let start = Instant::now();
    let h = run_workload(workload_seed(), 60);
    let cov = &h.coverage;
    eprintln!(
        "workload: {} commits, {} ops logged, {:?}, took {:?}",
        h.commits.len(),
        h.rec.len(),
        cov,
        start.elapsed()
    );
    // The workload must reach the interesting shapes: a tree several levels
    // deep, rounds that shrink it (merges), a space map condense, and
    // commits with nothing to write.
    assert!(
        cov.max_height >= 3,
        "tree never grew to three levels: {cov:?}"
    );
    assert!(cov.node_count_drops >= 1, "tree never shrank: {cov:?}");
    assert!(
        cov.condenses >= 2,
        "space map condensed less than twice: {cov:?}"
    );
    assert!(cov.empty_commits >= 1, "no empty commit: {cov:?}");

    let mut rng = StdRng::seed_from_u64(SUBSET_SEED);
    let states = crash_states(&h, &mut rng);
    let (mut opened, mut refused) = (0usize, 0usize);
    let mut txgs_seen = HashSet::new();
    for (prefix, extra) in &states {
        match check_crash_image(&h, *prefix, extra) {
            Some((store, _)) => {
                opened += 1;
                txgs_seen.insert(store.pool().last_uberblock().unwrap().txg);
            }
            None => refused += 1,
        }
    }
    let checked = opened + refused;
    eprintln!(
        "crash states checked: {checked} ({opened} opened to the expected txg, \
         {refused} refused before mkfs completed; {} distinct txgs), total {:?}",
        txgs_seen.len(),
        start.elapsed()
    );
    assert_eq!(
        txgs_seen.len(),
        h.commits.len(),
        "every committed txg is the recovery point of some crash"
    );
    assert!(refused >= 1, "no crash during mkfs was checked");
    assert!(checked >= 1000, "only {checked} crash states checked");
}

#[test]
fn a_recovered_pool_accepts_new_commits_and_reopens() {
    let h = run_workload(workload_seed() ^ 0x1234_5678, 8);
    let mut rng = StdRng::seed_from_u64(SUBSET_SEED ^ 0x9abc);
    let mut states = crash_states(&h, &mut rng);
    // Every flush point plus a sample of partial-write images keeps it short.
    states.retain(|(_, extra)| extra.is_empty() || rng.gen_bool(0.15));
    let mut resumed = 0;
    for (prefix, extra) in &states {
        let Some((store, dev)) = check_crash_image(&h, *prefix, extra) else {
            continue;
        };
        let ctx = format!("crash image ops[..{prefix}] + {extra:?}");
        let recovered = store.pool().last_uberblock().unwrap().txg;
        let newest_seen = store.open_report().newest_txg;
        let mut model = h.states[&recovered].clone();

        // Keep working: changes over several commits, so frees from the
        // first of them are released and their space reused by the last.
        let mut last = 0;
        for _ in 0..DEFER_COMMITS {
            random_ops(&store, &mut model, &mut rng, 30, [40, 25, 30, 5]);
            last = store
                .commit()
                .unwrap_or_else(|e| panic!("{ctx}: commit: {e}"));
        }
        assert!(
            last > newest_seen,
            "{ctx}: new txg {last} does not follow the newest seen {newest_seen}"
        );
        drop(store);

        let store = open_image(&dev).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
        assert_eq!(store.pool().last_uberblock().unwrap().txg, last, "{ctx}");
        assert!(store.open_report().skipped.is_empty(), "{ctx}");
        assert_eq!(contents(&store).unwrap(), model, "{ctx}: after reopen");
        let report = fsck(&store, false, &mut |_, _| {}).unwrap();
        assert!(report.errors.is_empty(), "{ctx}: {:?}", report.errors);
        resumed += 1;
    }
    eprintln!("recovered pools written to and reopened: {resumed}");
    assert!(resumed >= 20, "only {resumed} recovered pools exercised");
}
