//! Seeded random operation sequences on ramfs, checked against a trivially
//! simple path-based model (a `BTreeMap` of paths): same result codes, same
//! tree, same file contents.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use aegis_vfs::{FileSystem, FileType, Ino, RamFs, Request, SetAttr, ROOT_INO};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

type Path = Vec<u8>; // components are single letters
#[derive(Clone, Debug, PartialEq)]
enum Node {
    Dir,
    File(Vec<u8>),
}

struct Model(BTreeMap<Path, Node>);

impl Model {
    /// Errno of walking to the parent of `p`, if any.
    fn parent_err(&self, p: &[u8]) -> Option<i32> {
        for i in 1..p.len() {
            match self.0.get(&p[..i]) {
                None => return Some(libc::ENOENT),
                Some(Node::File(_)) => return Some(libc::ENOTDIR),
                Some(Node::Dir) => {}
            }
        }
        None
    }
    fn children(&self, p: &[u8]) -> usize {
        self.0
            .keys()
            .filter(|k| k.len() == p.len() + 1 && k.starts_with(p))
            .count()
    }
    fn mknode(&mut self, p: &[u8], node: Node) -> Result<(), i32> {
        if let Some(e) = self.parent_err(p) {
            return Err(e);
        }
        if self.0.contains_key(p) {
            return Err(libc::EEXIST);
        }
        self.0.insert(p.to_vec(), node);
        Ok(())
    }
    fn remove(&mut self, p: &[u8], dir: bool) -> Result<(), i32> {
        if let Some(e) = self.parent_err(p) {
            return Err(e);
        }
        match (self.0.get(p), dir) {
            (None, _) => Err(libc::ENOENT),
            (Some(Node::Dir), false) => Err(libc::EISDIR),
            (Some(Node::File(_)), true) => Err(libc::ENOTDIR),
            (Some(Node::Dir), true) if self.children(p) > 0 => Err(libc::ENOTEMPTY),
            _ => {
                self.0.remove(p);
                Ok(())
            }
        }
    }
    fn rename(&mut self, a: &[u8], b: &[u8]) -> Result<(), i32> {
        if let Some(e) = self.parent_err(a) {
            return Err(e);
        }
        if let Some(e) = self.parent_err(b) {
            return Err(e);
        }
        let src = self.0.get(a).cloned().ok_or(libc::ENOENT)?;
        if src == Node::Dir && b.starts_with(a) && b.len() > a.len() {
            return Err(libc::EINVAL);
        }
        if a == b {
            return Ok(());
        }
        match (&src, self.0.get(b)) {
            (Node::Dir, Some(Node::File(_))) => return Err(libc::ENOTDIR),
            (Node::File(_), Some(Node::Dir)) => return Err(libc::EISDIR),
            (Node::Dir, Some(Node::Dir)) if self.children(b) > 0 => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        self.0.remove(b);
        let moved: Vec<(Path, Node)> = self
            .0
            .range(a.to_vec()..)
            .take_while(|(k, _)| k.starts_with(a))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in moved {
            self.0.remove(&k);
            let mut nk = b.to_vec();
            nk.extend_from_slice(&k[a.len()..]);
            self.0.insert(nk, v);
        }
        Ok(())
    }
}

fn name(c: u8) -> &'static OsStr {
    OsStr::from_bytes(std::slice::from_ref(&b"abc"[(c - b'a') as usize]))
}

/// Walk to the parent directory of `p`.
fn parent(fs: &Arc<dyn FileSystem>, p: &[u8]) -> Result<Ino, i32> {
    let mut ino = ROOT_INO;
    for &c in &p[..p.len() - 1] {
        let a = fs.lookup(ino, name(c)).map_err(|e| e.errno())?;
        if a.kind != FileType::Directory {
            return Err(libc::ENOTDIR);
        }
        ino = a.ino;
    }
    Ok(ino)
}

fn res(r: aegis_vfs::Result<impl Sized>) -> Result<(), i32> {
    r.map(|_| ()).map_err(|e| e.errno())
}

