//! Shared helpers of the mount tests: the skip check, a mounted `RamFs`
//! fixture that unmounts on drop (panics included), and a `FileSystem`
//! wrapper that audits lookup counts.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_fuse::{MountConfig, MountHandle};
use aegis_vfs::*;
use parking_lot::Mutex;
use tempfile::TempDir;

/// Why FUSE tests cannot run here, if they cannot: the only reasons a
/// test may skip instead of fail.
pub fn fuse_unavailable() -> Option<&'static str> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing");
    }
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
        .unwrap_or(false);
    if !in_path {
        return Some("fusermount3 is not installed (apt-get install fuse3)");
    }
    None
}

/// A `RamFs` mounted on a fresh temporary directory. Its drop unmounts
/// first (see `teardown`), then the fields drop and the directory goes.
pub struct Mounted {
    pub handle: Option<MountHandle>,
    pub fs: Arc<Counting>,
    pub dir: TempDir,
}

impl Mounted {
    /// Mount a new `RamFs`, or print why not and return `None`.
    pub fn new(test: &str) -> Option<Mounted> {
        Mounted::with_config(test, &MountConfig::default())
    }

    pub fn with_config(test: &str, config: &MountConfig) -> Option<Mounted> {
        if let Some(why) = fuse_unavailable() {
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
        let fs = Arc::new(Counting::new(RamFs::new()));
        let dir = tempfile::tempdir().expect("tempdir");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        let handle = aegis_fuse::spawn(fs.clone(), &mnt, config).expect("mount");
        Some(Mounted {
            handle: Some(handle),
            fs,
            dir,
        })
    }

    pub fn root(&self) -> &Path {
        self.handle.as_ref().expect("mounted").mountpoint()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Unmount from outside, as `umount` would, and wait for the session
    /// to end. Fails (with what held the mount) if it stays busy.
    pub fn unmount(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Err(e) = teardown(h) {
                panic!("unmount: {e}");
            }
        }
    }
}

impl Drop for Mounted {
    /// Tests that do not unmount themselves unmount here, panics included:
    /// a mount still busy after the retries fails the test (unless it is
    /// already failing), and is detached so nothing stays mounted.
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Err(e) = teardown(h) {
                if std::thread::panicking() {
                    eprintln!("teardown: {e}");
                } else {
                    panic!("unmount: {e}");
                }
            }
        }
    }
}

/// Unmount `h`'s mount (retrying while busy) and wait for its session to
/// end. If it stays busy, the handle is dropped on a thread of its own:
/// its drop detaches the mount lazily and then waits for the holder to let
/// go, which may be the very test that called this.
fn teardown(h: MountHandle) -> std::result::Result<(), String> {
    let mnt = h.mountpoint().to_path_buf();
    match unmount_with_retry(&mnt) {
        Ok(_) => h
            .wait()
            .map_err(|e| format!("session on {}: {e}", mnt.display())),
        Err(report) => {
            std::thread::spawn(move || drop(h));
            Err(report)
        }
    }
}

/// Whether `path` is a mount point of this process's namespace.
pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = path.as_os_str().as_bytes();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .map(|m| m.as_bytes() == want)
            .unwrap_or(false)
    })
}

pub use aegis_testkit::fuse_mount::unmount_with_retry;

pub fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in path")
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Poll `cond` for up to `secs` seconds.
pub fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Delegates to a `RamFs` and keeps, per inode, the lookups the kernel
/// should hold: +1 for each entry handed out, minus each forget. A forget
/// of more than is held means the adapter or the kernel lost count.
pub struct Counting {
    pub inner: RamFs,
    counts: Mutex<HashMap<Ino, i64>>,
    pub over_forgotten: AtomicBool,
}

impl Counting {
    pub fn new(inner: RamFs) -> Counting {
        Counting {
            inner,
            counts: Mutex::new(HashMap::new()),
            over_forgotten: AtomicBool::new(false),
        }
    }

    pub fn lookups(&self, ino: Ino) -> i64 {
        self.counts.lock().get(&ino).copied().unwrap_or(0)
    }

    fn counted(&self, r: Result<Attr>) -> Result<Attr> {
        if let Ok(a) = &r {
            *self.counts.lock().entry(a.ino).or_default() += 1;
        }
        r
    }
}

