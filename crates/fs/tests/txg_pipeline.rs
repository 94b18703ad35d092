//! The commit's second stage runs beside the next txg: while a commit's
//! device writes are held up, readers and writers of the store go on
//! (they would wait forever if the commit still held the trees lock), the
//! changes they make belong to the next txg, and a reboot at that moment
//! sees the txg before the commit; once the writes are let go, the commit
//! is durable with exactly its own changes.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use aegis_block::{BlockDevice, DeviceRef, MemDevice, Result as BlockResult};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::fsck::fsck;
use aegis_fs::{FsError, Store, StoreOptions};
use aegis_pool::{AllocClass, CreateOptions, OpenOptions};
use parking_lot::{Condvar, Mutex};

const DS: u64 = ROOT_DATASET;
/// Long enough for any machine; a change that waited for the held commit
/// would wait forever, so this only bounds a failing run.
const PATIENCE: Duration = Duration::from_secs(30);

/// A device whose writes stop at a gate the test opens and shuts.
struct GateDevice {
    inner: MemDevice,
    gate: Mutex<Gate>,
    cv: Condvar,
}

#[derive(Default)]
struct Gate {
    shut: bool,
    /// Writes waiting at the shut gate.
    waiting: usize,
}

impl GateDevice {
    fn set_shut(&self, shut: bool) {
        self.gate.lock().shut = shut;
        self.cv.notify_all();
    }

    /// Wait until a write is held at the gate.
    fn wait_for_held_write(&self) {
        let mut g = self.gate.lock();
        while g.waiting == 0 {
            assert!(
                !self.cv.wait_for(&mut g, PATIENCE).timed_out(),
                "the commit never wrote"
            );
        }
    }
}

impl BlockDevice for GateDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> BlockResult<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> BlockResult<()> {
        let mut g = self.gate.lock();
        if g.shut {
            g.waiting += 1;
            self.cv.notify_all();
            while g.shut {
                self.cv.wait(&mut g);
            }
            g.waiting -= 1;
        }
        drop(g);
        self.inner.write_at(buf, offset)
    }
    fn flush(&self) -> BlockResult<()> {
        self.inner.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> BlockResult<()> {
        self.inner.discard(offset, len)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn name(&self) -> String {
        "gate".into()
    }
}

fn insert(store: &Store, k: &[u8], v: &[u8]) -> Result<Option<Vec<u8>>, FsError> {
    store.with_tree(DS, AllocClass::Normal, |t| Ok(t.insert(k, v)?))
}

fn contents(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .read_tree(DS, |t| {
            t.iter()
                .map(|r| r.map_err(FsError::from))
                .collect::<Result<_, FsError>>()
        })
        .unwrap()
}

fn open_copy(dev: &MemDevice) -> Arc<Store> {
    let devs = vec![Arc::new(dev.snapshot()) as DeviceRef];
    let manual = StoreOptions {
        sync_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    Store::open(devs, &OpenOptions::default(), manual).unwrap()
}

#[test]
fn changes_and_reads_go_on_while_a_commit_writes() {
    let dev = Arc::new(GateDevice {
        inner: MemDevice::new(64 << 20),
        gate: Mutex::new(Gate::default()),
        cv: Condvar::new(),
    });
    let opts = StoreOptions {
        sync_interval: Duration::from_secs(3600),
        ..Default::default()
    };
    let store = Store::create(
        vec![dev.clone() as DeviceRef],
        &CreateOptions::default(),
        opts,
    )
    .unwrap();
    insert(&store, b"old", b"committed before").unwrap();
    store.commit().unwrap();
    insert(&store, b"a", &[7u8; 900]).unwrap();
    let before = store.pool().durable_txg();

    dev.set_shut(true);
    let committer = {
        let store = store.clone();
        std::thread::spawn(move || store.commit())
    };
    dev.wait_for_held_write();
    // The commit is in its second stage, held at the device.
    let (tx, rx) = mpsc::channel();
    let worker = {
        let store = store.clone();
        std::thread::spawn(move || {
            let read = store.read_tree(DS, |t| Ok(t.get(b"a")?)).unwrap();
            insert(&store, b"b", b"next txg").unwrap();
            tx.send(read).unwrap();
        })
    };
    let read = rx
        .recv_timeout(PATIENCE)
        .expect("a read and a change waited for the commit's device writes");
    assert_eq!(read.as_deref(), Some(&[7u8; 900][..]));
    worker.join().unwrap();
    assert_eq!(store.pool().durable_txg(), before, "not durable while held");
    let reboot = open_copy(&dev.inner);
    assert_eq!(
        contents(&reboot).get(&b"a"[..]),
        None,
        "a reboot now sees the txg before"
    );

    dev.set_shut(false);
    let txg = committer.join().unwrap().unwrap();
    assert_eq!(store.pool().durable_txg(), txg);
    let reboot = open_copy(&dev.inner);
    let got = contents(&reboot);
    assert_eq!(got.get(&b"a"[..]).map(Vec::len), Some(900));
    assert_eq!(
        got.get(&b"b"[..]),
        None,
        "the next txg's change is not in this one"
    );
    store.commit().unwrap();
    let got = contents(&open_copy(&dev.inner));
    assert_eq!(got.get(&b"b"[..]).map(|v| &v[..]), Some(&b"next txg"[..]));
    let r = fsck(&store, false, &mut |_, _| {}).unwrap();
    assert!(r.errors.is_empty(), "fsck: {:?}", r.errors);
}
