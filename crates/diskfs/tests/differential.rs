//! Differential test: the same seeded random operation sequences run on
//! `RamFs` (the oracle) and on `DiskFs` (an image in memory), through the
//! `FileSystem` trait. Every result is compared (errno, attributes other
//! than times and block counts, bytes read, directory listings, xattrs),
//! the disk filesystem is unmounted and mounted again at random points, and
//! at the end both trees must be equal and fsck must find the image clean.
//!
//! `AEGIS_DIFF_SEEDS` and `AEGIS_DIFF_OPS` scale it up (defaults: 8 × 1,500).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use aegis_block::MemDevice;
use aegis_diskfs::DiskFs;
use aegis_testkit::Kit;
use aegis_vfs::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const IMAGE: u64 = 256 << 20;

struct Disk {
    kit: Kit,
    dev: Arc<MemDevice>,
    fs: Option<Arc<DiskFs>>,
}

impl Disk {
    fn new(record_size: u32) -> Disk {
        let kit = Kit::default().size(IMAGE).record_size(record_size);
        let dev = kit.fresh();
        let mut d = Disk { kit, dev, fs: None };
        d.mount();
        d
    }
    fn mount(&mut self) {
        self.fs = Some(self.kit.mount(self.dev.clone()).expect("mount"));
    }
    fn unmount(&mut self) {
        if let Some(fs) = self.fs.take() {
            fs.unmount().expect("unmount");
        }
    }
    fn fs(&self) -> &DiskFs {
        self.fs.as_ref().expect("mounted")
    }
    fn fsck(&mut self) {
        self.unmount();
        self.kit.fsck_clean(self.dev.clone());
    }
}

/// What a call returned, reduced to what both implementations must agree on.
type Out = std::result::Result<String, i32>;

fn norm_attr(a: &Attr) -> String {
    format!(
        "ino={} kind={:?} perm={:o} nlink={} uid={} gid={} size={} rdev={}",
        a.ino, a.kind, a.perm, a.nlink, a.uid, a.gid, a.size, a.rdev
    )
}

fn err(e: FsError) -> i32 {
    e.errno()
}

/// Walk `path` (single-byte components) from the root, balancing lookups.
fn walk(fs: &dyn FileSystem, path: &[u8]) -> std::result::Result<Ino, i32> {
    let mut ino = ROOT_INO;
    for c in path {
        let a = fs.lookup(ino, OsStr::from_bytes(&[*c])).map_err(err)?;
        fs.forget(a.ino, 1);
        ino = a.ino;
    }
    Ok(ino)
}

struct Open {
    fh: [Fh; 2],
    ino: [Ino; 2],
}

struct Driver {
    rng: SmallRng,
    ram: RamFs,
    disk: Disk,
    open: Vec<Open>,
    ops: u64,
    remounts: u64,
    /// Per operation: (succeeded, failed), to show the test is not vacuous.
    stats: std::cell::RefCell<std::collections::BTreeMap<String, (u64, u64)>>,
    /// Paths created before (some since removed), and directories among them.
    known: Vec<Vec<u8>>,
    dirs: Vec<Vec<u8>>,
}

const NAMES: &[u8] = b"abcdef";

impl Driver {
    fn fss(&self) -> [&dyn FileSystem; 2] {
        [&self.ram, self.disk.fs()]
    }

    /// A path: often one made before (existing or recently removed), often
    /// a new name in a directory made before, sometimes anything.
    fn path(&mut self) -> Vec<u8> {
        let r = self.rng.gen_range(0..10);
        if r < 3 && !self.known.is_empty() {
            return self.known[self.rng.gen_range(0..self.known.len())].clone();
        }
        if r < 5 && !self.dirs.is_empty() {
            return self.dirs[self.rng.gen_range(0..self.dirs.len())].clone();
        }
        if r < 8 && !self.dirs.is_empty() {
            let mut p = self.dirs[self.rng.gen_range(0..self.dirs.len())].clone();
            if p.len() < 4 {
                p.push(NAMES[self.rng.gen_range(0..NAMES.len())]);
                return p;
            }
        }
        let depth = self.rng.gen_range(1..=3);
        (0..depth)
            .map(|_| NAMES[self.rng.gen_range(0..NAMES.len())])
            .collect()
    }

