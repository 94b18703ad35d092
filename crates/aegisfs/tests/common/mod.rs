//! The mount fixture of the end-to-end suites: a fresh image mounted by
//! the `aegisfs mount --foreground` daemon on an empty directory, unmounted
//! on `finish` (and on panic, from `Drop`) with a bounded retry while the
//! kernel answers EBUSY, then `aegisfs fsck` exiting 0.
//!
//! Each suite uses a part of it, so unused items are allowed here.
#![allow(dead_code)]

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use aegis_testkit::fuse_mount::unmount_with_retry;

pub const BIN: &str = env!("CARGO_BIN_EXE_aegisfs");

pub fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists()
        && Command::new("fusermount3")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if !ok {
        eprintln!("skipping: /dev/fuse or fusermount3 missing (apt-get install fuse3)");
    }
    ok
}

pub fn is_mounted(mnt: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = mnt.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

pub struct Mount {
    /// Holds the image and the mount point; removed on drop.
    pub dir: tempfile::TempDir,
    pub img: PathBuf,
    pub mnt: PathBuf,
    pub child: Option<Child>,
}

impl Mount {
    /// A fresh image of `size` mounted on an empty directory.
    pub fn new(size: &str) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("test.img");
        // Canonical, as the kernel and /proc name it.
        let mnt = dir.path().canonicalize().expect("tempdir path").join("mnt");
        fs::create_dir(&mnt).unwrap();
        let out = Command::new(BIN)
            .args(["mkfs", "--size", size])
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success(), "mkfs: {out:?}");
        let mut m = Mount {
            dir,
            img,
            mnt,
            child: None,
        };
        m.mount();
        m
    }

    pub fn mount(&mut self) {
        self.mount_with("allow_other");
    }

    pub fn mount_with(&mut self, options: &str) {
        assert!(self.child.is_none());
        let child = Command::new(BIN)
            .args(["mount", "--foreground", "-o", options])
            .arg(&self.img)
            .arg(&self.mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the mount daemon");
        self.child = Some(child);
        let start = Instant::now();
        while !is_mounted(&self.mnt) {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mount daemon exited early: {st}");
            }
            assert!(start.elapsed() < Duration::from_secs(30), "mount timed out");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Clean unmount: the daemon must commit and exit 0.
    pub fn unmount(&mut self) {
        if let Err(report) = unmount_with_retry(&self.mnt) {
            panic!("unmount failed: {report}");
        }
        let st = self.child.take().unwrap().wait().unwrap();
        assert!(st.success(), "mount daemon exited with {st}");
    }

    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// `kill -9` of the daemon, then clear the dead mount.
    pub fn kill(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mnt)
            .status();
        let start = Instant::now();
        while is_mounted(&self.mnt) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn fsck(&self) {
        let out = Command::new(BIN)
            .arg("fsck")
            .arg(&self.img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fsck: {}",
            String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Unmount, fsck, done.
    pub fn finish(mut self) {
        self.unmount();
        self.fsck();
    }
}

impl Drop for Mount {
    /// After a panic: unmount (retrying while busy), else detach lazily so
    /// nothing is left mounted; then the daemon must go, killed if need be.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if is_mounted(&self.mnt) {
                if let Err(report) = unmount_with_retry(&self.mnt) {
                    eprintln!("teardown: {report}\nteardown: detaching it lazily");
                    let _ = Command::new("fusermount3")
                        .arg("-uz")
                        .arg(&self.mnt)
                        .status();
                }
            }
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if c.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn errno_of(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// `len` bytes of xorshift noise from `seed`: data that does not compress.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
