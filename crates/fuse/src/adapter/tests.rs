//! Unit tests of the adapter's own logic, without a mount: readdir paging
//! against a [`RamFs`], the lookup counts it must keep exact, the buffer
//! budget, and attribute conversion. The kernel's side is played by a
//! closure that accepts entries until a reply of a given size is full; the
//! real kernel is exercised by the mount tests in `tests/`.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use aegis_vfs::{FileSystem, RamFs, Request, ROOT_INO};
use fuser::INodeNo;

use super::readdir::{
    entry_size, fill_dir, fill_dir_plus, is_dot, Budget, DIRENTPLUS_HEADER, DIRENT_HEADER,
};
use super::reply::file_attr;

/// A directory with `n` files whose names vary in length, so entries
/// take different room in a reply.
fn populated(n: usize) -> (RamFs, u64, Vec<u64>) {
    let fs = RamFs::new();
    let req = Request::root();
    let dir = fs
        .mkdir(&req, ROOT_INO, OsStr::new("d"), 0o755)
        .unwrap()
        .ino;
    let inos = (0..n)
        .map(|i| {
            let name = format!("f{i}-{}", "x".repeat(i % 40));
            let (attr, fh) = fs
                .create(&req, dir, OsStr::new(&name), 0o644, libc::O_RDWR)
                .unwrap();
            fs.release(attr.ino, fh).unwrap();
            // Drop the lookup create counted: only readdirplus counts below.
            fs.forget(attr.ino, 1);
            attr.ino
        })
        .collect();
    (fs, dir, inos)
}

/// Reads the whole directory through `fill` in replies of `size` bytes
/// with a first guess of `guess`, as the kernel would: each request
/// continues from the last cookie received. Returns names, and the inos
/// of entries the "kernel" received.
fn list_plus(fs: &RamFs, dir: u64, size: usize, guess: usize) -> (Vec<Vec<u8>>, Vec<u64>) {
    let fh = fs.opendir(dir, libc::O_RDONLY).unwrap();
    let (mut names, mut seen) = (Vec::new(), Vec::new());
    let mut offset = 0;
    loop {
        let mut used = 0;
        let mut batch = Vec::new();
        fill_dir_plus(fs, dir, fh, offset, guess, |e, attr| {
            assert_eq!(e.ino, attr.ino);
            let need = entry_size(DIRENTPLUS_HEADER, e.name.len());
            if used + need > size {
                return true;
            }
            used += need;
            batch.push(e.clone());
            false
        })
        .unwrap();
        if batch.is_empty() {
            break;
        }
        offset = batch.last().unwrap().offset;
        for e in batch {
            if !is_dot(&e.name) {
                seen.push(e.ino);
            }
            names.push(e.name);
        }
    }
    fs.releasedir(dir, fh).unwrap();
    (names, seen)
}

/// An inode's lookup count is observable through unlink: once its
/// links are gone it lives exactly as long as lookups remain.
fn alive(fs: &RamFs, ino: u64) -> bool {
    fs.getattr(ino).is_ok()
}

#[test]
fn readdirplus_forgets_entries_that_did_not_fit() {
    for (size, guess) in [
        (4096, 4096),
        (4096, 512),
        (1000, 4096),
        (20_000, 4096),
        (200, 100),
    ] {
        let (fs, dir, inos) = populated(300);
        let (names, seen) = list_plus(&fs, dir, size, guess);
        // Every name exactly once, `.` and `..` first.
        assert_eq!(names.len(), 302, "size {size} guess {guess}");
        assert_eq!(&names[..2], &[b".".to_vec(), b"..".to_vec()]);
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert_eq!(seen.len(), 300);
        // Unlink everything: each file now lives only by the lookup the
        // "kernel" holds; one forget each must free it, so none was
        // over- or under-counted.
        for e in fs
            .readdir(dir, fs.opendir(dir, 0).unwrap(), 2, 1000)
            .unwrap()
        {
            fs.unlink(dir, OsStr::from_bytes(&e.name)).unwrap();
        }
        for &ino in &inos {
            assert!(alive(&fs, ino), "ino {ino} lost its lookup (size {size})");
            fs.forget(ino, 1);
            assert!(
                !alive(&fs, ino),
                "ino {ino} kept a stray lookup (size {size})"
            );
        }
    }
}

#[test]
fn readdir_fills_and_continues_from_cookies() {
    let (fs, dir, _) = populated(500);
    let fh = fs.opendir(dir, 0).unwrap();
    for (size, guess) in [(4096, 4096), (4096, 256), (65536, 4096), (128, 4096)] {
        let mut offset = 0;
        let mut names = Vec::new();
        let mut ended = false;
        loop {
            let mut used = 0;
            let mut batch = Vec::new();
            let mut full = false;
            fill_dir(&fs, dir, fh, offset, guess, |e| {
                let need = entry_size(DIRENT_HEADER, e.name.len());
                if used + need > size {
                    full = true;
                    return true;
                }
                used += need;
                batch.push(e.clone());
                false
            })
            .unwrap();
            let Some(last) = batch.last() else { break };
            // A reply is full unless the directory ended there.
            assert!(
                !ended,
                "size {size}: a reply that was not full was not the last"
            );
            ended = !full;
            offset = last.offset;
            names.extend(batch.into_iter().map(|e| e.name));
        }
        assert_eq!(names.len(), 502);
        let unique: HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), 502);
    }
}

#[test]
fn readdir_errors_on_first_call_only() {
    let fs = RamFs::new();
    let err = fill_dir(&fs, ROOT_INO, 999, 0, 4096, |_| false).unwrap_err();
    assert_eq!(err.errno(), libc::EBADF);
    let err = fill_dir_plus(&fs, ROOT_INO, 999, 0, 4096, |_, _| false).unwrap_err();
    assert_eq!(err.errno(), libc::EBADF);
}

#[test]
fn budget_probes_past_the_guess_and_follows_entry_sizes() {
    let mut b = Budget::new(100, DIRENT_HEADER);
    assert_eq!(b.want(), 3);
    for _ in 0..3 {
        b.add(32);
    }
    assert_eq!(b.want(), 1); // 4 bytes left: probe, guess doubles
    assert_eq!(b.guess, 200);
    b.add(32);
    assert_eq!(b.want(), (200 - 128) / 32);
    let mut b = Budget::new(4096, DIRENT_HEADER);
    b.add(64);
    b.add(64);
    assert_eq!(b.want(), (4096 - 128) / 64);
}

#[test]
fn attr_conversion() {
    let fs = RamFs::new();
    let req = Request {
        uid: 7,
        gid: 8,
        pid: 9,
        umask: 0,
    };
    let a = fs
        .mknod(
            &req,
            ROOT_INO,
            OsStr::new("dev"),
            libc::S_IFCHR | 0o600,
            0x0501,
        )
        .unwrap();
    let f = file_attr(&a);
    assert_eq!(f.ino, INodeNo(a.ino));
    assert_eq!(f.kind, fuser::FileType::CharDevice);
    assert_eq!((f.uid, f.gid, f.perm, f.rdev), (7, 8, 0o600, 0x0501));
    assert_eq!(
        (f.blocks, f.blksize, f.crtime),
        (a.blocks, a.blksize, a.crtime)
    );
}
