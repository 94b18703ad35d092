//! `aegisfs mount --ram` through a real FUSE mount, as a tmpfs user would
//! see it: `statvfs` shows the size asked for, free space goes down as
//! files are written, a write past the size fails with ENOSPC (not EFBIG),
//! deleting a file gives its space back, bad options are refused with one
//! line before anything is mounted, and nothing is left at unmount — no
//! mount and no contents.
//!
//! There is no image, so no fsck at the end: each test instead checks
//! that the mount is gone and the daemon exited 0. Without /dev/fuse and
//! fusermount3 they say so and pass, as the other end-to-end suites do.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::*;

const MB: u64 = 1 << 20;

/// A `--ram` mount served by a `--foreground` daemon this test started.
/// Dropping it (also after a panic) unmounts and reaps the daemon.
struct RamMount {
    mnt: PathBuf,
    child: Option<Child>,
}

impl RamMount {
    /// Mount `--ram` on `mnt` with `-o options` and wait until the kernel
    /// lists it.
    fn new(mnt: &Path, options: &str) -> RamMount {
        let child = Command::new(BIN)
            .args(["mount", "--foreground", "--ram"])
            .arg(mnt)
            .args(["-o", options])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the mount daemon");
        let mut m = RamMount {
            mnt: mnt.to_path_buf(),
            child: Some(child),
        };
        let start = Instant::now();
        while !is_mounted(&m.mnt) {
            let child = m.child.as_mut().expect("running");
            if let Some(st) = child.try_wait().expect("daemon status") {
                m.child = None;
                panic!("mount daemon exited early: {st}");
            }
            assert!(start.elapsed() < Duration::from_secs(30), "mount timed out");
            std::thread::sleep(Duration::from_millis(20));
        }
        m
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Unmount: the daemon must exit 0 and nothing stay mounted.
    fn unmount(mut self) {
        if let Err(report) = unmount_with_retry(&self.mnt) {
            panic!("unmount failed: {report}");
        }
        let st = self.child.take().expect("mounted").wait().expect("wait");
        assert!(st.success(), "mount daemon exited with {st}");
        assert!(!is_mounted(&self.mnt), "still mounted after unmount");
    }
}

impl Drop for RamMount {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if is_mounted(&self.mnt) && unmount_with_retry(&self.mnt).is_err() {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .status();
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn statvfs(p: &Path) -> libc::statvfs {
    let c = cstr(p);
    // SAFETY: zeroed is a valid statvfs; `c` is a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st
}

/// Total and free bytes, per statvfs (what `df` shows).
fn space(mnt: &Path) -> (u64, u64) {
    let st = statvfs(mnt);
    (st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize)
}

/// A fresh, empty, canonical mount point in `dir`.
fn mountpoint(dir: &Path) -> PathBuf {
    let mnt = dir.canonicalize().unwrap().join("mnt");
    fs::create_dir(&mnt).unwrap();
    mnt
}

/// Write 1 MiB files `f0`, `f1` … until a write fails; return the error
/// and the bytes written.
fn fill(m: &RamMount) -> (std::io::Error, u64) {
    let mut written = 0u64;
    for i in 0..64 {
        let mut f = File::create(m.p(&format!("f{i}"))).unwrap();
        let data = noise(MB as usize, i);
        // write_all goes on after a short write, so the error is the one
        // of the first write that could not place a byte.
        for piece in data.chunks(64 << 10) {
            if let Err(e) = f.write_all(piece) {
                return (e, written);
            }
            written += piece.len() as u64;
        }
    }
    panic!("64 MiB written to an 8 MiB RAM mount");
}

/// Wait (bounded) until statvfs shows at least `want` free bytes: the
/// kernel tells the daemon an unlinked inode is unused (FORGET)
/// asynchronously, and only then are its bytes freed.
fn wait_free(mnt: &Path, want: u64) -> u64 {
    let start = Instant::now();
    loop {
        let free = space(mnt).1;
        if free >= want || start.elapsed() > Duration::from_secs(5) {
            return free;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ram_mount_has_a_size_limit_like_tmpfs() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = mountpoint(dir.path());
    let m = RamMount::new(&mnt, "size=8M");
    let (total, free0) = space(&mnt);
    assert_eq!(total, 8 * MB, "statvfs total");
    assert_eq!(free0, total, "a fresh RAM mount is empty");

    let (e, written) = fill(&m);
    assert_eq!(errno_of(e), libc::ENOSPC, "the error past the size limit");
    assert!(written > 7 * MB && written <= 8 * MB, "{written} bytes fit");
    let (_, free) = space(&mnt);
    assert!(free < free0 && free < MB, "free space {free} after filling");

    // A deleted file's space comes back, and can be written again.
    fs::remove_file(m.p("f0")).unwrap();
    assert!(wait_free(&mnt, free + MB) >= free + MB, "f0's MiB freed");
    let data = noise(MB as usize, 99);
    fs::write(m.p("again"), &data).unwrap();
    assert_eq!(fs::read(m.p("again")).unwrap(), data);
    m.unmount();
    assert_eq!(fs::read_dir(&mnt).unwrap().count(), 0, "nothing left");
}

#[test]
fn ram_mount_in_the_background_forgets_at_unmount() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = mountpoint(dir.path());
    for round in 0..2 {
        // The default: the command returns once the daemon has mounted.
        let out = run(&["mount", "--ram"], &mnt, "size=1M,mode=0700");
        assert!(out.status.success(), "mount: {out:?}");
        assert!(is_mounted(&mnt));
        let st = fs::metadata(&mnt).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&st.permissions()) & 0o7777,
            0o700
        );
        // The second mount starts empty: nothing outlived the first.
        assert!(
            !mnt.join("kept").exists(),
            "round {round}: contents survived"
        );
        fs::write(mnt.join("kept"), b"gone at unmount").unwrap();
        assert_eq!(space(&mnt).0, MB);
        if let Err(report) = unmount_with_retry(&mnt) {
            panic!("unmount failed: {report}");
        }
        wait_for_daemon_exit(&mnt);
        assert!(!is_mounted(&mnt));
    }
}

#[test]
fn ram_mount_refuses_a_bad_option_with_one_line() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = mountpoint(dir.path());
    for (opts, needle) in [
        ("size=abc", "size"),
        ("size=0", "size"),
        ("size=8M,bogus", "bogus"),
        ("nr_inodes=0", "nr_inodes"),
        ("mode=0999", "mode"),
        ("fuseblk", "fuseblk"),
    ] {
        for fg in [false, true] {
            let cmd: &[&str] = if fg {
                &["mount", "--foreground", "--ram"]
            } else {
                &["mount", "--ram"]
            };
            let out = run(cmd, &mnt, opts);
            let err = String::from_utf8_lossy(&out.stderr);
            let ctx = format!("-o {opts} (foreground {fg}): {out:?}");
            assert!(!out.status.success(), "{ctx}");
            assert_eq!(err.lines().count(), 1, "{ctx}");
            assert!(
                err.starts_with("aegisfs: ") && err.contains(needle),
                "{ctx}"
            );
            assert!(!is_mounted(&mnt), "{ctx}: mounted");
        }
    }
}

/// `aegisfs ARGS MNT -o OPTIONS`, waited for.
fn run(args: &[&str], mnt: &Path, options: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .arg(mnt)
        .args(["-o", options])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Wait (bounded) until no `aegisfs mount` daemon of `mnt` runs: a
/// background daemon is not our child, so look for it in /proc.
fn wait_for_daemon_exit(mnt: &Path) {
    let start = Instant::now();
    while daemon_running(mnt) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the daemon did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn daemon_running(mnt: &Path) -> bool {
    let want = format!("--ram\0{}\0", mnt.display());
    let Ok(procs) = fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        fs::read(p.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&want))
    })
}
