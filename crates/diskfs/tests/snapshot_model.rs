//! Model test of snapshots: seeded random file operations (writes at any
//! offset, truncates, hole punches, renames, unlinks, copy_file_range,
//! which shares whole records as reflinks) on a mounted
//! dataset, with snapshots taken and deleted at random points while it is
//! mounted, and remounts. The model is a map of file names to contents,
//! copied whenever a snapshot is taken; at random points and at the end
//! the dataset is unmounted, fsck must find the image clean, and every
//! snapshot mounted read-only must equal its copy, whatever happened
//! after it was taken. Deletes run in batches of a few entries, so each
//! crosses many commits.
//!
//! Even seeds keep quota usage, which each fsck recomputes.
//!
//! `AEGIS_SNAP_SEEDS` and `AEGIS_SNAP_OPS` scale it up (defaults 4 × 300).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::{DeviceRef, MemDevice};
use aegis_diskfs::{DiskFs, MountOptions};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_testkit::Kit;
use aegis_vfs::{FileSystem, ROOT_INO};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

type Files = BTreeMap<String, Vec<u8>>;

const NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
const MAX_FILE: u64 = 300_000;
/// The record size of the test's datasets.
const RS: u64 = 16 << 10;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct World {
    kit: Kit,
    dev: Arc<MemDevice>,
    fs: Option<Arc<DiskFs>>,
    live: Files,
    snaps: BTreeMap<String, Files>,
    next_snap: u32,
}

impl World {
    fn fs(&self) -> &DiskFs {
        self.fs.as_ref().expect("mounted")
    }

    fn mount(&mut self) {
        let fs = self.kit.mount(self.dev.clone()).expect("mount");
        fs.store().set_delete_batch(5);
        self.fs = Some(fs);
    }

    fn unmount(&mut self) {
        if let Some(fs) = self.fs.take() {
            fs.unmount().expect("unmount");
        }
    }

    fn ino(&self, name: &str) -> Option<u64> {
        self.fs()
            .lookup(ROOT_INO, OsStr::new(name))
            .ok()
            .map(|a| a.ino)
    }

    fn write(&mut self, rng: &mut SmallRng) {
        let name = NAMES[rng.gen_range(0..NAMES.len())];
        let ino = match self.ino(name) {
            Some(i) => i,
            None => {
                let (ino, fh) = aegis_testkit::create_file(self.fs(), name);
                self.fs().release(ino, fh).unwrap();
                ino
            }
        };
        let off = rng.gen_range(0..MAX_FILE - 1);
        let len = rng.gen_range(1..=(MAX_FILE - off).min(70_000)) as usize;
        let data = aegis_testkit::noise(len, rng.gen());
        let fh = self.fs().open(ino, libc::O_RDWR).unwrap();
        self.fs().write(ino, fh, off, &data).unwrap();
        self.fs().release(ino, fh).unwrap();
        let f = self.live.entry(name.to_string()).or_default();
        let end = off as usize + len;
        if f.len() < end {
            f.resize(end, 0);
        }
        f[off as usize..end].copy_from_slice(&data);
    }

    /// copy_file_range between two files, half the time on record
    /// boundaries (so records are shared), else anywhere (copied).
    fn copy(&mut self, rng: &mut SmallRng) {
        let Some(from) = self.pick(rng) else { return };
        let to = NAMES[rng.gen_range(0..NAMES.len())];
        let size = self.live[&from].len() as u64;
        if to == from || size == 0 {
            return;
        }
        let (mut off, mut at) = (rng.gen_range(0..size), rng.gen_range(0..MAX_FILE));
        if rng.gen_bool(0.5) {
            (off, at) = (off / RS * RS, at / RS * RS);
        }
        let len = rng.gen_range(1..=size - off);
        let src = self.ino(&from).unwrap();
        let dst = match self.ino(to) {
            Some(i) => i,
            None => {
                let (ino, fh) = aegis_testkit::create_file(self.fs(), to);
                self.fs().release(ino, fh).unwrap();
                ino
            }
        };
        let fi = self.fs().open(src, libc::O_RDONLY).unwrap();
        let fo = self.fs().open(dst, libc::O_RDWR).unwrap();
        let n = self
            .fs()
            .copy_file_range(src, fi, off, dst, fo, at, len, 0)
            .unwrap();
        assert_eq!(n, len);
        self.fs().release(src, fi).unwrap();
        self.fs().release(dst, fo).unwrap();
        let bytes = self.live[&from][off as usize..(off + len) as usize].to_vec();
        let f = self.live.entry(to.to_string()).or_default();
        let end = (at + len) as usize;
        if f.len() < end {
            f.resize(end, 0);
        }
        f[at as usize..end].copy_from_slice(&bytes);
    }

