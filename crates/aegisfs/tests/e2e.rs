//! End-to-end tests through a real FUSE mount of an image, with std::fs and
//! libc calls, as a user would see AegisFS. Each test mounts with the
//! `aegisfs mount --foreground` daemon, unmounts (also on panic, from
//! `Drop`), and ends with `aegisfs fsck` exiting 0.
//!
//! They need /dev/fuse and fusermount3 (`apt-get install fuse3`); without
//! them they say so and pass, so a machine without FUSE can still run the
//! rest of the suite. CI installs fuse3, so there they run.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;

#[path = "e2e/acl.rs"]
mod acl;
#[path = "e2e/memory_bound.rs"]
mod memory_bound;
#[path = "e2e/record_size.rs"]
mod record_size;
#[path = "e2e/reflink.rs"]
mod reflink;

use common::*;

#[test]
fn posix_semantics_through_fuse() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("256M");
    // Rename over an existing file replaces it.
    fs::write(m.p("a"), b"first").unwrap();
    fs::write(m.p("b"), b"second").unwrap();
    fs::rename(m.p("a"), m.p("b")).unwrap();
    assert_eq!(fs::read(m.p("b")).unwrap(), b"first");
    assert!(!m.p("a").exists());
    // A directory over an empty directory; not over a non-empty one.
    fs::create_dir_all(m.p("d1/sub")).unwrap();
    fs::create_dir(m.p("d2")).unwrap();
    fs::rename(m.p("d1"), m.p("d2")).unwrap();
    assert!(m.p("d2/sub").is_dir());
    fs::create_dir(m.p("d3")).unwrap();
    assert_eq!(
        errno_of(fs::rename(m.p("d3"), m.p("d2")).unwrap_err()),
        libc::ENOTEMPTY
    );
    // Into its own subdirectory.
    assert_eq!(
        errno_of(fs::rename(m.p("d2"), m.p("d2/sub/x")).unwrap_err()),
        libc::EINVAL
    );
    // rmdir of a non-empty directory.
    assert_eq!(
        errno_of(fs::remove_dir(m.p("d2")).unwrap_err()),
        libc::ENOTEMPTY
    );
    // Link counts: files and directories.
    fs::hard_link(m.p("b"), m.p("d3/b2")).unwrap();
    assert_eq!(fs::metadata(m.p("b")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(m.p("d2")).unwrap().nlink(), 3);
    assert_eq!(
        fs::metadata(m.p("d3")).unwrap().ino(),
        fs::metadata(m.p("d3")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(m.p("d3/b2")).unwrap().ino(),
        fs::metadata(m.p("b")).unwrap().ino()
    );
    // An unlinked file stays readable and writable while open.
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.p("b"))
        .unwrap();
    fs::remove_file(m.p("b")).unwrap();
    fs::remove_file(m.p("d3/b2")).unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b" and more").unwrap();
    let mut s = String::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "first and more");
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    drop(f);
    // Symlink loops.
    std::os::unix::fs::symlink("loop2", m.p("loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", m.p("loop2")).unwrap();
    assert_eq!(errno_of(File::open(m.p("loop1")).unwrap_err()), libc::ELOOP);
    std::os::unix::fs::symlink("d2/sub", m.p("ln")).unwrap();
    assert_eq!(fs::read_link(m.p("ln")).unwrap(), Path::new("d2/sub"));
    assert!(m.p("ln").is_dir());
    // O_APPEND, O_EXCL, O_TRUNC.
    fs::write(m.p("app"), b"12").unwrap();
    let mut f = OpenOptions::new().append(true).open(m.p("app")).unwrap();
    f.write_all(b"34").unwrap();
    f.write_at(b"56", 0).unwrap();
    drop(f);
    assert_eq!(fs::read(m.p("app")).unwrap(), b"123456");
    let e = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.p("app"))
        .unwrap_err();
    assert_eq!(errno_of(e), libc::EEXIST);
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(m.p("app"))
        .unwrap();
    assert_eq!(fs::metadata(m.p("app")).unwrap().len(), 0);
    // Names and sizes past the limits.
    let long = "n".repeat(256);
    assert_eq!(
        errno_of(fs::write(m.p(&long), b"").unwrap_err()),
        libc::ENAMETOOLONG
    );
    fs::write(m.p(&"n".repeat(255)), b"ok").unwrap();
    let f = File::create(m.p("big")).unwrap();
    let e = f.write_at(b"x", i64::MAX as u64).unwrap_err();
    let code = e.raw_os_error();
    assert!(matches!(code, Some(libc::EFBIG | libc::EINVAL)), "{e}");
    drop(f);
    // xattrs.
    let path = cstr(&m.p("app"));
    let set = |name: &str, v: &[u8]| {
        let n = CString::new(name).unwrap();
        // SAFETY: valid C strings and buffer for the call's duration.
        let rc =
            unsafe { libc::setxattr(path.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
        if rc == 0 {
            0
        } else {
            std::io::Error::last_os_error().raw_os_error().unwrap()
        }
    };
    assert_eq!(set("user.color", b"blue"), 0);
    assert_eq!(set("user.big", &vec![7u8; 65536]), 0);
    assert_eq!(set("user.huge", &vec![7u8; 65537]), libc::E2BIG);
    assert_eq!(set("bogus.x", b"1"), libc::EOPNOTSUPP);
    let mut buf = vec![0u8; 70000];
    let n = CString::new("user.big").unwrap();
    // SAFETY: as above.
    let got = unsafe {
        libc::getxattr(
            path.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(got, 65536);
    assert!(buf[..65536].iter().all(|&b| b == 7));
    // SAFETY: as above.
    let len = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(&buf[..len as usize], b"user.big\0user.color\0");
    // Everything is still there after a remount.
    m.remount();
    assert_eq!(
        fs::read(m.p("d2/../b")).map_err(errno_of).unwrap_err(),
        libc::ENOENT
    );
    assert!(m.p("d2/sub").is_dir());
    assert_eq!(fs::read_link(m.p("ln")).unwrap(), Path::new("d2/sub"));
    // SAFETY: as above.
    let got = unsafe {
        libc::getxattr(
            path.as_ptr(),
            n.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert_eq!(got, 65536);
    assert_eq!(fs::read(m.p(&"n".repeat(255))).unwrap(), b"ok");
    m.finish();
}

#[test]
fn sparse_files_seek_and_a_3_gib_file_with_holes() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("1G");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(m.p("sparse"))
        .unwrap();
    let mib = vec![0xabu8; 1 << 20];
    let size = 3u64 << 30;
    f.write_all_at(&mib, 0).unwrap();
    f.write_all_at(&mib, 1 << 30).unwrap();
    f.write_all_at(&mib, size - (1 << 20)).unwrap();
    assert_eq!(f.metadata().unwrap().len(), size);
    // Far less allocated than the size: holes cost nothing.
    assert!(f.metadata().unwrap().blocks() * 512 < 64 << 20);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: lseek on an open descriptor.
    let seek = |off: i64, whence| unsafe { libc::lseek(fd, off, whence) };
    assert_eq!(seek(0, libc::SEEK_DATA), 0);
    assert_eq!(seek(0, libc::SEEK_HOLE), 1 << 20);
    assert_eq!(seek(2 << 20, libc::SEEK_DATA), 1 << 30);
    assert_eq!(seek((1 << 30) + 5, libc::SEEK_HOLE), (1 << 30) + (1 << 20));
    assert_eq!(seek(size as i64 - 1, libc::SEEK_HOLE), size as i64);
    // SAFETY: as above.
    assert_eq!(seek(size as i64, libc::SEEK_DATA), -1);
    let mut b = vec![1u8; 4096];
    f.read_exact_at(&mut b, 5 << 20).unwrap();
    assert!(b.iter().all(|&x| x == 0), "a hole reads as zeroes");
    drop(f);
    m.remount();
    let f = File::open(m.p("sparse")).unwrap();
    assert_eq!(f.metadata().unwrap().len(), size);
    let mut b = vec![0u8; 1 << 20];
    f.read_exact_at(&mut b, size - (1 << 20)).unwrap();
    assert_eq!(b, mib);
    f.read_exact_at(&mut b, 1 << 30).unwrap();
    assert_eq!(b, mib);
    drop(f);
    // Punching a hole gives the space back and reads as zeroes.
    let f = OpenOptions::new().write(true).open(m.p("sparse")).unwrap();
    // SAFETY: fallocate on an open descriptor.
    let rc = unsafe {
        libc::fallocate(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            1 << 20,
        )
    };
    assert_eq!(rc, 0);
    f.set_len(1 << 20).unwrap();
    drop(f);
    assert_eq!(fs::read(m.p("sparse")).unwrap(), vec![0u8; 1 << 20]);
    m.finish();
}

#[test]
fn mmap_writes_survive_msync_and_remount() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("128M");
    let len = 256 * 1024;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(m.p("mapped"))
        .unwrap();
    f.set_len(len as u64).unwrap();
    // SAFETY: a shared mapping of a file we keep open; unmapped below.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let s = std::slice::from_raw_parts_mut(p as *mut u8, len);
        for (i, b) in s.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        assert_eq!(libc::msync(p, len, libc::MS_SYNC), 0);
        assert_eq!(libc::munmap(p, len), 0);
    }
    drop(f);
    m.remount();
    let d = fs::read(m.p("mapped")).unwrap();
    assert_eq!(d.len(), len);
    assert!(d.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    m.finish();
}

#[test]
fn a_hundred_thousand_files_in_one_directory() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("1G");
    let dir = m.p("many");
    fs::create_dir(&dir).unwrap();
    let n = 100_000;
    for i in 0..n {
        File::create(dir.join(format!("file-{i:06}"))).unwrap();
    }
    let count = |d: &Path| fs::read_dir(d).unwrap().count();
    assert_eq!(count(&dir), n);
    m.remount();
    let names: std::collections::HashSet<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), n);
    assert!(fs::metadata(dir.join("file-099999")).is_ok());
    m.finish();
}

