//! The shared test kit: one way to make a pool in memory, mount its
//! filesystem and check it with fsck, for every test suite of the
//! workspace. A dev-dependency only.
//!
//! `fuse_mount` holds the teardown of real FUSE mounts.
//!
//! Fixtures here go through the front door (`aegis_diskfs::create` and
//! `open`), as users do. Pools made here commit only when the test makes
//! them (no timer), so every txg is one the test caused.

pub mod fuse_mount;

use std::sync::Arc;
use std::time::Duration;

use aegis_block::{DeviceRef, MemDevice};
use aegis_diskfs::{AtimeMode, DiskFs, DiskFsOptions, FormatOptions, MountOptions};
use aegis_fs::{CreateOptions, OpenOptions, Store, StoreOptions};

/// Store options for tests: no timer commits; `cache_nodes` decoded nodes
/// (a small cache makes tree reads reach the device, for fault tests).
pub fn store_opts(cache_nodes: usize) -> StoreOptions {
    StoreOptions {
        sync_interval: Duration::from_secs(3600),
        cache_nodes,
        ..Default::default()
    }
}

/// How a test pool is made and mounted.
#[derive(Clone, Debug)]
pub struct Kit {
    pub size_bytes: u64,
    pub format: FormatOptions,
    pub store: StoreOptions,
    pub atime: AtimeMode,
}

impl Default for Kit {
    fn default() -> Self {
        Kit {
            size_bytes: 64 << 20,
            format: FormatOptions::default(),
            store: store_opts(StoreOptions::default().cache_nodes),
            atime: AtimeMode::default(),
        }
    }
}

impl Kit {
    pub fn size(mut self, size_bytes: u64) -> Kit {
        self.size_bytes = size_bytes;
        self
    }
    pub fn record_size(mut self, record_size: u32) -> Kit {
        self.format.record_size = record_size;
        self
    }
    pub fn cache_nodes(mut self, n: usize) -> Kit {
        self.store.cache_nodes = n;
        self
    }
    /// Bytes of decoded file data cached; 0 makes every data read reach
    /// the device (fault tests), since written blocks are cached too.
    pub fn data_cache_bytes(mut self, n: u64) -> Kit {
        self.store.data_cache_bytes = n;
        self
    }
    pub fn atime(mut self, atime: AtimeMode) -> Kit {
        self.atime = atime;
        self
    }

    pub fn mount_opts(&self) -> MountOptions {
        MountOptions {
            pool: OpenOptions::default(),
            store: self.store.clone(),
            fs: DiskFsOptions {
                atime: self.atime,
                ..Default::default()
            },
            sync_thread: false,
            dataset_name: None,
            snapshot_name: None,
            at: None,
        }
    }

    /// A new formatted pool in memory, cleanly closed.
    pub fn fresh(&self) -> Arc<MemDevice> {
        let dev = Arc::new(MemDevice::new(self.size_bytes));
        let fs = aegis_diskfs::create(
            vec![dev.clone() as DeviceRef],
            &CreateOptions::default(),
            &self.format,
            &self.mount_opts(),
        )
        .expect("create a test pool");
        fs.unmount().expect("close a new test pool");
        dev
    }

    /// Mount the filesystem on `dev`.
    pub fn mount(&self, dev: DeviceRef) -> aegis_vfs::Result<Arc<DiskFs>> {
        Ok(aegis_diskfs::open(vec![dev], &self.mount_opts())?)
    }

    /// Open the pool on `dev` without mounting it (fsck, inspection).
    pub fn open_store(&self, dev: DeviceRef) -> Arc<Store> {
        Store::open(vec![dev], &OpenOptions::default(), self.store.clone())
            .expect("open a test pool")
    }

    /// Fail the test unless fsck finds `dev` clean: the last step of every
    /// integration test.
    pub fn fsck_clean(&self, dev: DeviceRef) {
        let store = self.open_store(dev);
        let r = aegis_fs::fsck::fsck(&store, false, &mut |_, _| {}).expect("fsck runs");
        assert_eq!(r.uncorrected(), 0, "fsck: {:?}", r.errors);
        store.shutdown().expect("close after fsck");
    }
}

impl Kit {
    /// Bytes allocated in the pool on `dev` (opened and closed again).
    pub fn used_bytes(&self, dev: DeviceRef) -> u64 {
        let store = self.open_store(dev);
        let s = store.space();
        store.shutdown().expect("close after a space reading");
        s.total - s.free
    }
}

