//! The image target: a small filesystem (8 MiB, a few directories, files
//! inline and in blocks, xattrs, a symlink, hardlinks), damaged by the
//! input, then opened, checked with fsck, mounted and walked. Every step
//! may fail with an error; none may panic or hang.
//!
//! Input: a list of patches, each `class u8 · where u16 · offset u16 ·
//! length u8 · bytes`. The class aims the patch at the labels and
//! uberblock ring, at an allocated block, or anywhere, so most inputs hit
//! live metadata instead of free space.

use std::ffi::OsStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aegis_block::{DeviceRef, MemDevice};
use aegis_diskfs::{AtimeMode, DiskFs, DiskFsOptions, FormatOptions, MountOptions};
use aegis_fs::{CreateOptions, OpenOptions, Store, StoreOptions};
use aegis_vfs::{FileSystem, FileType, Ino, Request, ROOT_INO};

const SIZE: u64 = 8 << 20;

fn opts() -> StoreOptions {
    StoreOptions {
        sync_interval: Duration::from_secs(3600),
        cache_nodes: 256,
        ..Default::default()
    }
}

struct Base {
    bytes: Vec<u8>,
    /// (offset, length) of every allocated extent.
    extents: Vec<(u64, u64)>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dev = Arc::new(MemDevice::new(SIZE));
        let fs = aegis_diskfs::create(
            vec![dev.clone() as DeviceRef],
            &CreateOptions::default(),
            &FormatOptions {
                record_size: 4096,
                ..Default::default()
            },
            &MountOptions {
                store: opts(),
                ..Default::default()
            },
        )
        .expect("create");
        let store = fs.store().clone();
        let req = Request::root();
        let d = fs
            .mkdir(&req, ROOT_INO, OsStr::new("dir"), 0o755)
            .expect("mkdir");
        for i in 0..40u32 {
            let name = format!("f{i}");
            let (a, fh) = fs
                .create(&req, d.ino, OsStr::new(&name), 0o644, libc::O_RDWR)
                .expect("create");
            let data: Vec<u8> = (0..(i * 700) as usize)
                .map(|j| (j as u32 * 31 + i) as u8)
                .collect();
            fs.write(a.ino, fh, 0, &data).expect("write");
            fs.release(a.ino, fh).expect("release");
            if i % 5 == 0 {
                fs.setxattr(
                    &Request::root(),
                    a.ino,
                    OsStr::new("user.tag"),
                    &data[..data.len().min(1500)],
                    0,
                )
                .expect("xattr");
                fs.link(a.ino, ROOT_INO, OsStr::new(&format!("link{i}")))
                    .expect("link");
            }
        }
        fs.symlink(&req, ROOT_INO, OsStr::new("sym"), OsStr::new("dir/f3"))
            .expect("symlink");
        // A snapshot, and changes after it: snapshot and dead list
        // records for the mutations to reach.
        store
            .create_snapshot(aegis_fs::dataset::ROOT_DATASET, "base")
            .expect("snapshot");
        for i in 30..40u32 {
            fs.unlink(d.ino, OsStr::new(&format!("f{i}")))
                .expect("unlink");
        }
        fs.unmount().expect("unmount");
        let extents = store
            .pool()
            .allocated_extents()
            .iter()
            .map(|e| (e.offset, e.len))
            .collect();
        drop(store);
        Base {
            bytes: dev.to_bytes(),
            extents,
        }
    })
}

/// The undamaged image (the seeds are taken from it).
pub fn base_bytes() -> &'static [u8] {
    &base().bytes
}

/// Apply the input's patches to a copy of the base image.
fn damaged(data: &[u8]) -> Vec<u8> {
    let b = base();
    let mut img = b.bytes.clone();
    let mut i = 0;
    // At most 64 patches: an input cannot make the work unbounded.
    for _ in 0..64 {
        if i + 6 > data.len() {
            break;
        }
        let class = data[i];
        let which = u16::from_le_bytes([data[i + 1], data[i + 2]]) as u64;
        let off = u16::from_le_bytes([data[i + 3], data[i + 4]]) as u64;
        let len = data[i + 5] as usize;
        i += 6;
        let bytes = &data[i..(i + len).min(data.len())];
        i += bytes.len();
        let at = match class % 3 {
            // The front labels and uberblock ring.
            0 => (which * 4096 + off) % (512 << 10),
            1 if !b.extents.is_empty() => {
                let (o, l) = b.extents[which as usize % b.extents.len()];
                o + off % l.max(1)
            }
            _ => (which << 16 | off) % SIZE,
        } as usize;
        let end = (at + bytes.len()).min(img.len());
        img[at..end].copy_from_slice(&bytes[..end - at]);
    }
    img
}

/// Walk the tree: every entry's attributes, file contents up to 1 MiB,
/// links and xattrs; at most 10,000 entries.
fn walk(fs: &dyn FileSystem, ino: Ino, depth: u32, budget: &mut u32) {
    if depth > 16 {
        return;
    }
    let Ok(fh) = fs.opendir(ino, 0) else { return };
    let mut off = 0;
    while let Ok(es) = fs.readdir(ino, fh, off, 64) {
        let Some(last) = es.last() else { break };
        off = last.offset;
        for e in es {
            if *budget == 0 {
                let _ = fs.releasedir(ino, fh);
                return;
            }
            *budget -= 1;
            if e.offset <= 2 {
                continue;
            }
            let _ = fs.getattr(e.ino);
            let _ = fs.listxattr(e.ino, 1 << 16);
            let _ = fs.getxattr(e.ino, OsStr::new("user.tag"), 1 << 16);
            match e.kind {
                FileType::Directory => walk(fs, e.ino, depth + 1, budget),
                FileType::Symlink => {
                    let _ = fs.readlink(e.ino);
                }
                FileType::RegularFile => {
                    if let Ok(fh) = fs.open(e.ino, libc::O_RDONLY) {
                        let _ = fs.read(e.ino, fh, 0, 1 << 20);
                        let _ = fs.lseek(e.ino, fh, 0, aegis_vfs::Whence::Hole);
                        let _ = fs.release(e.ino, fh);
                    }
                }
                _ => {}
            }
        }
    }
    let _ = fs.releasedir(ino, fh);
}

pub fn run(data: &[u8]) {
    let img = damaged(data);
    let dev = Arc::new(MemDevice::from_bytes(img));
    let Ok(store) = Store::open(
        vec![dev.clone() as DeviceRef],
        &OpenOptions::default(),
        opts(),
    ) else {
        return;
    };
    let _ = aegis_fs::fsck::fsck(&store, false, &mut |_, _| {});
    if let Ok(fs) = DiskFs::open(
        store,
        DiskFsOptions {
            atime: AtimeMode::Noatime,
            ..Default::default()
        },
    ) {
        let mut budget = 10_000;
        walk(&*fs, ROOT_INO, 0, &mut budget);
        // A write and a delete on the damaged filesystem: errors are fine.
        let req = Request::root();
        if let Ok(a) = fs.mknod(&req, ROOT_INO, OsStr::new("new"), libc::S_IFREG | 0o644, 0) {
            fs.forget(a.ino, 1);
        }
        let _ = fs.unlink(ROOT_INO, OsStr::new("link0"));
        let _ = fs.unmount();
    }
}