#[test]
fn readdir_while_another_thread_creates() {
    if !fuse_available() {
        return;
    }
    let m = Mount::new("256M");
    let dir = m.p("busy");
    fs::create_dir(&dir).unwrap();
    for i in 0..500 {
        File::create(dir.join(format!("old-{i}"))).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (dir, stop) = (dir.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 20_000 {
                File::create(dir.join(format!("new-{i}"))).unwrap();
                i += 1;
            }
            i
        })
    };
    for _ in 0..20 {
        let mut seen = std::collections::HashSet::new();
        for e in fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name();
            assert!(seen.insert(name.clone()), "{name:?} listed twice");
        }
        for i in 0..500 {
            assert!(
                seen.contains(std::ffi::OsStr::new(&format!("old-{i}"))),
                "old-{i} missing"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let made = writer.join().unwrap();
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 500 + made);
    m.finish();
}

#[test]
fn permissions_for_an_unprivileged_user() {
    if !fuse_available() {
        return;
    }
    let m = Mount::new("128M");
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(m.p("secret"), b"root only").unwrap();
    fs::set_permissions(m.p("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(m.p("public"), b"everyone").unwrap();
    fs::set_permissions(m.p("public"), fs::Permissions::from_mode(0o644)).unwrap();
    // The temporary directory above the mount must be traversable.
    for a in m.mnt.ancestors().skip(1).take(2) {
        let mode = fs::metadata(a).unwrap().permissions().mode();
        fs::set_permissions(a, fs::Permissions::from_mode(mode | 0o711)).unwrap();
    }
    let out = as_nobody(&format!("cat {}", m.p("secret").display()));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    let out = as_nobody(&format!("cat {}", m.p("public").display()));
    assert_eq!(out.stdout, b"everyone");
    let out = as_nobody(&format!("echo x >> {}", m.p("public").display()));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    let out = as_nobody(&format!("touch {}", m.p("newfile").display()));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{out:?}"
    );
    assert!(!m.p("newfile").exists());
    m.finish();
}

#[test]
fn data_survives_unmount_and_kill_after_sync() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("256M");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::create_dir(m.p("keep")).unwrap();
    fs::write(m.p("keep/big"), &data).unwrap();
    fs::write(m.p("keep/small"), b"tiny").unwrap();
    m.remount();
    assert_eq!(fs::read(m.p("keep/big")).unwrap(), data);
    // Written, fsynced, `sync` run, then the daemon is killed with -9.
    let mut f = File::create(m.p("keep/synced")).unwrap();
    f.write_all(&data[..100_000]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let d = File::open(m.p("keep")).unwrap();
    d.sync_all().unwrap();
    drop(d);
    assert!(Command::new("sync").status().unwrap().success());
    m.kill();
    m.mount();
    assert_eq!(fs::read(m.p("keep/synced")).unwrap(), &data[..100_000]);
    assert_eq!(fs::read(m.p("keep/big")).unwrap(), data);
    assert_eq!(fs::read(m.p("keep/small")).unwrap(), b"tiny");

    // Through the intent log: the first fsync of a mount starts the chain
    // (a commit), the next ones only write the log. Then kill -9.
    let mut f = File::create(m.p("keep/log1")).unwrap();
    f.write_all(b"first").unwrap();
    f.sync_all().unwrap();
    let mut g = OpenOptions::new()
        .append(true)
        .create(true)
        .open(m.p("keep/log2"))
        .unwrap();
    for i in 0..50u32 {
        g.write_all(&i.to_le_bytes()).unwrap();
        g.sync_data().unwrap();
    }
    drop(g);
    fs::rename(m.p("keep/log1"), m.p("keep/renamed")).unwrap();
    File::open(m.p("keep")).unwrap().sync_all().unwrap();
    m.kill();
    // A writable mount that must replay refuses norecovery...
    let out = Command::new(BIN)
        .args(["mount", "--foreground", "-o", "norecovery"])
        .arg(&m.img)
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("needs 'ro'"),
        "{out:?}"
    );
    // ...a read-only one with norecovery shows the last commit...
    m.mount_with("ro,norecovery");
    assert!(m.p("keep/synced").exists());
    m.unmount();
    // ...and a normal mount replays the log.
    m.mount();
    let want: Vec<u8> = (0..50u32).flat_map(|i| i.to_le_bytes()).collect();
    assert_eq!(fs::read(m.p("keep/log2")).unwrap(), want);
    assert_eq!(fs::read(m.p("keep/renamed")).unwrap(), b"first");
    assert!(!m.p("keep/log1").exists());
    m.finish();
}

