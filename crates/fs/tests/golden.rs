//! The committed golden image `tests/golden/v1.img` pins the version-1
//! format: today's code must open it, find exactly the contents it was made
//! with, check it clean, and re-encode its label, uberblock and tree nodes
//! to the very bytes on disk. A change to any decoder or encoder that would
//! alter the format fails here.
//!
//! Regenerate only for a deliberate format change (and bump the version):
//! `AEGIS_REGEN_GOLDEN=1 cargo test --release -p aegis-fs --test golden`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use aegis_block::{BlockDevice, DeviceRef, MemDevice};
use aegis_btree::Node;
use aegis_fs::dataset::{DATASET_TREE_KIND, ROOT_DATASET};
use aegis_fs::{Store, StoreOptions};
use aegis_pool::label::{LabelConfig, CONFIG_SIZE, UBER_RING_OFFSET};
use aegis_pool::uberblock::{Uberblock, UBER_SLOTS, UBER_SLOT_SIZE};
use aegis_pool::{AllocClass, CreateOptions, OpenOptions};

const SIZE: u64 = 8 << 20;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/v1.img")
}

/// The contents the image was made with: 600 keys, every 7th deleted in a
/// second commit, every 5th overwritten.
fn model() -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut m = BTreeMap::new();
    for i in 0..600u32 {
        m.insert(
            format!("key-{i:05}").into_bytes(),
            format!("value {i} ")
                .repeat(1 + i as usize % 9)
                .into_bytes(),
        );
    }
    for i in (0..600u32).step_by(7) {
        m.remove(format!("key-{i:05}").as_bytes());
    }
    for i in (0..600u32).step_by(5) {
        if let Some(v) = m.get_mut(format!("key-{i:05}").as_bytes()) {
            *v = format!("second {i}").into_bytes();
        }
    }
    m
}

fn regenerate() {
    let mem = Arc::new(MemDevice::new(SIZE));
    let opts = CreateOptions {
        label: "golden".into(),
        ..Default::default()
    };
    let store = Store::create(
        vec![mem.clone() as DeviceRef],
        &opts,
        StoreOptions::default(),
    )
    .unwrap();
    store
        .with_tree(ROOT_DATASET, AllocClass::Normal, |t| {
            for i in 0..600u32 {
                t.insert(
                    format!("key-{i:05}").as_bytes(),
                    format!("value {i} ").repeat(1 + i as usize % 9).as_bytes(),
                )?;
            }
            Ok(())
        })
        .unwrap();
    store.commit().unwrap();
    let m = model();
    store
        .with_tree(ROOT_DATASET, AllocClass::Normal, |t| {
            for i in 0..600u32 {
                let k = format!("key-{i:05}").into_bytes();
                match m.get(&k) {
                    None => {
                        t.remove(&k)?;
                    }
                    Some(v) => {
                        t.insert(&k, v)?;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    store.commit().unwrap();
    store.shutdown().unwrap();
    std::fs::write(path(), mem.to_bytes()).unwrap();
}

#[test]
fn golden_image_opens_with_its_contents_and_reencodes_byte_for_byte() {
    if std::env::var_os("AEGIS_REGEN_GOLDEN").is_some() {
        regenerate();
    }
    let bytes = std::fs::read(path()).expect("tests/golden/v1.img is committed");
    assert_eq!(bytes.len() as u64, SIZE);
    let mem = Arc::new(MemDevice::from_bytes(bytes.clone()));
    let store = Store::open(
        vec![mem.clone() as DeviceRef],
        &OpenOptions {
            read_only: true,
            rewind_txg: None,
        },
        StoreOptions::default(),
    )
    .unwrap();
    let pool = store.pool();
    let cfg = pool.config();
    assert_eq!(cfg.label, "golden");
    assert_eq!(cfg.block_size, 4096);
    assert_eq!(cfg.metadata_copies, 2);
    let ub = pool.last_uberblock().unwrap();
    assert_eq!(ub.txg, 3, "mkfs commits txg 1, the two writes txgs 2 and 3");
    assert!(store.open_report().skipped.is_empty());

    // Contents.
    let got: BTreeMap<Vec<u8>, Vec<u8>> = store
        .read_tree(ROOT_DATASET, |t| {
            t.iter().map(|r| r.map_err(Into::into)).collect()
        })
        .unwrap();
    assert_eq!(got, model());

    // Clean.
    let report = aegis_fs::fsck::fsck(&store, false, &mut |_, _| {}).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    // Encoders: label and uberblock re-encode to the bytes on disk.
    let label = LabelConfig::decode(&bytes[..CONFIG_SIZE], "golden")
        .unwrap()
        .unwrap();
    assert_eq!(label.encode(), &bytes[..CONFIG_SIZE]);
    let slot = (UBER_RING_OFFSET + (ub.txg % UBER_SLOTS) * UBER_SLOT_SIZE as u64) as usize;
    let on_disk = &bytes[slot..slot + UBER_SLOT_SIZE];
    assert_eq!(Uberblock::decode(on_disk).unwrap().unwrap(), ub);
    assert_eq!(ub.encode(), on_disk);

    // Tree nodes: every node of the dataset tree re-encodes to its block.
    let rec = store.dataset_record(ROOT_DATASET).unwrap();
    let mut stack = vec![rec.root.root.clone().unwrap()];
    let mut nodes = 0;
    while let Some(bp) = stack.pop() {
        let raw = pool.read_block(&bp).unwrap();
        let node = Node::decode(&raw, &bp, DATASET_TREE_KIND).unwrap();
        assert_eq!(
            node.encode(DATASET_TREE_KIND, bp.birth_txg),
            raw,
            "node {}",
            bp.describe()
        );
        // The stored block pointer encoding round-trips too.
        assert_eq!(
            aegis_pool::BlockPtr::decode_slice(&bp.encode()).unwrap(),
            bp
        );
        stack.extend((0..node.len()).filter_map(|i| node.child_ptr(i).cloned()));
        nodes += 1;
    }
    assert_eq!(nodes, rec.root.nodes);
    assert!(mem.size() == SIZE);
}
