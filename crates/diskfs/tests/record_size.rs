//! The `recordsize` property through the `FileSystem` trait: a
//! directory's size is inherited, a file's records take its own size
//! (seen in the record listing and checked by fsck), data round-trips,
//! the size survives a remount and an intent-log replay, small files are
//! one record of their own length, bad values change nothing, and a file
//! with more than one record keeps its size. A model test writes at
//! random into files of random record sizes and compares every byte.

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::{DeviceRef, MemDevice};
use aegis_diskfs::{DiskFs, RECORDSIZE_XATTR};
use aegis_fs::posix::FEATURE_RECORDSIZE;
use aegis_fs::ObjectRead;
use aegis_testkit::{noise, Kit};
use aegis_vfs::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn xname() -> &'static OsStr {
    OsStr::new(std::str::from_utf8(RECORDSIZE_XATTR).unwrap())
}

fn get(fs: &DiskFs, ino: Ino) -> String {
    match fs.getxattr(ino, xname(), 64).unwrap() {
        XattrReply::Data(d) => String::from_utf8(d).unwrap(),
        XattrReply::Size(_) => unreachable!(),
    }
}

fn set(fs: &DiskFs, ino: Ino, value: &str) -> Result<()> {
    fs.setxattr(&Request::root(), ino, xname(), value.as_bytes(), 0)
}

fn features(fs: &DiskFs) -> u64 {
    fs.store()
        .view(
            aegis_fs::dataset::ROOT_DATASET,
            |v| -> std::result::Result<_, aegis_fs::FsError> { v.meta() },
        )
        .unwrap()
        .unwrap()
        .features
}

fn mkdir(fs: &DiskFs, parent: Ino, name: &str) -> Ino {
    let a = fs
        .mkdir(&Request::root(), parent, OsStr::new(name), 0o755)
        .unwrap();
    fs.forget(a.ino, 1);
    a.ino
}

/// A new file `name` in `dir` holding `data`; its inode.
fn write_file(fs: &DiskFs, dir: Ino, name: &str, data: &[u8]) -> Ino {
    let (a, fh) = fs
        .create(&Request::root(), dir, OsStr::new(name), 0o644, libc::O_RDWR)
        .unwrap();
    // In 1 MiB calls, as the kernel sends them.
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        let n = fs.write(a.ino, fh, (i << 20) as u64, chunk).unwrap();
        assert_eq!(n as usize, chunk.len());
    }
    fs.release(a.ino, fh).unwrap();
    fs.forget(a.ino, 1);
    a.ino
}

fn read_all(fs: &DiskFs, ino: Ino) -> Vec<u8> {
    let size = fs.getattr(ino).unwrap().size;
    let fh = fs.open(ino, libc::O_RDONLY).unwrap();
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let d = fs.read(ino, fh, out.len() as u64, 1 << 20).unwrap();
        assert!(!d.is_empty(), "short read at {}", out.len());
        out.extend_from_slice(&d);
    }
    fs.release(ino, fh).unwrap();
    out
}

/// The committed records of `ino`: every one `rs` long (the last may be
/// shorter) at multiples of `rs`, covering `len` bytes without gaps.
fn assert_records(fs: &DiskFs, ino: Ino, rs: u64, len: u64) {
    fs.sync().unwrap();
    let recs = fs.file_records(ino).unwrap();
    assert_eq!(recs.len() as u64, len.div_ceil(rs), "records {recs:?}");
    for (i, &(off, l)) in recs.iter().enumerate() {
        assert_eq!(off, i as u64 * rs, "record {i} of {recs:?}");
        assert_eq!(l as u64, rs.min(len - off), "record {i} of {recs:?}");
    }
}

fn finish(kit: &Kit, dev: &Arc<MemDevice>, fs: Arc<DiskFs>) {
    fs.unmount().unwrap();
    kit.fsck_clean(dev.clone() as DeviceRef);
}