#[test]
fn bad_mounts_are_refused_with_one_line() {
    if !fuse_available() {
        return;
    }
    let m = Mount::new("64M");
    let dir = m.dir.path();
    let run = |args: &[&std::ffi::OsStr]| Command::new(BIN).args(args).output().unwrap();
    let check = |out: std::process::Output, needle: &str| {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{needle}: succeeded");
        assert_eq!(err.lines().count(), 1, "{needle}: {err}");
        assert!(err.contains(needle), "wanted '{needle}' in: {err}");
    };
    let empty = dir.join("empty");
    fs::create_dir(&empty).unwrap();
    // Second mount of a mounted image.
    check(
        run(&["mount".as_ref(), m.img.as_os_str(), empty.as_os_str()]),
        "in use",
    );
    // Unknown option.
    check(
        run(&[
            "mount".as_ref(),
            m.img.as_os_str(),
            empty.as_os_str(),
            "-o".as_ref(),
            "bogus".as_ref(),
        ]),
        "bogus",
    );
    // Mount point missing / not empty.
    check(
        run(&[
            "mount".as_ref(),
            m.img.as_os_str(),
            dir.join("nope").as_os_str(),
        ]),
        "does not exist",
    );
    fs::write(
        dir.join("full/x")
            .parent()
            .map(|p| {
                fs::create_dir_all(p).unwrap();
                p.join("x")
            })
            .unwrap(),
        b"",
    )
    .unwrap();
    check(
        run(&[
            "mount".as_ref(),
            m.img.as_os_str(),
            dir.join("full").as_os_str(),
        ]),
        "not empty",
    );
    // Not an AegisFS image: untouched afterwards.
    let junk = dir.join("junk.img");
    fs::write(&junk, vec![0x5au8; 16 << 20]).unwrap();
    check(
        run(&["mount".as_ref(), junk.as_os_str(), empty.as_os_str()]),
        "not an AegisFS",
    );
    assert!(fs::read(&junk).unwrap().iter().all(|&b| b == 0x5a));
    assert!(!is_mounted(&empty));
    m.finish();
}

