//! End-to-end tests: a `RamFs` mounted through the adapter, exercised with
//! std::fs and libc as any program would. Each test mounts its own
//! filesystem and unmounts it when its fixture drops, panics included.
//! They skip (with a message) only where /dev/fuse or fusermount3 is
//! missing.

mod common;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use aegis_fuse::{MountConfig, MountError};
use aegis_vfs::{FileSystem, RamFs, ROOT_INO};
use common::*;

fn raw(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[test]
fn files_write_read_append_excl_truncate() {
    let Some(m) = Mounted::new("files_write_read_append_excl_truncate") else {
        return;
    };
    let a = m.path("a");
    fs::write(&a, b"hello").unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"hello");

    // Bigger than one FUSE write request and not a multiple of a page.
    let big: Vec<u8> = (0..3_000_017u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(m.path("big"), &big).unwrap();
    assert_eq!(fs::read(m.path("big")).unwrap(), big);
    assert_eq!(fs::metadata(m.path("big")).unwrap().len(), big.len() as u64);

    // O_APPEND writes land at the end whatever the position.
    let mut f = OpenOptions::new().append(true).open(&a).unwrap();
    f.write_all(b" world").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"!").unwrap();
    drop(f);
    assert_eq!(fs::read(&a).unwrap(), b"hello world!");

    // O_CREAT|O_EXCL on an existing name.
    let e = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&a)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert_eq!(raw(&e), libc::EEXIST);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path("new"))
        .unwrap();

    // truncate down and up; the extension reads as zeroes.
    let f = OpenOptions::new().read(true).write(true).open(&a).unwrap();
    f.set_len(2).unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"he");
    f.set_len(10).unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"he\0\0\0\0\0\0\0\0");
    assert_eq!(f.metadata().unwrap().len(), 10);
    drop(f);

    // O_TRUNC on open.
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&a)
        .unwrap();
    assert_eq!(fs::metadata(&a).unwrap().len(), 0);

    // Missing file.
    assert_eq!(raw(&File::open(m.path("nope")).unwrap_err()), libc::ENOENT);
}

#[test]
fn unlinked_open_file_stays_usable() {
    let Some(m) = Mounted::new("unlinked_open_file_stays_usable") else {
        return;
    };
    let p = m.path("doomed");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all(b"still here").unwrap();
    fs::remove_file(&p).unwrap();
    assert!(!p.exists());
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    f.write_all(b", and more").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "still here, and more");
    // The name is free again while the old inode lives on.
    fs::write(&p, b"new").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"new");
    let ino = f.metadata().unwrap().ino();
    drop(f);
    // Once closed and forgotten by the kernel, the inode goes away.
    assert!(eventually(10, || m.fs.inner.getattr(ino).is_err()));
}

#[test]
fn big_directory_lists_every_name_once() {
    let Some(m) = Mounted::new("big_directory_lists_every_name_once") else {
        return;
    };
    let dir = m.path("big");
    fs::create_dir(&dir).unwrap();
    let names: Vec<String> = (0..2000)
        .map(|i| format!("entry-{i:04}-{}", "n".repeat(i % 97)))
        .collect();
    let mut inos = Vec::new();
    for n in &names {
        File::create(dir.join(n)).unwrap();
    }
    for n in &names {
        inos.push(fs::metadata(dir.join(n)).unwrap().ino());
    }

    let list = |dir: &std::path::Path| -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    for round in 0..2 {
        let seen = list(&dir);
        assert_eq!(seen.len(), names.len(), "round {round}");
        let set: HashSet<&String> = seen.iter().collect();
        assert_eq!(set.len(), seen.len(), "a name was listed twice");
        assert!(names.iter().all(|n| set.contains(n)));
    }
    // Each entry's type and inode come through readdir too.
    for e in fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        assert!(e.file_type().unwrap().is_file());
    }

    // Remove every other entry while a listing is half read: the listing
    // still returns each surviving name exactly once.
    let mut it = fs::read_dir(&dir).unwrap();
    let mut seen: Vec<String> = it
        .by_ref()
        .take(700)
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for n in names.iter().step_by(2) {
        fs::remove_file(dir.join(n)).unwrap();
    }
    seen.extend(it.map(|e| e.unwrap().file_name().into_string().unwrap()));
    let set: HashSet<&String> = seen.iter().collect();
    assert_eq!(set.len(), seen.len(), "a name was listed twice");
    for n in names.iter().skip(1).step_by(2) {
        assert!(set.contains(n), "{n} missing");
    }
    assert_eq!(list(&dir).len(), 1000);

    // Remove the rest. Each unlinked inode is evicted by the kernel, which
    // then forgets every lookup it held: all counts must come back to
    // exactly zero, never below.
    for n in names.iter().skip(1).step_by(2) {
        fs::remove_file(dir.join(n)).unwrap();
    }
    assert!(list(&dir).is_empty());
    fs::remove_dir(&dir).unwrap();
    let settled = eventually(10, || inos.iter().all(|&i| m.fs.lookups(i) == 0));
    assert!(
        !m.fs.over_forgotten.load(Ordering::SeqCst),
        "a lookup was forgotten twice"
    );
    let left: Vec<(u64, i64)> = inos
        .iter()
        .map(|&i| (i, m.fs.lookups(i)))
        .filter(|&(_, n)| n != 0)
        .take(5)
        .collect();
    assert!(settled, "lookups not returned by the kernel: {left:?}");
    // The kernel sends RELEASE for a closed file asynchronously, so the
    // last handle may still be on its way once the lookups are back.
    let freed = eventually(10, || inos.iter().all(|&i| m.fs.inner.getattr(i).is_err()));
    for &i in &inos {
        assert!(freed || m.fs.inner.getattr(i).is_err(), "inode {i} leaked");
    }
}