#[test]
fn directory_size_is_inherited_and_shapes_records() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    assert_eq!(get(&fs, ROOT_INO), "128K");
    assert_eq!(features(&fs) & FEATURE_RECORDSIZE, 0);
    let dir = mkdir(&fs, ROOT_INO, "small");
    set(&fs, dir, "16K").unwrap();
    assert_eq!(get(&fs, dir), "16K");
    assert_ne!(features(&fs) & FEATURE_RECORDSIZE, 0, "feature set");
    let data = noise(1 << 20, 1);
    let f = write_file(&fs, dir, "f", &data);
    assert_eq!(get(&fs, f), "16K", "inherited");
    assert_eq!(fs.getattr(f).unwrap().blksize, 16 << 10);
    assert_eq!(read_all(&fs, f), data, "dirty data reads back");
    assert_records(&fs, f, 16 << 10, 1 << 20);
    assert_eq!(read_all(&fs, f), data, "stored data reads back");
    // A subdirectory and its files inherit in turn; outside, the default.
    let sub = mkdir(&fs, dir, "sub");
    let g = write_file(&fs, sub, "g", &data[..300_000]);
    let h = write_file(&fs, ROOT_INO, "h", &data[..300_000]);
    assert_eq!(
        (get(&fs, sub), get(&fs, g), get(&fs, h)),
        ("16K".into(), "16K".into(), "128K".into())
    );
    assert_records(&fs, g, 16 << 10, 300_000);
    assert_records(&fs, h, 128 << 10, 300_000);
    // Rewrites in the middle keep the records' size.
    let fh = fs.open(f, libc::O_RDWR).unwrap();
    fs.write(f, fh, 5000, &[7u8; 40_000]).unwrap();
    fs.release(f, fh).unwrap();
    let mut want = data.clone();
    want[5000..45_000].fill(7);
    assert_records(&fs, f, 16 << 10, 1 << 20);
    fs.unmount().unwrap();

    let fs = kit.mount(dev.clone()).unwrap();
    assert_eq!((get(&fs, dir), get(&fs, f)), ("16K".into(), "16K".into()));
    assert_eq!(read_all(&fs, f), want, "after a remount");
    let k = write_file(&fs, dir, "k", &data[..100_000]);
    assert_records(&fs, k, 16 << 10, 100_000);
    finish(&kit, &dev, fs);
}

#[test]
fn small_files_are_one_record_of_their_own_size() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    for (i, rs) in ["4K", "64K", "128K", "1M"].iter().enumerate() {
        let dir = mkdir(&fs, ROOT_INO, &format!("d{i}"));
        set(&fs, dir, rs).unwrap();
        let bytes = fs.getattr(dir).unwrap().blksize as u64;
        let lens = [1u64, 4095, 4096, 10_000, bytes - 1, bytes];
        for len in lens.into_iter().filter(|&l| l <= bytes) {
            let f = write_file(&fs, dir, &format!("f{len}"), &noise(len as usize, len));
            fs.sync().unwrap();
            let recs = fs.file_records(f).unwrap();
            assert_eq!(recs, vec![(0, len as u32)], "{len} bytes in {rs} records");
            // Its space is its own length in blocks (inline when tiny).
            let blocks = fs.getattr(f).unwrap().blocks * 512;
            assert!(
                blocks <= len.div_ceil(4096) * 4096,
                "{len} in {rs}: {blocks}"
            );
        }
    }
    finish(&kit, &dev, fs);
}

#[test]
fn bad_values_change_nothing() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let dir = mkdir(&fs, ROOT_INO, "d");
    for bad in ["3K", "abc", "2M", "0", "", "4KB", "1G", "-4K", "6000"] {
        let e = set(&fs, dir, bad).unwrap_err();
        assert!(matches!(e, FsError::InvalidArgument(_)), "{bad}: {e:?}");
        assert_eq!(e.errno(), libc::EINVAL);
    }
    assert_eq!(get(&fs, dir), "128K");
    // The default stores nothing new: the dataset keeps its old format.
    set(&fs, dir, "128K").unwrap();
    assert_eq!(
        features(&fs) & FEATURE_RECORDSIZE,
        0,
        "default needs no feature"
    );
    // Not on a symlink.
    let l = fs
        .symlink(&Request::root(), ROOT_INO, OsStr::new("l"), OsStr::new("d"))
        .unwrap();
    assert_eq!(set(&fs, l.ino, "16K"), Err(FsError::NotPermitted));
    assert_eq!(features(&fs) & FEATURE_RECORDSIZE, 0);
    finish(&kit, &dev, fs);
}