/// The crash states of a recorded run, each with the count of writes it
/// holds: every `step`-th prefix of the recorded writes, and for each
/// flush point, the writes up to it plus every other one of those the
/// next flush would have made durable (a power cut may keep any of them).
pub fn crash_images(rec: &aegis_block::RecordingDevice, step: usize) -> Vec<(usize, MemDevice)> {
    let end = rec.len();
    let mut images: Vec<(usize, MemDevice)> = (0..=end)
        .step_by(step.max(1))
        .map(|n| (n, rec.image_at(n)))
        .collect();
    let flushes = rec.flush_points();
    for &f in &flushes {
        let next = flushes.iter().copied().find(|&g| g > f).unwrap_or(end);
        let extra: Vec<usize> = (f + 1..next).step_by(2).collect();
        images.push((f + 1, rec.image_with(f + 1, &extra)));
    }
    images
}

impl Kit {
    /// Check every crash state of a recorded run (see [`crash_images`]):
    /// `read` of the pool opened from it must give the state of the newest
    /// change finished by then, or of one after it (`states`: the count of
    /// writes when each change returned, and what `read` gave then), and
    /// fsck must find it clean.
    pub fn check_crash_states<T: PartialEq + std::fmt::Debug>(
        &self,
        rec: &aegis_block::RecordingDevice,
        step: usize,
        states: &[(usize, T)],
        read: impl Fn(&Arc<Store>) -> T,
    ) {
        let end = rec.len();
        for (n, img) in crash_images(rec, step) {
            let img = Arc::new(img);
            let store = self.open_store(img.clone() as DeviceRef);
            let got = read(&store);
            store.shutdown().expect("close a crash image");
            let done = states.iter().rposition(|(at, _)| *at <= n).unwrap_or(0);
            assert!(
                states[done..].iter().any(|(_, want)| *want == got),
                "crash at write {n} of {end}: {got:?}, want one of {:?}",
                &states[done..]
            );
            self.fsck_clean(img);
        }
    }
}

impl Kit {
    /// Mount dataset `name` of the pool on `dev` (`None`: the root one).
    pub fn mount_dataset(&self, dev: &Arc<MemDevice>, name: Option<&str>) -> Arc<DiskFs> {
        let opts = MountOptions {
            dataset_name: name.map(str::to_string),
            ..self.mount_opts()
        };
        aegis_diskfs::open(vec![dev.clone() as DeviceRef], &opts).expect("mount a dataset")
    }
}

/// Write `data` as the new file `name` in the root directory, closed.
pub fn put_file(fs: &DiskFs, name: &str, data: &[u8]) -> aegis_vfs::Ino {
    use aegis_vfs::FileSystem;
    let (ino, fh) = create_file(fs, name);
    fs.write(ino, fh, 0, data).expect("write a test file");
    fs.release(ino, fh).expect("close a test file");
    ino
}

/// The contents of file `name` of the root directory, if it exists.
pub fn read_file(fs: &DiskFs, name: &str) -> Option<Vec<u8>> {
    use aegis_vfs::FileSystem;
    let a = fs
        .lookup(aegis_vfs::ROOT_INO, std::ffi::OsStr::new(name))
        .ok()?;
    let fh = fs.open(a.ino, libc::O_RDONLY).expect("open a test file");
    let data = fs
        .read(a.ino, fh, 0, a.size as u32 + 1)
        .expect("read a test file");
    fs.release(a.ino, fh).expect("close a test file");
    Some(data)
}

/// Create and open (read-write) the regular file `name` in the root
/// directory of `fs`, as root, mode 0644.
pub fn create_file(fs: &DiskFs, name: &str) -> (aegis_vfs::Ino, aegis_vfs::Fh) {
    use aegis_vfs::FileSystem;
    let (a, fh) = fs
        .create(
            &aegis_vfs::Request::root(),
            aegis_vfs::ROOT_INO,
            std::ffi::OsStr::new(name),
            0o644,
            libc::O_RDWR,
        )
        .expect("create a test file");
    (a.ino, fh)
}

/// `len` bytes of xorshift noise from `seed`: data that does not compress,
/// the same for the same arguments.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A fresh image file of `size_bytes` at `img` (replacing one there),
/// formatted with the defaults and mounted as users mount it (timer
/// commits on): the fixture of the benchmarks, which measure real files.
pub fn image_fs(img: &std::path::Path, size_bytes: u64) -> Arc<DiskFs> {
    let _ = std::fs::remove_file(img);
    let dev = aegis_block::FileDevice::create(img, size_bytes).expect("image");
    aegis_diskfs::create(
        vec![Arc::new(dev) as DeviceRef],
        &Default::default(),
        &FormatOptions::default(),
        &MountOptions::default(),
    )
    .expect("mkfs")
}