    fn remember(&mut self, p: &[u8], dir: bool) {
        let list = if dir { &mut self.dirs } else { &mut self.known };
        if list.len() < 64 {
            list.push(p.to_vec());
        } else {
            let i = self.rng.gen_range(0..list.len());
            list[i] = p.to_vec();
        }
    }

    /// A path for an operation on a file: mostly a file made before.
    fn file_path(&mut self) -> Vec<u8> {
        if !self.known.is_empty() && self.rng.gen_bool(0.8) {
            return self.known[self.rng.gen_range(0..self.known.len())].clone();
        }
        self.path()
    }

    fn split(p: &[u8]) -> (&[u8], &[u8]) {
        (&p[..p.len() - 1], &p[p.len() - 1..])
    }

    /// Run `f` on both filesystems and require equal results.
    fn both(&self, what: &str, f: impl Fn(&dyn FileSystem, usize) -> Out) -> bool {
        let fss = self.fss();
        let a = f(fss[0], 0);
        let b = f(fss[1], 1);
        assert_eq!(a, b, "op {} ({what}) differs: ramfs vs diskfs", self.ops);
        let mut st = self.stats.borrow_mut();
        let e = st.entry(what.to_string()).or_default();
        match a {
            Ok(_) => e.0 += 1,
            Err(x) => {
                e.1 += 1;
                if std::env::var("AEGIS_DIFF_DEBUG").is_ok() {
                    eprintln!("{what}: errno {x}");
                }
            }
        }
        a.is_ok()
    }

    fn req(&mut self) -> Request {
        let uid = *[0u32, 1000].get(self.rng.gen_range(0..2)).unwrap();
        // A umask the filesystem applies unless a default ACL replaces it.
        let umask = *[0u32, 0o022, 0o077].get(self.rng.gen_range(0..3)).unwrap();
        Request {
            uid,
            gid: uid,
            pid: 1,
            umask,
        }
    }

