//! The seed corpus, made from real encodings of each structure (the image
//! target's base filesystem supplies labels, uberblocks, nodes and space
//! map blocks), so mutations start from valid bytes.

use std::sync::Arc;

use aegis_block::{DeviceRef, MemDevice};
use aegis_fs::dataset::DatasetRecord;
use aegis_fs::posix::{keys, DatasetMeta, DirentValue, FileRecord, InodeRecord};
use aegis_fs::Store;
use aegis_pool::label::UBER_RING_OFFSET;
use aegis_pool::uberblock::{UBER_MAGIC, UBER_SLOTS, UBER_SLOT_SIZE};
use aegis_pool::{OpenOptions, TreeRoot};

/// Every fuzz target's seeds, by target name.
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut v = pool_seeds();
    v.extend(log_seeds());
    v.push(("acl", acl_seeds()));
    v.push(("image", image_seeds()));
    v.push(("send_stream", vec![crate::stream::base_stream()]));
    v
}

/// Encodings read off the base image: labels, uberblocks, pointers, roots,
/// nodes, space map blocks, dataset records and POSIX items.
fn pool_seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let img = crate::image::base_bytes();
    let label = img[..4096].to_vec();
    let mut ubers = Vec::new();
    for s in 0..UBER_SLOTS as usize {
        let at = UBER_RING_OFFSET as usize + s * UBER_SLOT_SIZE;
        if img[at..at + 8] == UBER_MAGIC {
            ubers.push(img[at..at + UBER_SLOT_SIZE].to_vec());
        }
    }
    let dev = Arc::new(MemDevice::from_bytes(img.to_vec()));
    let store = Store::open(
        vec![dev as DeviceRef],
        &OpenOptions {
            read_only: true,
            rewind_txg: None,
        },
        Default::default(),
    )
    .expect("base image opens");
    let pool = store.pool().clone();
    let ub = pool.last_uberblock().expect("uberblock");
    let mut bps = Vec::new();
    let mut nodes = Vec::new();
    let mut roots = vec![ub.pool_root.encode()];
    if let Some(bp) = &ub.pool_root.root {
        bps.push(bp.encode());
        nodes.push(pool.read_block(bp).expect("pool root node"));
    }
    let rec = store
        .dataset_record(aegis_fs::dataset::ROOT_DATASET)
        .expect("root dataset");
    roots.push(rec.root.encode());
    roots.push(TreeRoot::default().encode());
    if let Some(bp) = &rec.root.root {
        bps.push(bp.encode());
        nodes.push(pool.read_block(bp).expect("dataset root node"));
    }
    let space: Vec<Vec<u8>> = pool
        .space_map_chain()
        .iter()
        .take(4)
        .map(|bp| pool.read_block(bp).expect("space map block"))
        .collect();
    let (inodes, dirents, records, keys_seen) = posix_seeds(&store);
    let snapshots = snapshot_seeds(&rec, &bps);
    let dataset = vec![
        rec.encode(),
        DatasetRecord {
            name: "x".into(),
            ..rec.clone()
        }
        .encode(),
    ];
    vec![
        ("label", vec![label]),
        ("uberblock", ubers),
        ("blkptr", bps),
        ("tree_root", roots),
        ("space_map", space),
        ("tree_node", nodes),
        ("dataset_record", dataset),
        ("snapshot_record", snapshots),
        ("inode", inodes),
        ("dirent", dirents),
        ("file_record", records),
        ("posix_keys", keys_seen),
    ]
}

/// A snapshot record of the base image's root, one being deleted, and a
/// dead list entry (key and value) of each pointer.
fn snapshot_seeds(rec: &DatasetRecord, bps: &[Vec<u8>]) -> Vec<Vec<u8>> {
    use aegis_fs::snapshot::SnapshotRecord;
    let snap = SnapshotRecord {
        name: "daily".into(),
        dataset: aegis_fs::dataset::ROOT_DATASET,
        txg: rec.created_txg + 1,
        created_ns: rec.created_ns,
        deadlist: 18,
        clones: 1,
        deleting: false,
        root: rec.root.clone(),
        received_guid: None,
    };
    let deleting = SnapshotRecord {
        deleting: true,
        ..snap.clone()
    };
    let received = SnapshotRecord {
        received_guid: Some(0x5eed),
        ..snap.clone()
    };
    let mut v = vec![snap.encode(), deleting.encode(), received.encode()];
    for b in bps {
        if let Ok(bp) = aegis_pool::BlockPtr::decode_slice(b) {
            let mut entry = aegis_fs::dead_list::dead_key(19, &bp);
            entry.extend_from_slice(b);
            v.push(entry);
        }
    }
    v
}

