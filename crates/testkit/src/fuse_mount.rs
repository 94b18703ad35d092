//! Teardown of a real FUSE mount for the end-to-end suites: unmount with a
//! bounded retry while the kernel answers EBUSY, and a report of what held
//! the mount when it stays busy. std and libc only, so any suite can use
//! it whatever it mounts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a mount may stay busy before teardown gives up and reports.
const PATIENCE: Duration = Duration::from_secs(10);

/// Unmount the FUSE mount on `mnt` (an absolute path) the way a user
/// would, retrying for up to 10 s while the kernel answers EBUSY. Returns
/// how many attempts were busy before it went (0: at once), or a report of
/// what kept it busy.
///
/// Why retry: a test binary runs its tests on several threads, and any
/// thread's `Command::spawn` clones the whole descriptor table (fork,
/// vfork or posix_spawn alike). Until that child has exec'd, it holds a
/// reference to every file the other threads have open, files inside
/// another test's mount included, and the close-on-exec flag only drops
/// them at exec. A machine under load can stretch that window past the
/// other test's unmount, which then fails with EBUSY although the test
/// itself closed everything. A holder that outlives the retries is real
/// (a file left open, a working directory inside): the report names the
/// processes and what they hold, from /proc/*/{fd,cwd,root,exe,maps}.
/// (Reading a /proc/PID/fd link itself holds that file's mount for an
/// instant, so a scan can make another test's unmount busy: one more
/// reason to retry.)
///
/// As root it calls umount2(2) itself: exact errno, and no fork that
/// would open the same window for the other tests. Otherwise it runs
/// `fusermount3 -u`, and its "Device or resource busy" is the EBUSY.
pub fn unmount_with_retry(mnt: &Path) -> std::result::Result<u32, String> {
    let start = Instant::now();
    let mut busy = 0u32;
    let mut seen = BTreeSet::new();
    let mut pause = Duration::from_millis(10);
    loop {
        let why = match attempt(mnt) {
            Ok(()) => {
                if busy > 0 {
                    eprintln!(
                        "unmount {}: busy {busy} time(s) over {:?}, then unmounted; held by: {}",
                        mnt.display(),
                        start.elapsed(),
                        listed(seen, "; ", "nothing seen in /proc (gone before the scan)")
                    );
                }
                return Ok(busy);
            }
            Err(Failed::Other(why)) => return Err(why),
            Err(Failed::Busy(why)) => why,
        };
        busy += 1;
        seen.extend(holders(mnt));
        if start.elapsed() >= PATIENCE {
            let now = holders(mnt);
            return Err(format!(
                "{why}: still busy after {busy} attempts over {:?}.\n\
                 Holding it now: {}\n\
                 Seen holding it during the retries: {}",
                start.elapsed(),
                listed(
                    now,
                    "\n  ",
                    "no process (a holder /proc does not show, or the kernel)"
                ),
                listed(seen, "\n  ", "none"),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

fn listed(items: impl IntoIterator<Item = String>, sep: &str, none: &str) -> String {
    let v: Vec<String> = items.into_iter().collect();
    if v.is_empty() {
        none.to_string()
    } else {
        v.join(sep)
    }
}

enum Failed {
    Busy(String),
    Other(String),
}

/// One unmount: umount2(2) as root, `fusermount3 -u` otherwise.
fn attempt(mnt: &Path) -> std::result::Result<(), Failed> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(mnt.as_os_str().as_bytes())
            .map_err(|_| Failed::Other(format!("{}: NUL in path", mnt.display())))?;
        // SAFETY: `c` is a valid NUL-terminated path for the call.
        if unsafe { libc::umount2(c.as_ptr(), libc::UMOUNT_NOFOLLOW) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        let text = format!("umount2({}): {e}", mnt.display());
        return Err(if e.raw_os_error() == Some(libc::EBUSY) {
            Failed::Busy(text)
        } else {
            Failed::Other(text)
        });
    }
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(mnt)
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Failed::Other(format!("running fusermount3: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "fusermount3 -u {}: {}: {}",
        mnt.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Err(if text.contains("Device or resource busy") {
        Failed::Busy(text)
    } else {
        Failed::Other(text)
    })
}

/// Every process with a descriptor, working or root directory,
/// executable or mapping under `mnt`, one line each. Only reads /proc
/// (readlink and text), never anything inside the mount.
fn holders(mnt: &Path) -> Vec<String> {
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for pid in candidate_pids() {
        if !done.insert(pid) {
            continue;
        }
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let what = held_under(&dir, mnt);
        if !what.is_empty() {
            found.push(describe_process(pid, &dir, what));
        }
    }
    found
}

/// This process and its children first: the likely holders, and
/// short-lived ones may be gone by the time the rest is read. Then every
/// process.
fn candidate_pids() -> Vec<u32> {
    let mut pids = vec![std::process::id()];
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            pids.extend(
                kids.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    if let Ok(procs) = std::fs::read_dir("/proc") {
        let all = procs.flatten();
        pids.extend(all.filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()));
    }
    pids
}

/// What the process at /proc/PID `dir` holds under `mnt`.
fn held_under(dir: &Path, mnt: &Path) -> BTreeSet<String> {
    let under = |p: &Path| p.starts_with(mnt);
    let mut what = BTreeSet::new();
    for link in ["cwd", "root", "exe"] {
        if let Ok(t) = std::fs::read_link(dir.join(link)) {
            if under(&t) {
                what.insert(format!("{link} {}", t.display()));
            }
        }
    }
    if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
        for fd in fds.flatten() {
            if let Ok(t) = std::fs::read_link(fd.path()) {
                if under(&t) {
                    let n = fd.file_name();
                    what.insert(format!("fd {} {}", n.to_string_lossy(), t.display()));
                }
            }
        }
    }
    if let Ok(maps) = std::fs::read_to_string(dir.join("maps")) {
        for line in maps.lines() {
            if let Some(i) = line.find('/') {
                if under(Path::new(&line[i..])) {
                    what.insert(format!("mmap {}", &line[i..]));
                }
            }
        }
    }
    what
}

/// One line naming a holder: pid, command, parent, and whether it is
/// this test process or one of its children caught between fork and exec.
fn describe_process(pid: u32, dir: &Path, what: BTreeSet<String>) -> String {
    let me = std::process::id();
    let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
    let cmdline = std::fs::read(dir.join("cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default();
    let ppid = std::fs::read_to_string(dir.join("status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let exe = std::fs::read_link(dir.join("exe")).ok();
    let my_exe = std::fs::read_link("/proc/self/exe").ok();
    let note = if pid == me {
        " [this test process]"
    } else if ppid == me.to_string() && exe.is_some() && exe == my_exe {
        " [a child of this test process that has not exec'd yet]"
    } else {
        ""
    };
    format!(
        "pid {pid} ({}) ppid {ppid}{note}: {}: {}",
        comm.trim(),
        cmdline.trim(),
        what.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// An image file made by `aegisfs mkfs` and mounted by the `aegisfs mount
/// --foreground` daemon: the one mount fixture of the end-to-end suites
/// (`crates/aegisfs/tests/common` wraps it with the binary and a tempdir). The caller owns
/// the directory (a tempdir) and names the binary (`CARGO_BIN_EXE_aegisfs`
/// exists only in that crate's tests). Dropping it unmounts (lazily if it
/// stays busy) and stops the daemon, also after a panic; [`finish`]
/// unmounts cleanly and runs `aegisfs fsck`, the last step of every test.
///
/// [`finish`]: ImageMount::finish
pub struct ImageMount {
    bin: PathBuf,
    pub img: PathBuf,
    pub mnt: PathBuf,
    /// The dataset mounted (`IMAGE/NAME`); `None` is the root dataset.
    pub dataset: Option<String>,
    /// The snapshot of it mounted (`IMAGE[/NAME]@SNAP`, read-only).
    pub snapshot: Option<String>,
    child: Option<std::process::Child>,
}

/// Whether /dev/fuse and fusermount3 are there; says so when not.
pub fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists()
        && std::process::Command::new("fusermount3")
            .arg("-V")
            .output()
            .is_ok();
    if !ok {
        eprintln!("skipping: /dev/fuse or fusermount3 missing (apt-get install fuse3)");
    }
    ok
}

/// Whether something is mounted on `mnt` (canonical), per mountinfo.
pub fn is_mounted(mnt: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = mnt.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

impl ImageMount {
    /// `mkfs --size SIZE` an image in `dir` and mount it on `dir/mnt`.
    pub fn new(bin: &str, dir: &Path, size: &str) -> ImageMount {
        let dir = dir.canonicalize().expect("canonical test directory");
        let (img, mnt) = (dir.join("test.img"), dir.join("mnt"));
        std::fs::create_dir(&mnt).expect("mount point");
        let out = std::process::Command::new(bin)
            .args(["mkfs", "--size", size])
            .arg(&img)
            .output()
            .expect("run mkfs");
        assert!(out.status.success(), "mkfs: {out:?}");
        let mut m = ImageMount {
            bin: bin.into(),
            img,
            mnt,
            dataset: None,
            snapshot: None,
            child: None,
        };
        m.mount();
        m
    }

    /// What the daemon is asked to mount: the image, a dataset of it, or
    /// a snapshot of one of those.
    fn source(&self) -> std::ffi::OsString {
        let mut s = match &self.dataset {
            Some(name) => self.img.join(name),
            None => self.img.clone(),
        }
        .into_os_string();
        if let Some(snap) = &self.snapshot {
            s.push(format!("@{snap}"));
        }
        s
    }

    /// Mount with `allow_other`, the default of these suites.
    pub fn mount(&mut self) {
        self.mount_with("allow_other");
    }

    /// Mount with the options `-o OPTIONS` and wait until the kernel
    /// lists the mount.
    pub fn mount_with(&mut self, options: &str) {
        assert!(self.child.is_none(), "already mounted");
        let child = std::process::Command::new(&self.bin)
            .args(["mount", "--foreground", "-o", options])
            .arg(self.source())
            .arg(&self.mnt)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the mount daemon");
        let child = self.child.insert(child);
        let start = Instant::now();
        while !is_mounted(&self.mnt) {
            if let Some(st) = child.try_wait().expect("daemon status") {
                panic!("mount daemon exited early: {st}");
            }
            assert!(start.elapsed() < Duration::from_secs(30), "mount timed out");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The mount daemon's process id, while mounted.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Clean unmount: the daemon must commit and exit 0.
    pub fn unmount(&mut self) {
        if let Err(report) = unmount_with_retry(&self.mnt) {
            panic!("unmount failed: {report}");
        }
        let st = self.child.take().expect("mounted").wait().expect("wait");
        assert!(st.success(), "mount daemon exited with {st}");
    }

    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// `kill -9` of the daemon, then clear the dead mount.
    pub fn kill(&mut self) {
        let mut c = self.child.take().expect("mounted");
        let _ = c.kill();
        let _ = c.wait();
        let _ = std::process::Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mnt)
            .status();
        let start = Instant::now();
        while is_mounted(&self.mnt) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the daemon is running (mounted by this fixture).
    pub fn is_served(&self) -> bool {
        self.child.is_some()
    }

    /// The daemon's process, to signal it.
    pub fn take_child(&mut self) -> Option<std::process::Child> {
        self.child.take()
    }

    /// `aegisfs fsck` of the image must exit 0.
    pub fn fsck(&self) {
        let out = std::process::Command::new(&self.bin)
            .arg("fsck")
            .arg(&self.img)
            .output()
            .expect("run fsck");
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

impl Drop for ImageMount {
    fn drop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if is_mounted(&self.mnt) {
            if let Err(report) = unmount_with_retry(&self.mnt) {
                eprintln!("teardown: {report}\nteardown: detaching it lazily");
                let _ = std::process::Command::new("fusermount3")
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

/// `setxattr(2)` of raw bytes on a path of a mount: 0, or the errno (the
/// ACL and capability suites set values the tools would refuse to write).
pub fn setxattr_raw(path: &Path, name: &str, value: &[u8]) -> i32 {
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new(name),
    ) else {
        return libc::EINVAL;
    };
    // SAFETY: valid NUL-terminated path and name, and a value buffer of
    // the given length, for the duration of the call.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    }
}
