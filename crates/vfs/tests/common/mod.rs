//! Helpers shared by the integration tests of this crate.
#![allow(dead_code)]

use aegis_vfs::*;

/// The whole tree as text: path, kind, mode, links, size, content hash,
/// symlink target, xattrs.
pub fn dump(fs: &dyn FileSystem) -> Vec<String> {
    fn walk(fs: &dyn FileSystem, ino: Ino, path: &mut Vec<u8>, out: &mut Vec<String>) {
        let fh = fs.opendir(ino, 0).unwrap();
        let mut es = fs.readdir(ino, fh, 0, usize::MAX).unwrap();
        fs.releasedir(ino, fh).unwrap();
        es.retain(|e| e.offset > 2);
        es.sort_by(|a, b| a.name.cmp(&b.name));
        for e in es {
            path.push(b'/');
            path.extend_from_slice(&e.name);
            let a = fs.getattr(e.ino).unwrap();
            let x = fs.listxattr(e.ino, 1 << 20).unwrap();
            let mut line = format!(
                "{} {:?} {:o} n{} s{} x{:?}",
                String::from_utf8_lossy(path),
                a.kind,
                a.perm,
                a.nlink,
                a.size,
                x
            );
            match a.kind {
                FileType::RegularFile => {
                    let fh = fs.open(e.ino, libc::O_RDONLY).unwrap();
                    let d = fs.read(e.ino, fh, 0, a.size as u32).unwrap();
                    fs.release(e.ino, fh).unwrap();
                    line += &format!(" {}", blake3::hash(&d).to_hex());
                }
                FileType::Symlink => {
                    line += &format!(
                        " -> {}",
                        String::from_utf8_lossy(&fs.readlink(e.ino).unwrap())
                    )
                }
                _ => {}
            }
            out.push(line);
            if a.kind == FileType::Directory {
                walk(fs, e.ino, path, out);
            }
            path.truncate(path.len() - e.name.len() - 1);
        }
    }
    let mut out = Vec::new();
    walk(fs, ROOT_INO, &mut Vec::new(), &mut out);
    out
}
