//! `aegisfs send` and `aegisfs receive` end to end: a tree written
//! through a FUSE mount goes through a shell pipe into another image,
//! full and then incremental, and the received snapshots mount with the
//! same names, contents, modes, owners, times, links and xattrs, as
//! fstests' `fssum` checks btrfs send. Damaged and misdirected streams
//! are refused with one line and the target image left byte for byte as
//! it was. Every test ends with fsck.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

mod common;
use common::*;

/// As [`refused`], for refusals found part way through a stream: the
/// receive began (the pool moved on by some txgs) and was undone, so the
/// image differs in bytes but holds the same datasets, and fsck is clean.
#[track_caller]
fn undone(args: &[&str], needle: &str, img: &Path) {
    let list = |img: &Path| ok(&["dataset", "list", img.to_str().unwrap()]);
    let names = |l: String| {
        l.lines()
            .map(|x| x.split_whitespace().nth(1).map(str::to_string))
            .collect::<Vec<_>>()
    };
    let before = names(list(img));
    let out = aegisfs(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "{args:?}: {out:?}"
    );
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} should say {needle:?}"
    );
    assert_eq!(names(list(img)), before, "{args:?}");
    ok(&["fsck", img.to_str().unwrap()]);
}

/// `send SRC | receive DST` through a shell pipe.
#[track_caller]
fn pipe(send: &[&str], receive: &[&str]) {
    let q = |a: &[&str]| {
        a.iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let script = format!(
        "set -o pipefail; '{BIN}' send {} | '{BIN}' receive {}",
        q(send),
        q(receive)
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
}

fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 1 << 16];
    // SAFETY: the buffers are as long as the lengths passed.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "listxattr {}", p.display());
    let mut out = Vec::new();
    for name in names[..n as usize]
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
    {
        let cn = CString::new(name).unwrap();
        let mut v = vec![0u8; 1 << 16];
        // SAFETY: as above.
        let m = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert!(m >= 0);
        v.truncate(m as usize);
        out.push((name.to_vec(), v));
    }
    out.sort();
    out
}