#[test]
fn a_file_changes_size_only_while_it_has_one_record() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    // Empty: any size.
    let f = write_file(&fs, ROOT_INO, "empty", b"");
    set(&fs, f, "4K").unwrap();
    set(&fs, f, "32K").unwrap();
    assert_eq!(get(&fs, f), "32K");
    // One record of 20 KiB (dirty, then stored): it may grow its record
    // size, not shrink below its length.
    let data = noise(20_000, 3);
    let g = write_file(&fs, ROOT_INO, "one", &data);
    assert_eq!(set(&fs, g, "16K"), Err(FsError::Busy));
    set(&fs, g, "1M").unwrap();
    fs.sync().unwrap();
    assert_eq!(set(&fs, g, "16K"), Err(FsError::Busy));
    set(&fs, g, "32K").unwrap();
    assert_eq!(read_all(&fs, g), data);
    // Grown to four records of 32 KiB: fixed from now on.
    let more = noise(80_000, 4);
    let fh = fs.open(g, libc::O_RDWR).unwrap();
    fs.write(g, fh, 20_000, &more).unwrap();
    fs.release(g, fh).unwrap();
    for v in ["4K", "128K", "1M"] {
        assert_eq!(set(&fs, g, v), Err(FsError::Busy), "{v}");
    }
    assert_eq!(get(&fs, g), "32K");
    assert_records(&fs, g, 32 << 10, 100_000);
    let mut want = data.clone();
    want.extend_from_slice(&more);
    assert_eq!(read_all(&fs, g), want);
    // A sparse file whose only data is in its first record may change.
    let s = write_file(&fs, ROOT_INO, "sparse", &noise(3000, 5));
    fs.setattr(
        &Request::root(),
        s,
        &SetAttr {
            size: Some(10 << 20),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    set(&fs, s, "4K").unwrap();
    let fh = fs.open(s, libc::O_RDWR).unwrap();
    fs.write(s, fh, 9 << 20, &noise(10_000, 6)).unwrap();
    fs.release(s, fh).unwrap();
    fs.sync().unwrap();
    let recs = fs.file_records(s).unwrap();
    assert!(
        recs.iter().all(|&(o, l)| o % 4096 == 0 && l <= 4096),
        "{recs:?}"
    );
    assert_eq!(recs.len(), 1 + 3, "{recs:?}");
    finish(&kit, &dev, fs);
}

#[test]
fn replayed_from_the_intent_log() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    // The first fsync of a mount commits; the ones after only log.
    let w = write_file(&fs, ROOT_INO, "warmup", b"x");
    let fh = fs.open(w, libc::O_RDWR).unwrap();
    fs.fsync(w, fh, false).unwrap();
    fs.release(w, fh).unwrap();
    let dir = mkdir(&fs, ROOT_INO, "d");
    set(&fs, dir, "8K").unwrap();
    let data = noise(100_000, 9);
    let (a, fh) = fs
        .create(&Request::root(), dir, OsStr::new("f"), 0o644, libc::O_RDWR)
        .unwrap();
    fs.write(a.ino, fh, 0, &data).unwrap();
    let before = fs.store().last_uberblock().unwrap().txg;
    fs.fsync(a.ino, fh, false).unwrap();
    assert_eq!(fs.store().last_uberblock().unwrap().txg, before, "logged");
    let crash = Arc::new(dev.snapshot());
    drop(fs);

    let fs = kit.mount(crash.clone()).unwrap();
    let d = fs.lookup(ROOT_INO, OsStr::new("d")).unwrap().ino;
    let f = fs.lookup(d, OsStr::new("f")).unwrap().ino;
    assert_eq!((get(&fs, d), get(&fs, f)), ("8K".into(), "8K".into()));
    assert_eq!(read_all(&fs, f), data);
    assert_records(&fs, f, 8 << 10, 100_000);
    finish(&kit, &crash, fs);
}

/// Random writes, truncates and punches into files of random record
/// sizes, against a `Vec<u8>` per file; remounts now and then; every
/// byte compared, fsck clean at the end.
#[test]
fn random_writes_against_a_model() {
    let kit = Kit::default().size(128 << 20);
    let dev = kit.fresh();
    let mut fs = kit.mount(dev.clone()).unwrap();
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let sizes = ["4K", "8K", "16K", "64K", "128K", "256K", "1M"];
    let mut files: Vec<(Ino, Vec<u8>, u64)> = Vec::new();
    for i in 0..6 {
        let rs = sizes[rng.gen_range(0..sizes.len())];
        let f = write_file(&fs, ROOT_INO, &format!("f{i}"), b"");
        set(&fs, f, rs).unwrap();
        let bytes = fs.getattr(f).unwrap().blksize as u64;
        files.push((f, Vec::new(), bytes));
    }
    for step in 0..600 {
        let (ino, model, _) = &mut files[rng.gen_range(0..6)];
        let ino = *ino;
        let fh = fs.open(ino, libc::O_RDWR).unwrap();
        match rng.gen_range(0..10) {
            0 => {
                let size = rng.gen_range(0..3u64 << 20);
                let set_size = SetAttr {
                    size: Some(size),
                    ..Default::default()
                };
                fs.setattr(&Request::root(), ino, &set_size, Some(fh))
                    .unwrap();
                model.resize(size as usize, 0);
            }
            1 => {
                let lo = rng.gen_range(0..3u64 << 20);
                let len = rng.gen_range(1..600_000u64);
                let keep = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
                fs.fallocate(ino, fh, lo, len, keep).unwrap();
                let end = ((lo + len) as usize).min(model.len());
                if (lo as usize) < end {
                    model[lo as usize..end].fill(0);
                }
            }
            _ => {
                let off = rng.gen_range(0..3u64 << 20) as usize;
                let len = rng.gen_range(1..300_000usize);
                let data = noise(len, step);
                fs.write(ino, fh, off as u64, &data).unwrap();
                if model.len() < off + len {
                    model.resize(off + len, 0);
                }
                model[off..off + len].copy_from_slice(&data);
            }
        }
        fs.release(ino, fh).unwrap();
        if step % 97 == 96 {
            fs.unmount().unwrap();
            fs = kit.mount(dev.clone()).unwrap();
        }
    }
    for (ino, model, rs) in &files {
        assert_eq!(&read_all(&fs, *ino), model, "inode {ino}");
        fs.sync().unwrap();
        for (off, len) in fs.file_records(*ino).unwrap() {
            assert!(off % rs == 0 && len as u64 <= *rs, "{off} {len} in {rs}");
        }
    }
    finish(&kit, &dev, fs);
}
