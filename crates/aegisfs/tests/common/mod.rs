//! The end-to-end suites' view of the one mount fixture
//! (`aegis_testkit::fuse_mount::ImageMount`): a fresh image of this crate's
//! `aegisfs` binary in a tempdir the fixture owns, mounted by the `aegisfs
//! mount --foreground` daemon, unmounted on `finish` (and on panic, from
//! `Drop`) with a bounded retry while the kernel answers EBUSY, then
//! `aegisfs fsck` exiting 0. Plus small helpers the suites share.
//!
//! Each suite uses a part of it, so unused items are allowed here.
#![allow(dead_code)]

use std::ffi::CString;
use std::ops::{Deref, DerefMut};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[allow(unused_imports)]
pub use aegis_testkit::fuse_mount::{fuse_available, is_mounted, unmount_with_retry, ImageMount};
#[allow(unused_imports)]
pub use aegis_testkit::noise;

pub const BIN: &str = env!("CARGO_BIN_EXE_aegisfs");

/// [`ImageMount`] in a tempdir of its own. Fields drop in order: the mount
/// goes before its directory.
pub struct Mount {
    inner: ImageMount,
    /// Holds the image and the mount point; removed on drop.
    pub dir: tempfile::TempDir,
}

impl Mount {
    /// A fresh image of `size` mounted on an empty directory.
    pub fn new(size: &str) -> Mount {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = ImageMount::new(BIN, dir.path(), size);
        Mount { inner, dir }
    }

    /// Unmount, fsck, done.
    pub fn finish(self) {
        let Mount { inner, dir } = self;
        inner.finish();
        drop(dir);
    }
}

impl Deref for Mount {
    type Target = ImageMount;
    fn deref(&self) -> &ImageMount {
        &self.inner
    }
}

impl DerefMut for Mount {
    fn deref_mut(&mut self) -> &mut ImageMount {
        &mut self.inner
    }
}

/// Wait until no process holds the image lock: a daemon that is not our
/// child has exited.
pub fn wait_for_lock_free(img: &Path) {
    let start = std::time::Instant::now();
    loop {
        let f = std::fs::File::open(img).unwrap();
        // SAFETY: flock on a descriptor `f` keeps open.
        let rc = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if rc == 0 {
            return;
        }
        assert!(start.elapsed().as_secs() < 60, "the daemon did not exit");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn errno_of(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Run this crate's `aegisfs` with `args` (no log filter from the caller).
pub fn aegisfs(args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(args)
        .env_remove("AEGISFS_LOG")
        .output()
        .expect("run aegisfs")
}

/// `aegisfs args`, which must succeed; its stdout.
#[track_caller]
pub fn ok(args: &[&str]) -> String {
    let out = aegisfs(args);
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `aegisfs args`, which must fail with one line saying `needle` and
/// leave `img` byte for byte as it was.
#[track_caller]
pub fn refused(args: &[&str], needle: &str, img: &Path) {
    let before = std::fs::read(img).unwrap();
    let out = aegisfs(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "{args:?} should fail: {out:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(
        stderr.to_lowercase().contains(needle),
        "{args:?}: {stderr:?} should say {needle:?}"
    );
    assert!(
        std::fs::read(img).unwrap() == before,
        "{args:?} changed the image"
    );
}

/// Run `script` with sh as nobody (uid and gid 65534).
pub fn as_nobody(script: &str) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run sh as nobody")
}