#[test]
fn special_files_atime_modes_sigterm_and_the_mount_helper() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("64M");
    // FIFOs, sockets and device nodes.
    let mk = |name: &str, mode: u32, dev: u64| {
        let p = cstr(&m.p(name));
        // SAFETY: a valid C string.
        let rc = unsafe { libc::mknod(p.as_ptr(), mode, dev) };
        assert_eq!(rc, 0, "mknod {name}: {}", std::io::Error::last_os_error());
    };
    mk("fifo", libc::S_IFIFO | 0o644, 0);
    mk("sock", libc::S_IFSOCK | 0o600, 0);
    mk("null2", libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    mk("loop9", libc::S_IFBLK | 0o660, libc::makedev(7, 9));
    use std::os::unix::fs::FileTypeExt;
    m.remount();
    assert!(fs::metadata(m.p("fifo")).unwrap().file_type().is_fifo());
    assert!(fs::metadata(m.p("sock")).unwrap().file_type().is_socket());
    let c = fs::metadata(m.p("null2")).unwrap();
    assert!(c.file_type().is_char_device());
    assert_eq!(c.rdev(), libc::makedev(1, 3));
    assert_eq!(
        fs::metadata(m.p("loop9")).unwrap().rdev(),
        libc::makedev(7, 9)
    );

    // atime: strictatime updates on every read, noatime never.
    fs::write(m.p("t"), b"x").unwrap();
    let atime = |m: &Mount| {
        fs::metadata(m.p("t")).unwrap().atime_nsec()
            + fs::metadata(m.p("t")).unwrap().atime() * 1_000_000_000
    };
    m.unmount();
    m.mount_with("strictatime");
    let a0 = atime(&m);
    std::thread::sleep(Duration::from_millis(20));
    let mut f = File::open(m.p("t")).unwrap();
    f.read_exact(&mut [0u8; 1]).unwrap();
    drop(f);
    // Attributes are cached for a second by the kernel.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(atime(&m) > a0, "strictatime: a read updates atime");
    m.unmount();
    m.mount_with("noatime");
    let a1 = atime(&m);
    std::thread::sleep(Duration::from_millis(20));
    fs::read(m.p("t")).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(atime(&m), a1, "noatime: reads leave atime alone");

    // SIGTERM unmounts cleanly: exit 0, the data committed.
    fs::write(m.p("after-term"), b"kept").unwrap();
    let child = m.take_child().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = {
        let mut c = child;
        c.wait().unwrap()
    };
    assert!(st.success(), "daemon after SIGTERM: {st}");
    assert!(!is_mounted(&m.mnt));

    // The mount(8) helper: called as mount.fuse.aegisfs with mount(8)'s
    // arguments (fstab options it must drop included), it mounts in the
    // background and returns.
    let helper = m.dir.path().join("mount.fuse.aegisfs");
    std::os::unix::fs::symlink(BIN, &helper).unwrap();
    let out = Command::new(&helper)
        .arg(&m.img)
        .arg(&m.mnt)
        .args(["-o", "rw,nofail,noauto,_netdev,allow_other"])
        .output()
        .unwrap();
    assert!(out.status.success(), "helper: {out:?}");
    assert!(is_mounted(&m.mnt));
    assert_eq!(fs::read(m.p("after-term")).unwrap(), b"kept");
    if let Err(report) = unmount_with_retry(&m.mnt) {
        panic!("unmount of the helper's mount failed: {report}");
    }
    // The daemon is not our child: wait for the image lock to be free.
    wait_for_lock_free(&m.img);
    m.fsck();
}