    /// A valid ACL value: a named user and group with a mask, mode bits
    /// alone, or a header alone (no ACL), with random permissions.
    fn acl(&mut self) -> Vec<u8> {
        let u = u32::MAX;
        let mut p = || self.rng.gen_range(0..8u16);
        let entries: Vec<(u16, u16, u32)> = match p() % 3 {
            0 => vec![
                (1, p(), u),
                (2, p(), 1000),
                (4, p(), u),
                (8, p(), 0),
                (0x10, p(), u),
                (0x20, p(), u),
            ],
            1 => vec![(1, p(), u), (4, p(), u), (0x20, p(), u)],
            _ => vec![],
        };
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    fn data(&mut self, len: usize) -> Vec<u8> {
        // Runs of one byte (compressible, sometimes zero) or noise.
        let mut v = vec![0u8; len];
        match self.rng.gen_range(0..4) {
            0 => {}
            1 => v.fill(self.rng.gen()),
            _ => self.rng.fill(&mut v[..]),
        }
        v
    }

    fn offset(&mut self) -> u64 {
        match self.rng.gen_range(0..6) {
            0 => 0,
            1 => self.rng.gen_range(0..1024),
            2 => self.rng.gen_range(0..200_000),
            3 => self.rng.gen_range(0..3 << 20),
            4 => 1 << 33,
            _ => self.rng.gen_range(0..70_000),
        }
    }

    fn len(&mut self) -> usize {
        match self.rng.gen_range(0..4) {
            0 => self.rng.gen_range(0..100),
            1 => self.rng.gen_range(0..5000),
            2 => self.rng.gen_range(0..140_000),
            _ => self.rng.gen_range(0..20_000),
        }
    }

    /// A fallocate's offset, length and mode. Collapse and insert get
    /// offsets and lengths in whole 128 KiB (every record size here, and
    /// ramfs's chunks), or one byte off them (EINVAL on both), since
    /// their alignment unit differs between the two filesystems.
    fn fallocate_args(&mut self, path: &[u8]) -> (u64, u64, i32) {
        use libc::{
            FALLOC_FL_COLLAPSE_RANGE as COLLAPSE, FALLOC_FL_INSERT_RANGE as INSERT,
            FALLOC_FL_KEEP_SIZE as KEEP, FALLOC_FL_PUNCH_HOLE as PUNCH,
            FALLOC_FL_ZERO_RANGE as ZERO,
        };
        let mode = match self.rng.gen_range(0..11) {
            0 => 0,
            1 => KEEP,
            2 => PUNCH,
            3 => PUNCH | KEEP,
            4 => ZERO,
            5 => ZERO | KEEP,
            6 | 7 => COLLAPSE,
            8 | 9 => INSERT,
            _ => 0x100,
        };
        if mode & (COLLAPSE | INSERT) == 0 {
            return (self.offset(), self.len() as u64, mode);
        }
        // Mostly inside the file (from the oracle's size), so that they
        // succeed often enough to compare contents.
        const UNIT: u64 = 128 << 10;
        let size = walk(&self.ram, path)
            .and_then(|ino| self.ram.getattr(ino).map_err(err))
            .map_or(0, |a| a.size);
        let units = (size / UNIT).max(1);
        let at = self.rng.gen_range(0..units);
        let off = at * UNIT;
        let len = self.rng.gen_range(1..(units - at).clamp(1, 4) + 1) * UNIT
            + self.rng.gen_bool(0.1) as u64;
        (off, len, mode)
    }

    fn step(&mut self) {
        self.ops += 1;
        let op = self.rng.gen_range(0..100);
        let file_op = matches!(op, 42..=45 | 46..=84 | 92..=94);
        let p = if file_op {
            self.file_path()
        } else if matches!(op, 28..=31) && !self.dirs.is_empty() && self.rng.gen_bool(0.8) {
            // rmdir: a directory made before (often emptied since).
            self.dirs[self.rng.gen_range(0..self.dirs.len())].clone()
        } else {
            self.path()
        };
        let q = self.path();
        let (pp, pn) = Self::split(&p);
        let (qp, qn) = Self::split(&q);
        let req = self.req();
        match op {
            0..=9 => {
                let mode = *[0o644u32, 0o600, 0o755]
                    .get(self.rng.gen_range(0..3))
                    .unwrap();
                let excl = if self.rng.gen_bool(0.3) {
                    libc::O_EXCL
                } else {
                    0
                };
                let keep = self.rng.gen_bool(0.3);
                let flags = libc::O_RDWR
                    | excl
                    | if self.rng.gen_bool(0.2) {
                        libc::O_TRUNC
                    } else {
                        0
                    };
                let mut fhs = [0; 2];
                let mut inos = [0; 2];
                let fss = self.fss();
                let mut outs = Vec::new();
                for (i, fs) in fss.iter().enumerate() {
                    let r = walk(*fs, pp).and_then(|dir| {
                        fs.create(&req, dir, OsStr::from_bytes(pn), mode, flags)
                            .map_err(err)
                    });
                    outs.push(r.as_ref().map(|(a, _)| norm_attr(a)).map_err(|e| *e));
                    if let Ok((a, fh)) = r {
                        fs.forget(a.ino, 1);
                        fhs[i] = fh;
                        inos[i] = a.ino;
                    }
                }
                assert_eq!(outs[0], outs[1], "op {} create {:?}", self.ops, p);
                if outs[0].is_ok() && !keep {
                    for (i, fs) in fss.iter().enumerate() {
                        fs.release(inos[i], fhs[i]).unwrap();
                    }
                }
                if outs[0].is_ok() {
                    self.remember(&p, false);
                    if keep {
                        self.open.push(Open { fh: fhs, ino: inos });
                    }
                }
            }
            10..=15 => {
                let mode = if self.rng.gen_bool(0.2) {
                    0o2775
                } else {
                    0o755
                };
                let ok = self.both("mkdir", |fs, _| {
                    let dir = walk(fs, pp)?;
                    let a = fs
                        .mkdir(&req, dir, OsStr::from_bytes(pn), mode)
                        .map_err(err)?;
                    fs.forget(a.ino, 1);
                    Ok(norm_attr(&a))
                });
                if ok {
                    self.remember(&p, true);
                }
            }
            16..=17 => {
                let (mode, rdev) = match self.rng.gen_range(0..3) {
                    0 => (libc::S_IFIFO | 0o644, 0),
                    1 => (libc::S_IFCHR | 0o600, 0x0103),
                    _ => (libc::S_IFSOCK | 0o755, 0),
                };
                let ok = self.both("mknod", |fs, _| {
                    let dir = walk(fs, pp)?;
                    let a = fs
                        .mknod(&req, dir, OsStr::from_bytes(pn), mode, rdev)
                        .map_err(err)?;
                    fs.forget(a.ino, 1);
                    Ok(norm_attr(&a))
                });
                if ok {
                    self.remember(&p, false);
                }
            }
            18..=20 => {
                let tlen = *[1usize, 30, 900, 4095]
                    .get(self.rng.gen_range(0..4))
                    .unwrap();
                let target: Vec<u8> = (0..tlen).map(|i| b'a' + (i % 26) as u8).collect();
                let ok = self.both("symlink", |fs, _| {
                    let dir = walk(fs, pp)?;
                    let a = fs
                        .symlink(&req, dir, OsStr::from_bytes(pn), OsStr::from_bytes(&target))
                        .map_err(err)?;
                    fs.forget(a.ino, 1);
                    let t = fs.readlink(a.ino).map_err(err)?;
                    Ok(format!("{} target={}", norm_attr(&a), t.len()))
                });
                if ok {
                    self.remember(&p, false);
                }
            }
            21..=27 => {
                self.both("unlink", |fs, _| {
                    let dir = walk(fs, pp)?;
                    fs.unlink(dir, OsStr::from_bytes(pn)).map_err(err)?;
                    Ok(String::new())
                });
            }
            28..=31 => {
                self.both("rmdir", |fs, _| {
                    let dir = walk(fs, pp)?;
                    fs.rmdir(dir, OsStr::from_bytes(pn)).map_err(err)?;
                    Ok(String::new())
                });
            }
            32..=41 => {
                let flags = match self.rng.gen_range(0..6) {
                    0 => RENAME_NOREPLACE,
                    1 => RENAME_EXCHANGE,
                    _ => 0,
                };
                let ok = self.both("rename", |fs, _| {
                    let a = walk(fs, pp)?;
                    let b = walk(fs, qp)?;
                    fs.rename(a, OsStr::from_bytes(pn), b, OsStr::from_bytes(qn), flags)
                        .map_err(err)?;
                    Ok(String::new())
                });
                if ok {
                    self.remember(&q, false);
                }
            }
            42..=45 => {
                let ok = self.both("link", |fs, _| {
                    let ino = walk(fs, &p)?;
                    let b = walk(fs, qp)?;
                    let a = fs.link(ino, b, OsStr::from_bytes(qn)).map_err(err)?;
                    fs.forget(a.ino, 1);
                    Ok(norm_attr(&a))
                });
                if ok {
                    self.remember(&q, false);
                }
            }
            46..=60 => {
                let off = self.offset();
                let len = self.len();
                let data = self.data(len);
                let via_open = !self.open.is_empty() && self.rng.gen_bool(0.5);
                let k = if via_open {
                    self.rng.gen_range(0..self.open.len())
                } else {
                    0
                };
                let append = self.rng.gen_bool(0.1);
                let handles = via_open.then(|| (self.open[k].ino, self.open[k].fh));
                self.both("write", |fs, i| match handles {
                    Some((ino, fh)) => fs
                        .write(ino[i], fh[i], off, &data)
                        .map(|n| n.to_string())
                        .map_err(err),
                    None => {
                        let ino = walk(fs, &p)?;
                        let flags = libc::O_WRONLY | if append { libc::O_APPEND } else { 0 };
                        let fh = fs.open(ino, flags).map_err(err)?;
                        let r = fs.write(ino, fh, off, &data).map_err(err);
                        fs.release(ino, fh).unwrap();
                        let a = fs.getattr(ino).map_err(err)?;
                        r.map(|n| format!("{n} {}", norm_attr(&a)))
                    }
                });
            }
            61..=70 => {
                let off = self.offset();
                let size = self.len() as u32;
                let via_open = !self.open.is_empty() && self.rng.gen_bool(0.5);
                let k = if via_open {
                    self.rng.gen_range(0..self.open.len())
                } else {
                    0
                };
                let handles = via_open.then(|| (self.open[k].ino, self.open[k].fh));
                self.both("read", |fs, i| {
                    let (ino, fh, own) = match handles {
                        Some((ino, fh)) => (ino[i], fh[i], false),
                        None => {
                            let ino = walk(fs, &p)?;
                            (ino, fs.open(ino, libc::O_RDONLY).map_err(err)?, true)
                        }
                    };
                    let r = fs.read(ino, fh, off, size).map_err(err);
                    if own {
                        fs.release(ino, fh).unwrap();
                    }
                    let d = r?;
                    Ok(format!("{} {:x}", d.len(), xxhash(&d)))
                });
            }
            71..=75 => {
                let size = self.offset() / if self.rng.gen_bool(0.5) { 1 } else { 7 };
                let set = SetAttr {
                    size: Some(size),
                    ..Default::default()
                };
                self.both("truncate", |fs, _| {
                    let ino = walk(fs, &p)?;
                    let a = fs.setattr(&req, ino, &set, None).map_err(err)?;
                    Ok(norm_attr(&a))
                });
            }
            76..=78 => {
                let (off, len, mode) = self.fallocate_args(&p);
                let what = if mode & (libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE)
                    != 0
                {
                    "fallocate shift"
                } else {
                    "fallocate"
                };
                self.both(what, |fs, _| {
                    let ino = walk(fs, &p)?;
                    let fh = fs.open(ino, libc::O_RDWR).map_err(err)?;
                    let r = fs.fallocate(ino, fh, off, len, mode).map_err(err);
                    fs.release(ino, fh).unwrap();
                    r?;
                    Ok(norm_attr(&fs.getattr(ino).map_err(err)?))
                });
            }
            79..=84 => {
                let names: [&[u8]; 7] = [
                    b"user.a",
                    b"user.long",
                    b"trusted.t",
                    b"security.s",
                    b"bogus.x",
                    b"system.posix_acl_access",
                    b"system.posix_acl_default",
                ];
                let name = names[self.rng.gen_range(0..names.len())];
                let vlen = *[0usize, 10, 700, 3000, 70_000]
                    .get(self.rng.gen_range(0..5))
                    .unwrap();
                let value = match name.starts_with(b"system.") && self.rng.gen_range(0..4) != 0 {
                    true => self.acl(),
                    false => self.data(vlen),
                };
                let req = self.req();
                let flags = *[0, 0, XATTR_CREATE, XATTR_REPLACE]
                    .get(self.rng.gen_range(0..4))
                    .unwrap();
                let kind = self.rng.gen_range(0..4);
                self.both("xattr", |fs, _| {
                    let ino = walk(fs, &p)?;
                    let n = OsStr::from_bytes(name);
                    match kind {
                        0 | 1 => fs
                            .setxattr(&req, ino, n, &value, flags)
                            .map(|_| String::new())
                            .map_err(err),
                        2 => {
                            let r = fs.getxattr(ino, n, 0).map_err(err)?;
                            let d = fs.getxattr(ino, n, 80_000).map_err(err)?;
                            Ok(format!(
                                "{r:?} {:x}",
                                match d {
                                    XattrReply::Data(d) => xxhash(&d),
                                    XattrReply::Size(s) => s as u64,
                                }
                            ))
                        }
                        _ => {
                            let l = fs.listxattr(ino, 80_000).map_err(err)?;
                            let rm = fs.removexattr(ino, n).map_err(err);
                            Ok(format!("{l:?} {rm:?}"))
                        }
                    }
                });
            }
            85..=87 => {
                let set = SetAttr {
                    mode: Some(self.rng.gen_range(0..0o7777)),
                    uid: self.rng.gen_bool(0.3).then_some(1000),
                    ..Default::default()
                };
                self.both("chmod", |fs, _| {
                    let ino = walk(fs, &p)?;
                    Ok(norm_attr(&fs.setattr(&req, ino, &set, None).map_err(err)?))
                });
            }
            88..=91 => {
                let max = self.rng.gen_range(1..40);
                self.both("readdir", |fs, _| {
                    let ino = walk(fs, pp)?;
                    let fh = fs.opendir(ino, 0).map_err(err)?;
                    let mut names = BTreeSet::new();
                    let mut off = 0;
                    loop {
                        let es = fs.readdirplus(ino, fh, off, max).map_err(err)?;
                        let Some(last) = es.last() else { break };
                        off = last.0.offset;
                        for (e, a) in es {
                            if e.offset > 2 {
                                fs.forget(e.ino, 1);
                            }
                            assert!(names.insert(format!(
                                "{:?} {:?} {}",
                                e.name,
                                e.kind,
                                norm_attr(&a)
                            )));
                        }
                    }
                    fs.releasedir(ino, fh).unwrap();
                    Ok(format!("{names:?}"))
                });
            }
            92..=94 => {
                let (oi, oo, len) = (self.offset(), self.offset(), self.len() as u64);
                let q = self.file_path();
                self.both("copy_file_range", |fs, _| {
                    let a = walk(fs, &p)?;
                    let b = walk(fs, &q)?;
                    let fa = fs.open(a, libc::O_RDONLY).map_err(err)?;
                    let fb = match fs.open(b, libc::O_WRONLY) {
                        Ok(f) => f,
                        Err(e) => {
                            fs.release(a, fa).unwrap();
                            return Err(err(e));
                        }
                    };
                    let r = fs
                        .copy_file_range(a, fa, oi, b, fb, oo, len, 0)
                        .map_err(err);
                    fs.release(a, fa).unwrap();
                    fs.release(b, fb).unwrap();
                    Ok(format!(
                        "{} {}",
                        r?,
                        norm_attr(&fs.getattr(b).map_err(err)?)
                    ))
                });
            }
            95..=96 => {
                if !self.open.is_empty() {
                    let k = self.rng.gen_range(0..self.open.len());
                    let o = self.open.swap_remove(k);
                    for (i, fs) in self.fss().iter().enumerate() {
                        fs.release(o.ino[i], o.fh[i]).unwrap();
                    }
                }
            }
            _ => {
                if self.rng.gen_bool(0.5) {
                    self.remount();
                }
            }
        }
    }

    /// Unmount and mount the disk filesystem (releasing every handle on
    /// both sides first, as the kernel does at unmount).
    fn remount(&mut self) {
        for o in std::mem::take(&mut self.open) {
            for (i, fs) in self.fss().iter().enumerate() {
                fs.release(o.ino[i], o.fh[i]).unwrap();
            }
        }
        self.disk.unmount();
        self.disk.mount();
        self.remounts += 1;
    }

    /// Both trees, recursively: names, attributes, contents, xattrs.
    fn dump(fs: &dyn FileSystem, ino: Ino, path: &mut Vec<u8>, out: &mut Vec<String>) {
        let fh = fs.opendir(ino, 0).unwrap();
        let es = fs.readdir(ino, fh, 0, usize::MAX).unwrap();
        fs.releasedir(ino, fh).unwrap();
        let mut es: Vec<_> = es.into_iter().filter(|e| e.offset > 2).collect();
        es.sort_by(|a, b| a.name.cmp(&b.name));
        for e in es {
            path.push(b'/');
            path.extend_from_slice(&e.name);
            let a = fs.getattr(e.ino).unwrap();
            let xl = fs.listxattr(e.ino, 1 << 20).unwrap();
            let mut line = format!(
                "{} {} xattrs={xl:?}",
                String::from_utf8_lossy(path),
                norm_attr(&a)
            );
            match a.kind {
                FileType::RegularFile => {
                    let fh = fs.open(e.ino, libc::O_RDONLY).unwrap();
                    let d = fs.read(e.ino, fh, 0, a.size.min(64 << 20) as u32).unwrap();
                    fs.release(e.ino, fh).unwrap();
                    line += &format!(" data={:x}", xxhash(&d));
                }
                FileType::Symlink => {
                    line += &format!(" -> {:?}", fs.readlink(e.ino).unwrap().len())
                }
                _ => {}
            }
            out.push(line);
            if a.kind == FileType::Directory {
                Self::dump(fs, e.ino, path, out);
            }
            path.truncate(path.len() - e.name.len() - 1);
        }
    }

    fn compare_trees(&self) {
        let [a, b] = self.fss();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        Self::dump(a, ROOT_INO, &mut Vec::new(), &mut x);
        Self::dump(b, ROOT_INO, &mut Vec::new(), &mut y);
        assert_eq!(x, y, "trees differ after {} ops", self.ops);
    }
}

fn xxhash(d: &[u8]) -> u64 {
    // FNV-1a: enough to compare contents in messages.
    d.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn ramfs_and_diskfs_agree_on_random_operation_sequences() {
    let seeds = env("AEGIS_DIFF_SEEDS", 8);
    let ops = env("AEGIS_DIFF_OPS", 1500);
    let mut total = 0;
    let mut remounts = 0;
    let mut stats = std::collections::BTreeMap::new();
    for seed in 0..seeds {
        // Small records exercise multi-record writes and read-modify-write.
        let record_size = if seed % 2 == 0 { 16 << 10 } else { 128 << 10 };
        let mut d = Driver {
            rng: SmallRng::seed_from_u64(seed),
            ram: RamFs::new(),
            disk: Disk::new(record_size),
            open: Vec::new(),
            ops: 0,
            remounts: 0,
            stats: Default::default(),
            known: Vec::new(),
            dirs: Vec::new(),
        };
        for _ in 0..ops {
            d.step();
        }
        d.compare_trees();
        d.remount();
        d.compare_trees();
        total += d.ops;
        for (k, (ok, failed)) in d.stats.take() {
            let e = stats.entry(k).or_insert((0u64, 0u64));
            e.0 += ok;
            e.1 += failed;
        }
        remounts += d.remounts;
        d.disk.fsck();
    }
    eprintln!("{total} operations over {seeds} seeds, {remounts} remounts: all equal");
    for (k, (ok, failed)) in &stats {
        eprintln!("  {k:16} {ok:6} succeeded {failed:6} failed");
        // Every kind of operation must succeed often enough to matter.
        assert!(
            *ok * 40 >= ok + failed && *ok >= 10,
            "{k}: too few successes to test anything"
        );
    }
    assert!(total >= seeds * ops);
}