#[test]
fn rename_and_hard_links() {
    let Some(m) = Mounted::new("rename_and_hard_links") else {
        return;
    };
    fs::write(m.path("a"), b"A").unwrap();
    fs::write(m.path("b"), b"B").unwrap();
    fs::rename(m.path("a"), m.path("a2")).unwrap();
    assert!(!m.path("a").exists());
    assert_eq!(fs::read(m.path("a2")).unwrap(), b"A");
    // Over an existing file.
    fs::rename(m.path("a2"), m.path("b")).unwrap();
    assert_eq!(fs::read(m.path("b")).unwrap(), b"A");
    // A directory with contents, into another directory.
    fs::create_dir_all(m.path("d1/sub")).unwrap();
    fs::write(m.path("d1/sub/f"), b"deep").unwrap();
    fs::create_dir(m.path("d2")).unwrap();
    fs::rename(m.path("d1/sub"), m.path("d2/moved")).unwrap();
    assert_eq!(fs::read(m.path("d2/moved/f")).unwrap(), b"deep");
    assert_eq!(fs::metadata(m.path("d1")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(m.path("d2")).unwrap().nlink(), 3);
    // A directory into its own subtree.
    assert_eq!(
        raw(&fs::rename(m.path("d2"), m.path("d2/moved/x")).unwrap_err()),
        libc::EINVAL
    );

    // renameat2 flags.
    fs::write(m.path("x"), b"X").unwrap();
    fs::write(m.path("y"), b"Y").unwrap();
    let rename2 = |from: &str, to: &str, flags: u32| -> i32 {
        let (f, t) = (cstr(&m.path(from)), cstr(&m.path(to)));
        // SAFETY: valid NUL-terminated paths.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                flags,
            )
        };
        if r == 0 {
            0
        } else {
            errno()
        }
    };
    assert_eq!(rename2("x", "y", libc::RENAME_NOREPLACE), libc::EEXIST);
    assert_eq!(rename2("x", "y", libc::RENAME_EXCHANGE), 0);
    assert_eq!(fs::read(m.path("x")).unwrap(), b"Y");
    assert_eq!(fs::read(m.path("y")).unwrap(), b"X");
    assert_eq!(rename2("x", "z", libc::RENAME_NOREPLACE), 0);

    // Hard links share the inode and count.
    fs::hard_link(m.path("z"), m.path("z2")).unwrap();
    let (m1, m2) = (
        fs::metadata(m.path("z")).unwrap(),
        fs::metadata(m.path("z2")).unwrap(),
    );
    assert_eq!(m1.ino(), m2.ino());
    assert_eq!((m1.nlink(), m2.nlink()), (2, 2));
    fs::write(m.path("z2"), b"via z2").unwrap();
    assert_eq!(fs::read(m.path("z")).unwrap(), b"via z2");
    fs::remove_file(m.path("z")).unwrap();
    assert_eq!(fs::metadata(m.path("z2")).unwrap().nlink(), 1);
    assert_eq!(
        raw(&fs::hard_link(m.path("d1"), m.path("d1link")).unwrap_err()),
        libc::EPERM
    );
}