/// Leaf values of the root dataset's tree by item type, and its first
/// keys, with one made-up value of each kind beside them.
#[allow(clippy::type_complexity)]
fn posix_seeds(store: &Store) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut inodes = Vec::new();
    let mut dirents = Vec::new();
    let mut records = Vec::new();
    let mut keys_seen = Vec::new();
    store
        .read_tree(aegis_fs::dataset::ROOT_DATASET, |t| {
            for item in t.iter() {
                let (k, v) = item?;
                match k.get(8) {
                    Some(&keys::INODE) if inodes.len() < 8 => inodes.push(v),
                    Some(&keys::DIRENT) if dirents.len() < 8 => dirents.push(v),
                    Some(&keys::DATA) if records.len() < 8 => records.push(v),
                    _ => {}
                }
                if keys_seen.len() < 32 {
                    keys_seen.push(k);
                }
            }
            Ok(())
        })
        .expect("walk the base tree");
    records.push(
        DatasetMeta {
            compression: aegis_pool::Compression::Lz4,
            record_size: 128 << 10,
            next_ino: 9,
            inodes: 3,
            features: 0,
            reserved: 0,
        }
        .encode(),
    );
    records.push(
        DatasetMeta {
            compression: aegis_pool::Compression::None,
            record_size: 4096,
            next_ino: 9,
            inodes: 3,
            features: aegis_fs::posix::FEATURE_PREALLOC,
            reserved: 8192,
        }
        .encode(),
    );
    records.push(
        DatasetMeta {
            compression: aegis_pool::Compression::None,
            record_size: 4096,
            next_ino: 9,
            inodes: 3,
            features: aegis_fs::posix::FEATURE_RECORDSIZE,
            reserved: 0,
        }
        .encode(),
    );
    records.push(FileRecord::Inline(b"hello".to_vec()).encode());
    records.push(
        FileRecord::Prealloc {
            len: 4096,
            data: None,
        }
        .encode(),
    );
    inodes.push(InodeRecord::default().encode());
    inodes.push(
        InodeRecord {
            mode: aegis_fs::posix::inode::S_IFREG | 0o644,
            record_shift: 14,
            ..Default::default()
        }
        .encode(),
    );
    dirents.push(
        DirentValue {
            ino: 2,
            file_type: 0o100000,
            name: b"x".to_vec(),
        }
        .encode(),
    );
    (inodes, dirents, records, keys_seen)
}

/// Raw byte strings for the image target's mutation script.
fn image_seeds() -> Vec<Vec<u8>> {
    vec![
        Vec::new(),
        vec![0, 0, 0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff],
        vec![1, 3, 0, 16, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
        vec![1, 0, 0, 0, 0, 2, 0, 0, 2, 7, 0, 9, 0, 1, 0x80],
    ]
}

/// The intent log's ring record, head, a block and every record type.
fn log_seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let ring = aegis_fs::intent_log::LogRing {
        extent: aegis_pool::Extent {
            device: 0,
            offset: 1 << 20,
            len: 4 << 20,
        },
    };
    let log_records = aegis_fs::intent_log::samples()
        .iter()
        .map(|r| r.encode())
        .collect::<Vec<_>>();
    let log_blocks = vec![
        aegis_fs::intent_log::LogBlock {
            chain: 9,
            seq: 0,
            pos: 8 << 20,
            records: log_records.clone(),
        }
        .encode(4096),
        aegis_fs::intent_log::LogHead {
            chain: 9,
            pos: 8 << 20,
        }
        .encode(),
        ring.encode(),
    ];
    vec![("log_block", log_blocks), ("log_record", log_records)]
}

/// ACL xattr values: mode bits alone, named entries with a mask, a header
/// alone.
fn acl_seeds() -> Vec<Vec<u8>> {
    use aegis_vfs::acl::{Acl, AclEntry, Tag};
    let e = |tag, perm| AclEntry { tag, perm };
    let named = Acl::from_entries(vec![
        e(Tag::UserObj, 6),
        e(Tag::User(1000), 7),
        e(Tag::GroupObj, 4),
        e(Tag::Group(50), 5),
        e(Tag::Mask, 7),
        e(Tag::Other, 0),
    ])
    .expect("a valid ACL");
    vec![
        Acl::from_mode(0o754).encode(),
        named.encode(),
        2u32.to_le_bytes().to_vec(),
    ]
}