/// What `fssum` would sum: every name with its metadata and contents,
/// hard links named by their first path.
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(
        root: &Path,
        dir: &Path,
        inodes: &mut BTreeMap<u64, String>,
        out: &mut BTreeMap<String, String>,
    ) {
        let mut es: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        es.sort();
        for p in es {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let link = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
            let body = if m.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if m.is_file() {
                blake3::hash(&fs::read(&p).unwrap()).to_hex().to_string()
            } else {
                String::new()
            };
            let line = format!(
                "{:o} {}:{} n{} s{} r{} m{}.{} link {link} x{:?} {body}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.nlink(),
                m.size(),
                m.rdev(),
                m.mtime(),
                m.mtime_nsec(),
                xattrs(&p)
            );
            out.insert(rel, line);
            if m.is_dir() {
                walk(root, &p, inodes, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut BTreeMap::new(), &mut out);
    out
}

fn populate(m: &Mount, round: u32) {
    let d = m.p(&format!("dir{round}"));
    fs::create_dir_all(d.join("sub")).unwrap();
    for i in 0..40 {
        fs::write(
            d.join(format!("f{i}")),
            noise(i * 3000, (round as usize * 100 + i) as u64),
        )
        .unwrap();
    }
    fs::write(d.join("sub/big"), noise(3 << 20, round as u64)).unwrap();
    fs::hard_link(d.join("f1"), d.join("sub/f1-link")).unwrap();
    std::os::unix::fs::symlink("../f2", d.join("sub/to-f2")).unwrap();
    let c = CString::new(d.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0);
    assert_eq!(
        aegis_testkit::fuse_mount::setxattr_raw(&d.join("f3"), "user.note", b"kept"),
        0
    );
    fs::set_permissions(
        d.join("f4"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4711),
    )
    .unwrap();
    std::os::unix::fs::chown(d.join("f5"), Some(1234), Some(99)).unwrap();
    // Sparse: a hole between two pieces.
    let f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(d.join("sparse"))
        .unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"start", 0).unwrap();
    std::os::unix::fs::FileExt::write_at(&f, b"end", 10 << 20).unwrap();
}

#[test]
fn a_tree_goes_through_a_pipe_full_then_incremental() {
    if !fuse_available() {
        return;
    }
    let mut a = Mount::new("256M");
    let mut b = Mount::new("256M");
    b.unmount();
    populate(&a, 1);
    a.unmount();
    let (ai, bi) = (
        a.img.to_str().unwrap().to_string(),
        b.img.to_str().unwrap().to_string(),
    );
    ok(&["snapshot", "create", &format!("{ai}@s1")]);
    pipe(&[&format!("{ai}@s1")], &[&format!("{bi}/copy")]);
    a.mount();
    populate(&a, 2);
    fs::remove_file(a.p("dir1/f7")).unwrap();
    fs::rename(a.p("dir1/f8"), a.p("dir2/moved")).unwrap();
    fs::write(a.p("dir1/sub/big"), b"shrunk").unwrap();
    a.unmount();
    ok(&["snapshot", "create", &format!("{ai}@s2")]);
    let inc = a.dir.path().join("inc.stream");
    let inc_s = inc.to_str().unwrap();
    ok(&["send", &format!("{ai}@s2"), "-i", "@s1", "-o", inc_s]);
    let dump = ok(&["send", "--dump", inc_s]);
    assert!(
        dump.lines()
            .next()
            .unwrap()
            .contains("BEGIN snapshot \"s2\""),
        "{dump}"
    );
    assert!(dump.lines().last().unwrap().contains("END"), "{dump}");
    assert!(dump.contains("DEL "), "the removed file is a DEL: {dump}");
    ok(&["receive", &format!("{bi}/copy"), "-i", inc_s]);
    for snap in ["s1", "s2"] {
        a.snapshot = Some(snap.into());
        a.mount();
        b.dataset = Some("copy".into());
        b.snapshot = Some(snap.into());
        b.mount();
        let (ta, tb) = (tree(&a.mnt), tree(&b.mnt));
        assert!(ta.len() > 40, "{ta:?}");
        assert_eq!(ta, tb, "snapshot {snap}");
        a.unmount();
        b.unmount();
    }
    a.snapshot = None;
    b.dataset = None;
    b.snapshot = None;
    a.mount();
    b.mount();
    a.finish();
    b.finish();
}

#[test]
fn bad_streams_and_targets_are_refused_with_one_line() {
    if !fuse_available() {
        return;
    }
    let mut a = Mount::new("128M");
    let mut b = Mount::new("128M");
    fs::write(a.p("file"), noise(1 << 20, 3)).unwrap();
    a.unmount();
    let (ai, bi) = (
        a.img.to_str().unwrap().to_string(),
        b.img.to_str().unwrap().to_string(),
    );
    let dir = a.dir.path().to_path_buf();
    ok(&["snapshot", "create", &format!("{ai}@s1")]);
    let full = dir.join("full.stream");
    let full_s = full.to_str().unwrap();
    ok(&["send", &format!("{ai}@s1"), "-o", full_s]);
    // A mounted target: the image lock refuses it.
    let out = aegisfs(&["receive", &format!("{bi}/copy"), "-i", full_s]);
    assert!(!out.status.success(), "{out:?}");
    b.unmount();
    let bimg = b.img.clone();
    let bytes = fs::read(&full).unwrap();
    let cut = dir.join("cut.stream");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    undone(
        &[
            "receive",
            &format!("{bi}/copy"),
            "-i",
            cut.to_str().unwrap(),
        ],
        "truncated",
        &bimg,
    );
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 4;
    let flip = dir.join("flip.stream");
    fs::write(&flip, &flipped).unwrap();
    undone(
        &[
            "receive",
            &format!("{bi}/copy"),
            "-i",
            flip.to_str().unwrap(),
        ],
        "checksum",
        &bimg,
    );
    let junk = dir.join("junk");
    fs::write(&junk, b"not a stream at all, just some bytes long enough").unwrap();
    refused(
        &[
            "receive",
            &format!("{bi}/copy"),
            "-i",
            junk.to_str().unwrap(),
        ],
        "stream",
        &bimg,
    );
    refused(
        &["receive", &format!("{bi}/bad@name"), "-i", full_s],
        "@",
        &bimg,
    );
    refused(
        &["receive", &format!("{bi}/copy"), "--abort"],
        "no dataset",
        &bimg,
    );
    refused(
        &["send", &format!("{ai}@nope"), "-o", full_s],
        "no snapshot",
        &a.img,
    );
    refused(
        &["send", &format!("{ai}@s1"), "-i", "@s1", "-o", full_s],
        "not older",
        &a.img,
    );
    refused(
        &["send", &format!("{ai}@s1"), "-t", "aegis1-zz", "-o", full_s],
        "token",
        &a.img,
    );
    ok(&["receive", &format!("{bi}/copy"), "-i", full_s]);
    refused(
        &["receive", &format!("{bi}/copy"), "-i", full_s],
        "exists",
        &bimg,
    );
    refused(
        &["receive", &format!("{bi}/copy"), "--token"],
        "no receive",
        &bimg,
    );
    a.mount();
    b.mount();
    a.finish();
    b.finish();
}

/// A mounted dataset sends through its daemon (`send MOUNTPOINT@SNAP`),
/// full and incremental, while it goes on serving; a refusal is one line
/// and nothing hangs.
#[test]
fn a_mounted_dataset_sends_through_its_daemon() {
    if !fuse_available() {
        return;
    }
    let a = Mount::new("256M");
    let mut b = Mount::new("256M");
    b.unmount();
    populate(&a, 1);
    let (mnt, bi) = (
        a.mnt.to_str().unwrap().to_string(),
        b.img.to_str().unwrap().to_string(),
    );
    ok(&["snapshot", "create", &format!("{mnt}@s1")]);
    pipe(&[&format!("{mnt}@s1")], &[&format!("{bi}/copy")]);
    populate(&a, 2);
    ok(&["snapshot", "create", &format!("{mnt}@s2")]);
    let inc = a.dir.path().join("inc.stream");
    ok(&[
        "send",
        &format!("{mnt}@s2"),
        "-i",
        "@s1",
        "-o",
        inc.to_str().unwrap(),
    ]);
    ok(&[
        "receive",
        &format!("{bi}/copy"),
        "-i",
        inc.to_str().unwrap(),
    ]);
    let out = aegisfs(&["send", &format!("{mnt}@nope"), "-o", inc.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.lines().count() == 1,
        "{out:?}"
    );
    assert!(stderr.contains("no snapshot"), "{stderr}");
    assert!(inc.exists(), "a failed send leaves the old file");
    // The live dataset still serves, and the copy holds what s2 held.
    fs::write(a.p("after"), b"after the sends").unwrap();
    let want = tree(&a.mnt);
    b.dataset = Some("copy".into());
    b.snapshot = Some("s2".into());
    b.mount();
    let mut got = tree(&b.mnt);
    assert!(got.remove("after").is_none());
    let mut want = want;
    want.remove("after");
    assert_eq!(got, want);
    b.unmount();
    b.dataset = None;
    b.snapshot = None;
    b.mount();
    a.finish();
    b.finish();
}