#[test]
fn symlinks() {
    let Some(m) = Mounted::new("symlinks") else {
        return;
    };
    fs::write(m.path("target"), b"pointed at").unwrap();
    std::os::unix::fs::symlink("target", m.path("link")).unwrap();
    std::os::unix::fs::symlink("/no/such/place", m.path("dangling")).unwrap();
    assert_eq!(
        fs::read_link(m.path("link")).unwrap().to_str(),
        Some("target")
    );
    assert_eq!(
        fs::read_link(m.path("dangling")).unwrap().to_str(),
        Some("/no/such/place")
    );
    let meta = fs::symlink_metadata(m.path("link")).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(meta.len(), "target".len() as u64);
    assert_eq!(fs::read(m.path("link")).unwrap(), b"pointed at");
    assert!(!m.path("dangling").exists());
    assert_eq!(
        raw(&fs::read_link(m.path("target")).unwrap_err()),
        libc::EINVAL
    );
}

#[test]
fn xattrs() {
    let Some(m) = Mounted::new("xattrs") else {
        return;
    };
    let p = m.path("x");
    fs::write(&p, b"").unwrap();
    let path = cstr(&p);
    let set = |name: &str, value: &[u8], flags: i32| -> i32 {
        let n = std::ffi::CString::new(name).unwrap();
        // SAFETY: valid path, name and value buffer.
        let r = unsafe {
            libc::setxattr(
                path.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        };
        if r == 0 {
            0
        } else {
            errno()
        }
    };
    let get = |name: &str, size: usize| -> Result<(isize, Vec<u8>), i32> {
        let n = std::ffi::CString::new(name).unwrap();
        let mut buf = vec![0u8; size];
        let ptr = if size == 0 {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        // SAFETY: buffer of `size` bytes (or null with size 0).
        let r = unsafe { libc::getxattr(path.as_ptr(), n.as_ptr(), ptr, size) };
        if r < 0 {
            Err(errno())
        } else {
            buf.truncate(if size == 0 { 0 } else { r as usize });
            Ok((r, buf))
        }
    };
    let list = |size: usize| -> Result<(isize, Vec<u8>), i32> {
        let mut buf = vec![0u8; size];
        let ptr = if size == 0 {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        // SAFETY: buffer of `size` bytes (or null with size 0).
        let r = unsafe { libc::listxattr(path.as_ptr(), ptr, size) };
        if r < 0 {
            Err(errno())
        } else {
            buf.truncate(if size == 0 { 0 } else { r as usize });
            Ok((r, buf))
        }
    };

    assert_eq!(set("user.color", b"blue", 0), 0);
    assert_eq!(set("user.empty", b"", 0), 0);
    assert_eq!(get("user.color", 0), Ok((4, vec![])));
    assert_eq!(get("user.color", 64), Ok((4, b"blue".to_vec())));
    assert_eq!(get("user.color", 2), Err(libc::ERANGE));
    assert_eq!(get("user.empty", 64), Ok((0, vec![])));
    assert_eq!(get("user.none", 64), Err(libc::ENODATA));
    assert_eq!(set("user.color", b"red", libc::XATTR_CREATE), libc::EEXIST);
    assert_eq!(set("user.none", b"x", libc::XATTR_REPLACE), libc::ENODATA);
    assert_eq!(set("user.color", b"red", libc::XATTR_REPLACE), 0);
    assert_eq!(get("user.color", 64).unwrap().1, b"red");
    assert_eq!(set("bogus.ns", b"x", 0), libc::EOPNOTSUPP);

    let expect = b"user.color\0user.empty\0".to_vec();
    assert_eq!(list(0), Ok((expect.len() as isize, vec![])));
    assert_eq!(list(256), Ok((expect.len() as isize, expect.clone())));
    assert_eq!(list(3), Err(libc::ERANGE));

    let n = std::ffi::CString::new("user.color").unwrap();
    // SAFETY: valid path and name.
    assert_eq!(unsafe { libc::removexattr(path.as_ptr(), n.as_ptr()) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::removexattr(path.as_ptr(), n.as_ptr()) }, -1);
    assert_eq!(errno(), libc::ENODATA);
    assert_eq!(list(256).unwrap().1, b"user.empty\0");
}

#[test]
fn directory_errors() {
    let Some(m) = Mounted::new("directory_errors") else {
        return;
    };
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/f"), b"x").unwrap();
    assert_eq!(
        raw(&fs::remove_dir(m.path("d")).unwrap_err()),
        libc::ENOTEMPTY
    );
    assert_eq!(
        raw(&fs::remove_file(m.path("d")).unwrap_err()),
        libc::EISDIR
    );
    assert_eq!(raw(&fs::create_dir(m.path("d")).unwrap_err()), libc::EEXIST);
    assert_eq!(
        raw(&fs::remove_dir(m.path("d/f")).unwrap_err()),
        libc::ENOTDIR
    );
    assert_eq!(
        raw(&fs::write(m.path("d/f/g"), b"").unwrap_err()),
        libc::ENOTDIR
    );
    let long = "l".repeat(256);
    assert_eq!(
        raw(&fs::write(m.path(&long), b"").unwrap_err()),
        libc::ENAMETOOLONG
    );
    fs::write(m.path(&"l".repeat(255)), b"").unwrap();
    fs::remove_file(m.path("d/f")).unwrap();
    fs::remove_dir(m.path("d")).unwrap();
    assert!(!m.path("d").exists());
}

#[test]
fn sparse_file_seek_data_and_hole() {
    let Some(m) = Mounted::new("sparse_file_seek_data_and_hole") else {
        return;
    };
    const MIB: u64 = 1 << 20;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("sparse"))
        .unwrap();
    f.write_all(&[b'a'; 4096]).unwrap();
    f.seek(SeekFrom::Start(MIB)).unwrap();
    f.write_all(&[b'b'; 4096]).unwrap();
    let size = MIB + 4096;
    assert_eq!(f.metadata().unwrap().len(), size);
    // Two 4 KiB chunks allocated, not a megabyte.
    assert!(
        f.metadata().unwrap().blocks() <= 64,
        "{} blocks",
        f.metadata().unwrap().blocks()
    );

    let fd = f.as_raw_fd();
    let seek = |off: i64, whence: i32| -> Result<i64, i32> {
        // SAFETY: fd is open for the whole closure's use.
        let r = unsafe { libc::lseek(fd, off, whence) };
        if r < 0 {
            Err(errno())
        } else {
            Ok(r)
        }
    };
    assert_eq!(seek(0, libc::SEEK_DATA), Ok(0));
    assert_eq!(seek(0, libc::SEEK_HOLE), Ok(4096));
    assert_eq!(seek(4096, libc::SEEK_DATA), Ok(MIB as i64));
    assert_eq!(seek(MIB as i64, libc::SEEK_HOLE), Ok(size as i64));
    assert_eq!(seek(size as i64, libc::SEEK_DATA), Err(libc::ENXIO));
    assert_eq!(seek(size as i64 + 10, libc::SEEK_HOLE), Err(libc::ENXIO));
    // Ordinary seeks are the kernel's.
    assert_eq!(seek(5, libc::SEEK_SET), Ok(5));
    assert_eq!(seek(5, libc::SEEK_CUR), Ok(10));
    assert_eq!(seek(-1, libc::SEEK_END), Ok(size as i64 - 1));

    let mut mid = vec![1u8; 8192];
    f.seek(SeekFrom::Start(MIB / 2)).unwrap();
    f.read_exact(&mut mid).unwrap();
    assert!(mid.iter().all(|&b| b == 0));
}

#[test]
fn fallocate_and_copy_file_range() {
    let Some(m) = Mounted::new("fallocate_and_copy_file_range") else {
        return;
    };
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("alloc"))
        .unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: valid fd.
    assert_eq!(unsafe { libc::fallocate(fd, 0, 0, 8192) }, 0);
    assert_eq!(f.metadata().unwrap().len(), 8192);
    // SAFETY: valid fd.
    assert_eq!(
        unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, 8192, 8192) },
        0
    );
    assert_eq!(f.metadata().unwrap().len(), 8192);
    f.write_all_at_start(&[7u8; 8192]);
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: valid fd.
    assert_eq!(unsafe { libc::fallocate(fd, punch, 0, 4096) }, 0);
    let data = fs::read(m.path("alloc")).unwrap();
    assert!(data[..4096].iter().all(|&b| b == 0));
    assert!(data[4096..].iter().all(|&b| b == 7));

    let src: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(m.path("src"), &src).unwrap();
    let fin = File::open(m.path("src")).unwrap();
    let fout = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.path("dst"))
        .unwrap();
    let (mut off_in, mut off_out) = (10i64, 0i64);
    // SAFETY: valid fds and offset pointers.
    let n = unsafe {
        libc::copy_file_range(
            fin.as_raw_fd(),
            &mut off_in,
            fout.as_raw_fd(),
            &mut off_out,
            200_000,
            0,
        )
    };
    assert_eq!(n, 100_000 - 10);
    assert_eq!((off_in, off_out), (100_000, 100_000 - 10));
    drop(fout);
    assert_eq!(fs::read(m.path("dst")).unwrap(), &src[10..]);
}

