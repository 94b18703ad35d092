//! The send stream target: a stream (the base image's snapshot, sent
//! whole or since an empty start), mutated and then re-sealed so every
//! record passes its checksum and reaches the decoders, then decoded and
//! received into a fresh pool, which fsck then walks. Decoding, the
//! receive's checks and fsck may refuse anything; none may panic, and a
//! receive that succeeds must leave a pool fsck finds clean.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aegis_block::{DeviceRef, MemDevice};
use aegis_diskfs::{FormatOptions, MountOptions};
use aegis_fs::receive::ReceiveOptions;
use aegis_fs::send_stream::{reseal, StreamReader};
use aegis_fs::{CreateOptions, OpenOptions, Store, StoreOptions};

const SIZE: u64 = 16 << 20;
/// Most records one input may decode (a stream is bounded by its bytes;
/// this bounds the work per input too).
const MAX_RECORDS: usize = 100_000;

fn opts() -> StoreOptions {
    StoreOptions {
        sync_interval: Duration::from_secs(3600),
        cache_nodes: 256,
        ..Default::default()
    }
}

/// An empty pool to receive into.
fn empty_pool() -> &'static [u8] {
    static EMPTY: OnceLock<Vec<u8>> = OnceLock::new();
    EMPTY.get_or_init(|| {
        let dev = Arc::new(MemDevice::new(SIZE));
        let fs = aegis_diskfs::create(
            vec![dev.clone() as DeviceRef],
            &CreateOptions::default(),
            &FormatOptions::default(),
            &MountOptions {
                store: opts(),
                ..Default::default()
            },
        )
        .expect("create");
        fs.unmount().expect("unmount");
        dev.to_bytes()
    })
}

/// The base image's snapshot as a full stream: the seed.
pub fn base_stream() -> Vec<u8> {
    let dev = Arc::new(MemDevice::from_bytes(crate::image::base_bytes().to_vec()));
    let store = Store::open(vec![dev as DeviceRef], &OpenOptions::default(), opts())
        .expect("base image opens");
    let mut out = Vec::new();
    store
        .send(
            aegis_fs::dataset::ROOT_DATASET,
            "base",
            None,
            None,
            &mut out,
            &mut |_| {},
        )
        .expect("the base snapshot sends");
    store.shutdown().expect("close");
    out
}

pub fn send_stream(data: &[u8]) {
    let mut b = data.to_vec();
    reseal(&mut b);
    let mut rd = StreamReader::new(&b[..]);
    for _ in 0..MAX_RECORDS {
        match rd.next_record() {
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let dev = Arc::new(MemDevice::from_bytes(empty_pool().to_vec()));
    let Ok(store) = Store::open(
        vec![dev.clone() as DeviceRef],
        &OpenOptions::default(),
        opts(),
    ) else {
        panic!("the empty pool opens");
    };
    let received = store.receive("fuzzed", &b[..], ReceiveOptions::default(), &mut |_| {});
    let report = aegis_fs::fsck::fsck(&store, false, &mut |_, _| {});
    if received.is_ok() {
        let r = report.expect("fsck runs after a receive");
        assert_eq!(
            r.uncorrected(),
            0,
            "an accepted stream left damage: {:?}",
            r.errors
        );
    }
    let _ = store.shutdown();
}