#[test]
fn logging_policy_set_and_get_through_the_cli() {
    if !fuse_available() {
        return;
    }
    let m = Mount::new("64M");
    let cli = |args: &[&std::ffi::OsStr]| Command::new(BIN).args(args).output().unwrap();
    fs::create_dir(m.p("db")).unwrap();
    let db = m.p("db");
    let out = cli(&["get".as_ref(), "logging".as_ref(), db.as_os_str()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}: logging=full", db.display())
    );
    let out = cli(&["set".as_ref(), "logging=metadata".as_ref(), db.as_os_str()]);
    assert!(out.status.success(), "{out:?}");
    // New entries inherit it.
    fs::write(m.p("db/table"), b"rows").unwrap();
    let t = m.p("db/table");
    let out = cli(&["get".as_ref(), "logging".as_ref(), t.as_os_str()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{}: logging=metadata", t.display())
    );
    // Bad input: one line, non-zero.
    for (args, needle) in [
        (vec!["set", "logging=fast"], "not full, metadata or none"),
        (vec!["set", "compression=lz4"], "unknown property"),
        (vec!["set", "logging"], "PROPERTY=VALUE"),
    ] {
        let mut a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
        a.push(db.as_os_str());
        let out = cli(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.lines().count() == 1 && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    // Not on AegisFS.
    let out = cli(&["get".as_ref(), "logging".as_ref(), "/tmp".as_ref()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not on a mounted AegisFS"),
        "{out:?}"
    );
    m.finish();
}

/// The mount options of the FUSE caches (issue 12): with `writeback_cache`
/// the kernel keeps written pages and owns size and mtime until it writes
/// them back, so this checks what must hold all the same: stat right after
/// a write shows the new size and mtime; write-only and `O_APPEND` handles
/// work (the adapter opens them read-write and without `O_APPEND` for the
/// kernel's page fills and its own end-of-file placement); what `fsync`
/// returned for survives a `kill -9` of the daemon (log replay), and what
/// was closed survives an unmount. The timeouts are accepted, bad values
/// refused with the option's name.
#[test]
fn writeback_cache_keeps_size_mtime_and_durability() {
    if !fuse_available() {
        return;
    }
    let opts = "allow_other,writeback_cache,attr_timeout=2,entry_timeout=2";
    let mut m = Mount::new("256M");
    m.unmount();
    m.mount_with(opts);
    let mtime = |p: &Path| {
        let md = fs::metadata(p).unwrap();
        (md.mtime(), md.mtime_nsec())
    };

    // Write-only handle: size and mtime right after the writes, before
    // any flush, and a partial-page overwrite (the kernel reads the page
    // through this handle first).
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.p("a"))
        .unwrap();
    let t0 = mtime(&m.p("a"));
    std::thread::sleep(Duration::from_millis(20));
    let mut want: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    f.write_all(&want).unwrap();
    let md = fs::metadata(m.p("a")).unwrap();
    assert_eq!(md.len(), 10_000);
    assert!((md.mtime(), md.mtime_nsec()) > t0, "mtime did not move");
    f.write_at(b"xy", 4097).unwrap();
    want[4097..4099].copy_from_slice(b"xy");
    assert_eq!(fs::read(m.p("a")).unwrap(), want);

    // O_APPEND lands at the end the kernel knows, also past unflushed data.
    let mut g = OpenOptions::new().append(true).open(m.p("a")).unwrap();
    g.write_all(b"tail").unwrap();
    want.extend_from_slice(b"tail");
    assert_eq!(fs::metadata(m.p("a")).unwrap().len(), want.len() as u64);
    assert_eq!(fs::read(m.p("a")).unwrap(), want);
    // Truncation while pages are dirty, then growth by a write past the end.
    f.set_len(5000).unwrap();
    want.truncate(5000);
    f.write_at(b"end", 9000).unwrap();
    want.resize(9000, 0);
    want.extend_from_slice(b"end");
    assert_eq!(fs::metadata(m.p("a")).unwrap().len(), 9003);
    assert_eq!(fs::read(m.p("a")).unwrap(), want);

    // fsync: durable across a kill -9 of the daemon, size and mtime too.
    f.sync_all().unwrap();
    let synced = mtime(&m.p("a"));
    drop(f);
    drop(g);
    m.kill();
    m.mount_with(opts);
    assert_eq!(fs::read(m.p("a")).unwrap(), want);
    assert_eq!(fs::metadata(m.p("a")).unwrap().len(), 9003);
    // The known gap, one reason the cache is off by default: what the
    // fsync made durable is the filesystem's mtime, the time the kernel's
    // WRITE requests arrived (at the fsync); the kernel's own mtime, which
    // stat showed, reaches the filesystem later, with the SETATTR of its
    // inode writeback (at close). So after a crash mtime reads a few
    // milliseconds late. Without the writeback cache the two are equal.
    let (got, want_t) = (mtime(&m.p("a")), synced);
    let ns = |t: (i64, i64)| t.0 as i128 * 1_000_000_000 + t.1 as i128;
    let late = ns(got) - ns(want_t);
    assert!(
        (0..1_000_000_000).contains(&late),
        "mtime after fsync and a crash: {got:?}, stat showed {want_t:?}"
    );

    // close: durable across an unmount, with size and mtime as stat showed.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    fs::write(m.p("b"), &big).unwrap();
    let mut h = OpenOptions::new().append(true).open(m.p("b")).unwrap();
    h.write_all(b"!").unwrap();
    drop(h);
    let shown = (fs::metadata(m.p("b")).unwrap().len(), mtime(&m.p("b")));
    assert_eq!(shown.0, 3_000_001);
    m.unmount();
    m.mount();
    let got = fs::read(m.p("b")).unwrap();
    assert_eq!(got.len(), 3_000_001);
    assert!(got[..3_000_000] == big[..] && got[3_000_000] == b'!');
    assert_eq!((got.len() as u64, mtime(&m.p("b"))), shown);
    m.unmount();

    // Bad values: refused, naming the option, nothing mounted.
    for (bad, name) in [
        ("attr_timeout=soon", "attr_timeout"),
        ("entry_timeout=-1", "entry_timeout"),
        ("writeback_cache=1", "writeback_cache"),
    ] {
        let out = Command::new(BIN)
            .args(["mount", "--foreground", "-o", bad])
            .arg(&m.img)
            .arg(&m.mnt)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(name), "{bad}: {err}");
        assert!(!is_mounted(&m.mnt));
    }
    m.mount();
    m.finish();
}