trait WriteAtStart {
    fn write_all_at_start(&self, data: &[u8]);
}

impl WriteAtStart for File {
    fn write_all_at_start(&self, data: &[u8]) {
        use std::os::unix::fs::FileExt;
        self.write_all_at(data, 0).unwrap();
    }
}

#[test]
fn attributes_and_statfs() {
    let Some(m) = Mounted::new("attributes_and_statfs") else {
        return;
    };
    let p = m.path("f");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&p)
        .unwrap();
    let meta = fs::metadata(&p).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640 & !current_umask());
    assert_eq!((meta.uid(), meta.gid()), (0, 0));

    fs::set_permissions(&p, fs::Permissions::from_mode(0o604)).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o604);
    std::os::unix::fs::chown(&p, Some(1234), Some(5678)).unwrap();
    let meta = fs::metadata(&p).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));

    // utimensat: explicit times come back exactly.
    let times = [
        libc::timespec {
            tv_sec: 1_000_000_000,
            tv_nsec: 123,
        },
        libc::timespec {
            tv_sec: 1_500_000_000,
            tv_nsec: 456_789,
        },
    ];
    let c = cstr(&p);
    // SAFETY: valid path and two timespecs.
    assert_eq!(
        unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) },
        0
    );
    let meta = fs::metadata(&p).unwrap();
    assert_eq!((meta.atime(), meta.atime_nsec()), (1_000_000_000, 123));
    assert_eq!((meta.mtime(), meta.mtime_nsec()), (1_500_000_000, 456_789));

    // statfs reports the filesystem's numbers.
    let before = statvfs(m.root());
    assert_eq!(before.f_bsize, 4096);
    assert_eq!(before.f_namemax, 255);
    assert_eq!(before.f_blocks, (4u64 << 30) / 4096);
    assert_eq!(before.f_files, 1 << 20);
    fs::write(m.path("mib"), vec![1u8; 1 << 20]).unwrap();
    let after = statvfs(m.root());
    assert!(
        before.f_bfree - after.f_bfree >= 256,
        "{} -> {}",
        before.f_bfree,
        after.f_bfree
    );
    assert!(after.f_ffree < before.f_ffree);
}

