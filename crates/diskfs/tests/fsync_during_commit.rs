//! An fsync while a commit's second stage is still writing (DESIGN.md,
//! invariant 3): the commit has closed its txg and started the intent log
//! chain whose head that txg records, so a log block written now counts
//! only once the txg is durable. The device holds the commit's writes at
//! a gate (log writes, which are durable writes, pass); when the fsync
//! returns, a copy of the device taken at that moment (what a crash then
//! leaves) must mount with the fsynced bytes.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use aegis_block::{BlockDevice, DeviceRef, MemDevice, Result as BlockResult};
use aegis_diskfs::{FormatOptions, MountOptions};
use aegis_vfs::*;
use parking_lot::{Condvar, Mutex};

/// How long the gate stays shut after the fsync started: a wrong fsync
/// returns well within it.
const HOLD: Duration = Duration::from_millis(300);

struct GateDevice {
    inner: MemDevice,
    shut: Mutex<(bool, usize)>,
    cv: Condvar,
}

impl GateDevice {
    fn set(&self, shut: bool) {
        self.shut.lock().0 = shut;
        self.cv.notify_all();
    }
    fn wait_for_held_write(&self) {
        let mut g = self.shut.lock();
        while g.1 == 0 {
            assert!(!self
                .cv
                .wait_for(&mut g, Duration::from_secs(30))
                .timed_out());
        }
    }
}

impl BlockDevice for GateDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> BlockResult<()> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> BlockResult<()> {
        let mut g = self.shut.lock();
        if g.0 {
            g.1 += 1;
            self.cv.notify_all();
            while g.0 {
                self.cv.wait(&mut g);
            }
            g.1 -= 1;
        }
        drop(g);
        self.inner.write_at(buf, offset)
    }
    /// The intent log's writes: never held.
    fn write_durable(&self, buf: &[u8], offset: u64) -> BlockResult<()> {
        self.inner.write_durable(buf, offset)
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

fn manual() -> MountOptions {
    MountOptions {
        sync_thread: false,
        ..Default::default()
    }
}

#[test]
fn an_fsync_beside_a_commit_in_flight_is_durable_when_it_returns() {
    let dev = Arc::new(GateDevice {
        inner: MemDevice::new(64 << 20),
        shut: Mutex::new((false, 0)),
        cv: Condvar::new(),
    });
    let devs = vec![dev.clone() as DeviceRef];
    let fs = aegis_diskfs::create(
        devs,
        &Default::default(),
        &FormatOptions::default(),
        &manual(),
    )
    .unwrap();
    let req = Request::root();
    let (a, fh) = fs
        .create(&req, ROOT_INO, OsStr::new("f"), 0o644, libc::O_RDWR)
        .unwrap();
    fs.write(a.ino, fh, 0, b"first").unwrap();
    // Arms the log: the next commit starts a chain.
    fs.fsync(a.ino, fh, false).unwrap();
    fs.write(a.ino, fh, 0, b"dirty").unwrap();

    dev.set(true);
    let committer = {
        let store = fs.store().clone();
        std::thread::spawn(move || store.commit())
    };
    dev.wait_for_held_write();
    let fsyncer = {
        let (fs, dev) = (fs.clone(), dev.clone());
        std::thread::spawn(move || {
            fs.write(a.ino, fh, 0, b"fsynced").unwrap();
            fs.fsync(a.ino, fh, false).unwrap();
            // What a crash right after the fsync returned leaves.
            dev.inner.snapshot()
        })
    };
    std::thread::sleep(HOLD);
    dev.set(false);
    let image = fsyncer.join().unwrap();
    committer.join().unwrap().unwrap();

    let fs2 = aegis_diskfs::open(vec![Arc::new(image) as DeviceRef], &manual()).unwrap();
    let f = fs2.lookup(ROOT_INO, OsStr::new("f")).unwrap();
    let rfh = fs2.open(f.ino, libc::O_RDONLY).unwrap();
    assert_eq!(
        fs2.read(f.ino, rfh, 0, 100).unwrap(),
        b"fsynced",
        "an acknowledged fsync was lost"
    );
    fs2.release(f.ino, rfh).unwrap();
    fs2.unmount().unwrap();
    fs.release(a.ino, fh).unwrap();
    fs.unmount().unwrap();
    aegis_testkit::Kit::default().fsck_clean(Arc::new(dev.inner.snapshot()));
}
