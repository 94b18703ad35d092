//! Random damage anywhere in a real image — labels, uberblocks, tree nodes,
//! space map blocks — must never make the code panic: open either fails
//! with an error or succeeds, and then every read and fsck return results
//! or errors. (Invariant 4 of the design guide; a stable-toolchain stand-in
//! for a fuzzer over the golden image.)

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;

use aegis_block::{BlockDevice, DeviceRef, MemDevice};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::{Store, StoreOptions};
use aegis_pool::OpenOptions;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn golden() -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/v1.img"))
        .expect("golden image")
}

/// Offsets worth hitting: label configs, the used uberblock slots (txgs
/// 1-3 of every label), and the live blocks (from the space map).
fn target(rng: &mut StdRng, len: u64, live: &[(u64, u64)]) -> u64 {
    let labels = [0, 256 << 10, len - (512 << 10), len - (256 << 10)];
    let label = labels[rng.gen_range(0..4)];
    match rng.gen_range(0..4) {
        0 => label + rng.gen_range(0..4096),
        1 => label + (128 << 10) + rng.gen_range(4096..4 * 4096),
        _ => {
            let (off, l) = live[rng.gen_range(0..live.len())];
            off + rng.gen_range(0..l)
        }
    }
}

fn exercise(dev: DeviceRef, read_only: bool) -> String {
    let store = match Store::open(
        vec![dev],
        &OpenOptions {
            read_only,
            rewind_txg: None,
        },
        StoreOptions::default(),
    ) {
        Ok(s) => s,
        Err(e) => return format!("open refused: {e}"),
    };
    let read: Result<BTreeMap<Vec<u8>, Vec<u8>>, _> = store.read_tree(ROOT_DATASET, |t| {
        t.iter().map(|r| r.map_err(Into::into)).collect()
    });
    let fsck = aegis_fs::fsck::fsck(&store, !read_only, &mut |_, _| {});
    match (read, fsck) {
        (Ok(m), Ok(r)) => format!(
            "opened txg {}, {} keys, fsck exit {}",
            store.pool().last_uberblock().map(|u| u.txg).unwrap_or(0),
            m.len(),
            r.exit_code()
        ),
        (Err(e), _) => format!("read error: {e}"),
        (_, Err(e)) => format!("fsck error: {e}"),
    }
}

#[test]
fn random_damage_never_panics() {
    let base = golden();
    let len = base.len() as u64;
    let mut rng = StdRng::seed_from_u64(0xae615);
    let live: Vec<(u64, u64)> = {
        let dev: DeviceRef = Arc::new(MemDevice::from_bytes(base.clone()));
        let store = Store::open(
            vec![dev],
            &OpenOptions {
                read_only: true,
                rewind_txg: None,
            },
            StoreOptions::default(),
        )
        .unwrap();
        store
            .pool()
            .allocated_extents()
            .iter()
            .map(|e| (e.offset, e.len))
            .collect()
    };
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for case in 0..300 {
        let dev = MemDevice::from_bytes(base.clone());
        let hits = rng.gen_range(1..=24);
        for _ in 0..hits {
            let off = target(&mut rng, len, &live);
            let mut b = [0u8; 1];
            dev.read_at(&mut b, off).unwrap();
            b[0] = if rng.gen_bool(0.5) {
                b[0] ^ (1 << rng.gen_range(0..8))
            } else {
                rng.gen()
            };
            dev.write_at(&b, off).unwrap();
        }
        let read_only = case % 2 == 0;
        let dev: DeviceRef = Arc::new(dev);
        let outcome = catch_unwind(AssertUnwindSafe(|| exercise(dev, read_only)));
        match outcome {
            Ok(what) => {
                // "opened txg 3, 514 keys, fsck exit 1" → "opened txg 3 … fsck exit 1"
                let kind = match what.split_once(':') {
                    Some((k, _)) => k.to_string(),
                    None => what
                        .split(", ")
                        .filter(|p| !p.ends_with("keys"))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                *outcomes.entry(kind).or_default() += 1;
            }
            Err(_) => panic!("case {case} ({hits} damaged bytes, read_only {read_only}) panicked"),
        }
    }
    eprintln!("outcomes: {outcomes:?}");
    assert_eq!(outcomes.values().sum::<usize>(), 300);
    // The damage must reach every kind of outcome, or the test proves little.
    assert!(
        outcomes.keys().any(|k| k.starts_with("open refused")),
        "{outcomes:?}"
    );
    assert!(
        outcomes.keys().any(|k| k.ends_with("fsck exit 1")),
        "{outcomes:?}"
    );
    assert!(
        outcomes.keys().any(|k| k.ends_with("fsck exit 4")),
        "{outcomes:?}"
    );
}