fn current_umask() -> u32 {
    // SAFETY: umask only swaps the process mask; it is put back at once.
    unsafe {
        let old = libc::umask(0o022);
        libc::umask(old);
        old
    }
}

fn statvfs(p: &std::path::Path) -> libc::statvfs {
    let c = cstr(p);
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st
}

#[test]
fn read_only_mount_refuses_writes() {
    let config = MountConfig {
        read_only: true,
        ..MountConfig::default()
    };
    let Some(m) = Mounted::with_config("read_only_mount_refuses_writes", &config) else {
        return;
    };
    assert_eq!(raw(&fs::write(m.path("f"), b"x").unwrap_err()), libc::EROFS);
    assert_eq!(raw(&fs::create_dir(m.path("d")).unwrap_err()), libc::EROFS);
    assert!(fs::read_dir(m.root()).unwrap().next().is_none());
}

#[test]
fn concurrent_clients() {
    let Some(m) = Mounted::new("concurrent_clients") else {
        return;
    };
    let root = m.root().to_path_buf();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let root = root.clone();
            std::thread::spawn(move || {
                let dir = root.join(format!("t{t}"));
                fs::create_dir(&dir).unwrap();
                for i in 0..100 {
                    let data = format!("thread {t} file {i}").repeat(i + 1);
                    fs::write(dir.join(i.to_string()), &data).unwrap();
                    assert_eq!(fs::read_to_string(dir.join(i.to_string())).unwrap(), data);
                }
                assert_eq!(fs::read_dir(&dir).unwrap().count(), 100);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn unmount_hands_the_filesystem_back() {
    let Some(mut m) = Mounted::new("unmount_hands_the_filesystem_back") else {
        return;
    };
    fs::write(m.path("kept"), b"across mounts").unwrap();
    let root = m.root().to_path_buf();
    m.unmount();
    assert!(!is_mounted(&root));
    // The session dropped its reference: the test holds the only one.
    assert_eq!(Arc::strong_count(&m.fs), 1);
    let attr = m.fs.inner.lookup(ROOT_INO, "kept".as_ref()).unwrap();
    assert_eq!(attr.size, 13);

    // Mounted again, the same filesystem shows the same file.
    let handle = aegis_fuse::spawn(m.fs.clone(), &root, &MountConfig::default()).unwrap();
    assert!(is_mounted(&root));
    assert_eq!(fs::read(root.join("kept")).unwrap(), b"across mounts");
    handle.unmount().unwrap();
    assert!(!is_mounted(&root));
}

#[test]
fn busy_unmount_detaches_and_waits_for_open_files() {
    let Some(mut m) = Mounted::new("busy_unmount_detaches_and_waits_for_open_files") else {
        return;
    };
    let root = m.root().to_path_buf();
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(root.join("open"))
        .unwrap();
    let handle = m.handle.take().unwrap();
    let unmounting = std::thread::spawn(move || handle.unmount());
    // The mount leaves the namespace at once...
    assert!(eventually(10, || !is_mounted(&root)));
    // ...while the open file keeps working.
    f.write_all(b"after detach").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "after detach");
    assert!(!unmounting.is_finished());
    drop(f);
    unmounting.join().unwrap().unwrap();
    let attr = m.fs.inner.lookup(ROOT_INO, "open".as_ref()).unwrap();
    assert_eq!(attr.size, 12);
}

#[test]
fn mount_point_is_checked() {
    // No FUSE needed: the checks come first.
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn FileSystem> = Arc::new(RamFs::new());
    let config = MountConfig::default();

    let missing = dir.path().join("missing");
    let e = aegis_fuse::spawn(fs.clone(), &missing, &config).unwrap_err();
    assert!(matches!(e, MountError::MountpointMissing(_)), "{e:?}");
    assert!(e.to_string().contains(&*missing.to_string_lossy()));
    assert!(e.to_string().contains("does not exist"));

    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let e = aegis_fuse::spawn(fs.clone(), &file, &config).unwrap_err();
    assert!(matches!(e, MountError::NotADirectory(_)), "{e:?}");
    assert!(e.to_string().contains(&*file.to_string_lossy()));

    let full = dir.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), b"").unwrap();
    let e = aegis_fuse::mount(fs.clone(), &full, &config).unwrap_err();
    assert!(matches!(e, MountError::NotEmpty(_)), "{e:?}");
    assert!(e.to_string().contains("not empty"));

    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    assert_eq!(
        aegis_fuse::check_mountpoint(&empty).unwrap(),
        empty.canonicalize().unwrap()
    );
}