    fn truncate(&mut self, rng: &mut SmallRng) {
        let Some(name) = self.pick(rng) else { return };
        let size = rng.gen_range(0..MAX_FILE);
        let ino = self.ino(&name).unwrap();
        let set = aegis_vfs::SetAttr {
            size: Some(size),
            ..Default::default()
        };
        self.fs()
            .setattr(&aegis_vfs::Request::root(), ino, &set, None)
            .unwrap();
        self.live.get_mut(&name).unwrap().resize(size as usize, 0);
    }

    fn punch(&mut self, rng: &mut SmallRng) {
        let Some(name) = self.pick(rng) else { return };
        let size = self.live[&name].len() as u64;
        if size == 0 {
            return;
        }
        let off = rng.gen_range(0..size);
        let len = rng.gen_range(1..=size - off);
        let ino = self.ino(&name).unwrap();
        let fh = self.fs().open(ino, libc::O_RDWR).unwrap();
        let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        self.fs().fallocate(ino, fh, off, len, mode).unwrap();
        self.fs().release(ino, fh).unwrap();
        self.live.get_mut(&name).unwrap()[off as usize..(off + len) as usize].fill(0);
    }

    fn rename(&mut self, rng: &mut SmallRng) {
        let Some(from) = self.pick(rng) else { return };
        let to = NAMES[rng.gen_range(0..NAMES.len())].to_string();
        if to == from {
            return;
        }
        self.fs()
            .rename(ROOT_INO, OsStr::new(&from), ROOT_INO, OsStr::new(&to), 0)
            .unwrap();
        let data = self.live.remove(&from).unwrap();
        self.live.insert(to, data);
    }

    fn unlink(&mut self, rng: &mut SmallRng) {
        let Some(name) = self.pick(rng) else { return };
        self.fs().unlink(ROOT_INO, OsStr::new(&name)).unwrap();
        self.live.remove(&name);
    }

    fn pick(&self, rng: &mut SmallRng) -> Option<String> {
        let n = self.live.len();
        (n > 0).then(|| self.live.keys().nth(rng.gen_range(0..n)).unwrap().clone())
    }

    fn snapshot(&mut self) {
        let name = format!("s{}", self.next_snap);
        self.next_snap += 1;
        self.fs()
            .store()
            .create_snapshot(ROOT_DATASET, &name)
            .unwrap();
        self.snaps.insert(name, self.live.clone());
    }

    fn delete_snapshot(&mut self, rng: &mut SmallRng) {
        let n = self.snaps.len();
        if n == 0 {
            return;
        }
        let name = self.snaps.keys().nth(rng.gen_range(0..n)).unwrap().clone();
        self.fs()
            .store()
            .delete_snapshot(ROOT_DATASET, &name, &mut |_| {})
            .unwrap();
        self.snaps.remove(&name);
    }

    /// Roll back to the newest snapshot (unmounted, as the CLI does).
    fn rollback(&mut self) {
        let Some(name) = self.newest() else { return };
        self.unmount();
        let store = self.kit.open_store(self.dev.clone());
        store.rollback(ROOT_DATASET, &name).unwrap();
        store.shutdown().unwrap();
        self.live = self.snaps[&name].clone();
        self.mount();
    }

    fn newest(&self) -> Option<String> {
        self.snaps
            .keys()
            .max_by_key(|n| n[1..].parse::<u32>().unwrap())
            .cloned()
    }

