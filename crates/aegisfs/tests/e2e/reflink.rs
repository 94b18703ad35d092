//! Reflinks through FUSE: `cp` (copy_file_range, the one remap call the
//! kernel passes to a FUSE daemon) shares the file's blocks, so the copy
//! takes no data space; a write into either copy leaves the other as it
//! was, and deleting both leaves fsck clean.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::process::Command;

use crate::common::*;

/// Free bytes the mount reports.
fn free_bytes(path: &std::path::Path) -> u64 {
    let st = nix_statvfs(path);
    st.0 * st.1
}

fn nix_statvfs(path: &std::path::Path) -> (u64, u64) {
    let c = cstr(path);
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path, `st` a writable statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs: {}", std::io::Error::last_os_error());
    (st.f_bavail as u64, st.f_frsize as u64)
}

/// fsync a file: a copy is not in the intent log, so this commits.
fn fsync(path: &std::path::Path) {
    fs::File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn cp_shares_blocks_through_fuse() {
    if !fuse_available() {
        return;
    }
    let m = Mount::new("256M");
    let data = noise(16 << 20, 9);
    {
        let mut f = fs::File::create(m.p("a")).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
    }
    let before = free_bytes(&m.p(""));
    let out = Command::new("cp")
        .arg(m.p("a"))
        .arg(m.p("b"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fsync(&m.p("b"));
    let after = free_bytes(&m.p(""));
    assert!(
        before.saturating_sub(after) < 2 << 20,
        "a 16 MiB cp takes no data space: free {before} → {after}"
    );
    assert_eq!(fs::read(m.p("b")).unwrap(), data);

    // Writing one copy leaves the other as it was.
    let f = fs::OpenOptions::new().write(true).open(m.p("b")).unwrap();
    f.write_all_at(b"only b", 5 << 20).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(fs::read(m.p("a")).unwrap(), data);
    let mut want = data.clone();
    want[5 << 20..(5 << 20) + 6].copy_from_slice(b"only b");
    assert_eq!(fs::read(m.p("b")).unwrap(), want);

    // Both gone; the unmount's fsck checks that every block the two
    // shared was freed once (the kernel forgets the inodes at unmount,
    // so their space comes back there).
    fs::remove_file(m.p("a")).unwrap();
    fs::remove_file(m.p("b")).unwrap();
    m.finish();
}