/// ACL xattr bytes: version 2, then (tag, perm, id) entries.
fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

#[test]
fn acls_and_the_umask_through_the_kernel() {
    let Some(m) = Mounted::new("acls_and_the_umask_through_the_kernel") else {
        return;
    };
    let u = u32::MAX;
    // An access ACL sets the mode: the group bits show the mask.
    let f = m.path("f");
    fs::write(&f, b"x").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    let named = acl(&[
        (1, 6, u),
        (2, 6, 65534),
        (4, 0, u),
        (0x10, 6, u),
        (0x20, 0, u),
    ]);
    assert_eq!(
        aegis_testkit::fuse_mount::setxattr_raw(&f, "system.posix_acl_access", &named),
        0
    );
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o660);
    // The kernel leaves the umask to the filesystem: applied without a
    // default ACL, replaced by one.
    let d = m.path("shared");
    fs::create_dir(&d).unwrap();
    let default = acl(&[
        (1, 7, u),
        (2, 7, 65534),
        (4, 5, u),
        (0x10, 7, u),
        (0x20, 0, u),
    ]);
    assert_eq!(
        aegis_testkit::fuse_mount::setxattr_raw(&d, "system.posix_acl_default", &default),
        0
    );
    let create = |p: &std::path::Path| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(p)
            .unwrap();
        fs::metadata(p).unwrap().mode() & 0o7777
    };
    assert_eq!(create(&m.path("plain")), 0o666 & !current_umask());
    assert_eq!(create(&d.join("inherits")), 0o660);
    fs::create_dir(d.join("sub")).unwrap();
    let sub = fs::metadata(d.join("sub")).unwrap().mode() & 0o7777;
    assert_eq!(sub, 0o770);
}