    /// Clone a snapshot, check and change the clone, destroy it: the
    /// origin and every other snapshot must not notice.
    fn clone_round(&mut self, rng: &mut SmallRng) {
        let n = self.snaps.len();
        if n == 0 {
            return;
        }
        let name = self.snaps.keys().nth(rng.gen_range(0..n)).unwrap().clone();
        self.unmount();
        let store = self.kit.open_store(self.dev.clone());
        store.clone_snapshot(ROOT_DATASET, &name, "c").unwrap();
        store.shutdown().unwrap();
        let opts = MountOptions {
            dataset_name: Some("c".into()),
            ..self.kit.mount_opts()
        };
        let fs = aegis_diskfs::open(vec![self.dev.clone() as DeviceRef], &opts).unwrap();
        assert_eq!(contents(&fs), self.snaps[&name], "clone of {name}");
        for f in NAMES.iter().take(2) {
            let _ = fs.unlink(ROOT_INO, OsStr::new(f));
        }
        let (ino, fh) = aegis_testkit::create_file(&fs, "a");
        fs.write(ino, fh, 0, &aegis_testkit::noise(100_000, rng.gen()))
            .unwrap();
        fs.release(ino, fh).unwrap();
        fs.unmount().unwrap();
        let store = self.kit.open_store(self.dev.clone());
        store.destroy_dataset("c").unwrap();
        store.shutdown().unwrap();
        self.mount();
    }

    /// Unmount; fsck; every snapshot and the live dataset equal their
    /// models; mount again.
    fn verify(&mut self, ctx: &str) {
        self.unmount();
        self.kit.fsck_clean(self.dev.clone());
        for (name, want) in &self.snaps {
            let opts = MountOptions {
                snapshot_name: Some(name.clone()),
                ..self.kit.mount_opts()
            };
            let fs = aegis_diskfs::open(vec![self.dev.clone() as DeviceRef], &opts).unwrap();
            assert_eq!(&contents(&fs), want, "{ctx}: snapshot {name}");
            fs.unmount().unwrap();
        }
        self.mount();
        assert_eq!(contents(self.fs()), self.live, "{ctx}: live dataset");
    }
}

/// Every file of the root directory with its contents.
fn contents(fs: &DiskFs) -> Files {
    let mut out = Files::new();
    for name in NAMES {
        let Ok(a) = fs.lookup(ROOT_INO, OsStr::new(name)) else {
            continue;
        };
        let fh = fs.open(a.ino, libc::O_RDONLY).unwrap();
        let data = fs.read(a.ino, fh, 0, a.size as u32 + 1).unwrap();
        fs.release(a.ino, fh).unwrap();
        out.insert(name.to_string(), data);
    }
    out
}

fn run(seed: u64, ops: u64) {
    let kit = Kit::default().size(256 << 20).record_size(RS as u32);
    let dev = kit.fresh();
    let mut w = World {
        kit,
        dev,
        fs: None,
        live: Files::new(),
        snaps: BTreeMap::new(),
        next_snap: 0,
    };
    w.mount();
    if seed.is_multiple_of(2) {
        // Usage kept through every operation: each verify's fsck
        // recomputes it from the inodes.
        let q = aegis_fs::posix::quota::QuotaId::dataset();
        w.fs()
            .store()
            .set_quota(ROOT_DATASET, q, 1 << 40, 0)
            .unwrap();
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    for i in 0..ops {
        match rng.gen_range(0..100) {
            0..=33 => w.write(&mut rng),
            34..=39 => w.copy(&mut rng),
            40..=49 => w.truncate(&mut rng),
            50..=56 => w.punch(&mut rng),
            57..=63 => w.rename(&mut rng),
            64..=69 => w.unlink(&mut rng),
            70..=79 => w.snapshot(),
            80..=86 => w.delete_snapshot(&mut rng),
            87..=92 => {
                w.unmount();
                w.mount();
            }
            93 => w.fs().sync().unwrap(),
            94 => w.rollback(),
            95 => w.clone_round(&mut rng),
            _ => w.verify(&format!("seed {seed} op {i}")),
        }
    }
    w.verify(&format!("seed {seed} end"));
    // Deleting every snapshot leaves only the live files' blocks.
    while !w.snaps.is_empty() {
        w.delete_snapshot(&mut rng);
    }
    w.verify(&format!("seed {seed} all deleted"));
    w.unmount();
}

#[test]
fn snapshots_always_equal_the_model_copy_from_their_moment() {
    let seeds = env_or("AEGIS_SNAP_SEEDS", 4);
    let ops = env_or("AEGIS_SNAP_OPS", 300);
    for seed in 0..seeds {
        run(seed, ops);
    }
}