impl FileSystem for Counting {
    fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        self.counted(self.inner.lookup(parent, name))
    }
    fn forget(&self, ino: Ino, nlookup: u64) {
        {
            let mut c = self.counts.lock();
            let n = c.entry(ino).or_default();
            *n -= nlookup as i64;
            if *n < 0 {
                self.over_forgotten.store(true, Ordering::SeqCst);
            }
        }
        self.inner.forget(ino, nlookup)
    }
    fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.inner.getattr(ino)
    }
    fn setattr(&self, req: &Request, ino: Ino, set: &SetAttr, fh: Option<Fh>) -> Result<Attr> {
        self.inner.setattr(req, ino, set, fh)
    }
    fn mknod(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        rdev: u64,
    ) -> Result<Attr> {
        self.counted(self.inner.mknod(req, parent, name, mode, rdev))
    }
    fn mkdir(&self, req: &Request, parent: Ino, name: &OsStr, mode: u32) -> Result<Attr> {
        self.counted(self.inner.mkdir(req, parent, name, mode))
    }
    fn unlink(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.inner.unlink(parent, name)
    }
    fn rmdir(&self, parent: Ino, name: &OsStr) -> Result<()> {
        self.inner.rmdir(parent, name)
    }
    fn symlink(&self, req: &Request, parent: Ino, name: &OsStr, target: &OsStr) -> Result<Attr> {
        self.counted(self.inner.symlink(req, parent, name, target))
    }
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.inner.readlink(ino)
    }
    fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        self.inner.rename(parent, name, newparent, newname, flags)
    }
    fn link(&self, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        self.counted(self.inner.link(ino, newparent, newname))
    }
    fn open(&self, ino: Ino, flags: i32) -> Result<Fh> {
        self.inner.open(ino, flags)
    }
    fn create(
        &self,
        req: &Request,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(Attr, Fh)> {
        let r = self.inner.create(req, parent, name, mode, flags);
        if let Ok((a, _)) = &r {
            *self.counts.lock().entry(a.ino).or_default() += 1;
        }
        r
    }
    fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Result<Vec<u8>> {
        self.inner.read(ino, fh, offset, size)
    }
    fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> Result<u32> {
        self.inner.write(ino, fh, offset, data)
    }
    fn flush(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.inner.flush(ino, fh)
    }
    fn release(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.inner.release(ino, fh)
    }
    fn fsync(&self, ino: Ino, fh: Fh, datasync: bool) -> Result<()> {
        self.inner.fsync(ino, fh, datasync)
    }
    fn opendir(&self, ino: Ino, flags: i32) -> Result<Fh> {
        self.inner.opendir(ino, flags)
    }
    fn readdir(&self, ino: Ino, fh: Fh, offset: u64, max_entries: usize) -> Result<Vec<DirEntry>> {
        self.inner.readdir(ino, fh, offset, max_entries)
    }
    fn readdirplus(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        max_entries: usize,
    ) -> Result<Vec<(DirEntry, Attr)>> {
        let r = self.inner.readdirplus(ino, fh, offset, max_entries);
        if let Ok(entries) = &r {
            let mut c = self.counts.lock();
            for (e, _) in entries {
                if e.name != b"." && e.name != b".." {
                    *c.entry(e.ino).or_default() += 1;
                }
            }
        }
        r
    }
    fn releasedir(&self, ino: Ino, fh: Fh) -> Result<()> {
        self.inner.releasedir(ino, fh)
    }
    fn fsyncdir(&self, ino: Ino, fh: Fh, datasync: bool) -> Result<()> {
        self.inner.fsyncdir(ino, fh, datasync)
    }
    fn statfs(&self, ino: Ino) -> Result<StatFs> {
        self.inner.statfs(ino)
    }
    fn setxattr(
        &self,
        req: &Request,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        self.inner.setxattr(req, ino, name, value, flags)
    }
    fn getxattr(&self, ino: Ino, name: &OsStr, size: u32) -> Result<XattrReply> {
        self.inner.getxattr(ino, name, size)
    }
    fn listxattr(&self, ino: Ino, size: u32) -> Result<XattrReply> {
        self.inner.listxattr(ino, size)
    }
    fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        self.inner.removexattr(ino, name)
    }
    fn access(&self, req: &Request, ino: Ino, mask: i32) -> Result<()> {
        self.inner.access(req, ino, mask)
    }
    fn fallocate(&self, ino: Ino, fh: Fh, offset: u64, length: u64, mode: i32) -> Result<()> {
        self.inner.fallocate(ino, fh, offset, length, mode)
    }
    fn lseek(&self, ino: Ino, fh: Fh, offset: i64, whence: Whence) -> Result<u64> {
        self.inner.lseek(ino, fh, offset, whence)
    }
    fn copy_file_range(
        &self,
        ino_in: Ino,
        fh_in: Fh,
        offset_in: u64,
        ino_out: Ino,
        fh_out: Fh,
        offset_out: u64,
        len: u64,
        flags: u32,
    ) -> Result<u64> {
        self.inner.copy_file_range(
            ino_in, fh_in, offset_in, ino_out, fh_out, offset_out, len, flags,
        )
    }
}