/// The whole tree as the model sees it, read through readdir and read.
fn dump(fs: &Arc<dyn FileSystem>, ino: Ino, prefix: &[u8], out: &mut BTreeMap<Path, Node>) {
    let dh = fs.opendir(ino, 0).unwrap();
    let entries = fs.readdir(ino, dh, 2, usize::MAX).unwrap();
    fs.releasedir(ino, dh).unwrap();
    for e in entries {
        let mut p = prefix.to_vec();
        p.extend_from_slice(&e.name);
        if e.kind == FileType::Directory {
            out.insert(p.clone(), Node::Dir);
            dump(fs, e.ino, &p, out);
        } else {
            let fh = fs.open(e.ino, libc::O_RDONLY).unwrap();
            let data = fs.read(e.ino, fh, 0, u32::MAX).unwrap();
            fs.release(e.ino, fh).unwrap();
            out.insert(p, Node::File(data));
        }
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let fs: Arc<dyn FileSystem> = Arc::new(RamFs::new());
    let mut model = Model(BTreeMap::new());
    let req = Request::root();
    for step in 0..steps {
        let mut path = || -> Path {
            (0..rng.gen_range(1..=3))
                .map(|_| b'a' + rng.gen_range(0..3u8))
                .collect()
        };
        let (p, q) = (path(), path());
        let op = rng.gen_range(0..7);
        let (off, len) = (rng.gen_range(0..10_000u64), rng.gen_range(0..6000usize));
        let byte = rng.gen::<u8>();
        let last = |p: &[u8]| name(*p.last().unwrap());
        let (got, want) = match op {
            0 => (
                parent(&fs, &p).and_then(|d| res(fs.mkdir(&req, d, last(&p), 0o755))),
                model.mknode(&p, Node::Dir),
            ),
            1 => (
                parent(&fs, &p).and_then(|d| {
                    let (a, fh) = fs
                        .create(&req, d, last(&p), 0o644, libc::O_RDWR | libc::O_EXCL)
                        .map_err(|e| e.errno())?;
                    fs.release(a.ino, fh).unwrap();
                    Ok(())
                }),
                model.mknode(&p, Node::File(Vec::new())),
            ),
            2 => (
                parent(&fs, &p).and_then(|d| res(fs.unlink(d, last(&p)))),
                model.remove(&p, false),
            ),
            3 => (
                parent(&fs, &p).and_then(|d| res(fs.rmdir(d, last(&p)))),
                model.remove(&p, true),
            ),
            4 => {
                let got = parent(&fs, &p).and_then(|d| {
                    let b = parent(&fs, &q)?;
                    res(fs.rename(d, last(&p), b, last(&q), 0))
                });
                (got, model.rename(&p, &q))
            }
            5 | 6 => {
                let Some(Node::File(data)) = model.0.get_mut(&p) else {
                    continue;
                };
                let ino = fs.lookup(parent(&fs, &p).unwrap(), last(&p)).unwrap().ino;
                let fh = fs.open(ino, libc::O_RDWR).unwrap();
                if op == 5 {
                    let buf = vec![byte; len];
                    fs.write(ino, fh, off, &buf).unwrap();
                    let end = off as usize + len;
                    if len > 0 && data.len() < end {
                        data.resize(end, 0);
                    }
                    data[off as usize..off as usize + len].copy_from_slice(&buf);
                } else {
                    fs.setattr(
                        &req,
                        ino,
                        &SetAttr {
                            size: Some(off),
                            ..Default::default()
                        },
                        Some(fh),
                    )
                    .unwrap();
                    data.resize(off as usize, 0);
                }
                fs.release(ino, fh).unwrap();
                (Ok(()), Ok(()))
            }
            _ => unreachable!(),
        };
        if got != want {
            let mut tree = BTreeMap::new();
            dump(&fs, ROOT_INO, b"", &mut tree);
            let show = |m: &BTreeMap<Path, Node>| {
                m.iter()
                    .map(|(k, v)| {
                        format!(
                            "{}{}",
                            String::from_utf8_lossy(k),
                            if *v == Node::Dir { "/" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
            };
            eprintln!("fs    {:?}\nmodel {:?}", show(&tree), show(&model.0));
        }
        assert_eq!(
            got,
            want,
            "seed {seed} step {step} op {op} {:?} {:?}",
            String::from_utf8_lossy(&p),
            String::from_utf8_lossy(&q)
        );
        if step % 50 == 0 || step == steps - 1 {
            let mut tree = BTreeMap::new();
            dump(&fs, ROOT_INO, b"", &mut tree);
            assert_eq!(tree, model.0, "seed {seed} step {step}");
        }
    }
}

#[test]
fn random_ops_match_model() {
    for seed in 0..40 {
        run(seed, 400);
    }
}
