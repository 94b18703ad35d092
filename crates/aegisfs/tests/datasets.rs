//! `aegisfs dataset`, `aegisfs snapshot` and `aegisfs mount IMAGE/NAME`
//! (and `IMAGE@SNAP`): several filesystems and their snapshots
//! in one image, each mounted on its own through FUSE, and every bad
//! argument refused with one line, a non-zero exit and the image left
//! exactly as it was. Every test ends with fsck.

use std::fs;

mod common;
use common::*;

/// Names in `dataset list --json`.
fn listed(img: &str) -> Vec<String> {
    let out = ok(&["dataset", "list", img, "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    // Every dataset takes room: at least its log ring and a tree node.
    assert!(
        rows.iter().all(|r| r["used_bytes"].as_u64().unwrap() > 0),
        "{rows:?}"
    );
    rows.iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn dataset_commands_and_their_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("pool.img");
    let s = img.to_str().unwrap();
    ok(&["mkfs", "--size", "256M", s]);
    ok(&["dataset", "create", &format!("{s}/home")]);
    ok(&[
        "dataset",
        "create",
        &format!("{s}/logs"),
        "--record-size",
        "16K",
    ]);
    assert_eq!(listed(s), ["root", "home", "logs"]);
    let long = "n".repeat(256);
    let missing = dir.path().join("none.img");
    let m = missing.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["dataset", "create", &format!("{s}/home")],
            "exists already",
        ),
        (vec!["dataset", "create", &format!("{s}/a@b")], "holds '@'"),
        (
            vec!["dataset", "create", &format!("{s}/{long}")],
            "longer than 255",
        ),
        (vec!["dataset", "create", s], "image/name"),
        (
            vec![
                "dataset",
                "create",
                &format!("{s}/x"),
                "--record-size",
                "3K",
            ],
            "record-size",
        ),
        (
            vec![
                "dataset",
                "create",
                &format!("{s}/x"),
                "--compression",
                "zip",
            ],
            "compression",
        ),
        (vec!["dataset", "create", &format!("{m}/x")], "no such file"),
        (
            vec!["dataset", "destroy", &format!("{s}/root")],
            "root dataset",
        ),
        (
            vec!["dataset", "destroy", &format!("{s}/nope")],
            "no dataset named",
        ),
        (
            vec!["dataset", "rename", &format!("{s}/home"), "logs"],
            "exists already",
        ),
        (
            vec!["dataset", "rename", &format!("{s}/root"), "top"],
            "root dataset",
        ),
        (
            vec!["dataset", "rename", &format!("{s}/home"), "x/y"],
            "within its own pool",
        ),
        (vec!["dataset", "rename", &format!("{s}/home"), ""], "empty"),
    ] {
        refused(&args, needle, &img);
    }
    ok(&[
        "dataset",
        "rename",
        &format!("{s}/home"),
        &format!("{s}/users"),
    ]);
    ok(&["dataset", "destroy", &format!("{s}/logs")]);
    assert_eq!(listed(s), ["root", "users"]);
    ok(&["fsck", s]);
}

#[test]
fn each_dataset_mounts_on_its_own() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("256M");
    fs::write(m.p("in-root"), b"root's").unwrap();
    m.unmount();
    let img = m.img.to_str().unwrap().to_string();
    ok(&["dataset", "create", &format!("{img}/home")]);
    m.dataset = Some("home".into());
    m.mount();
    assert!(!m.p("in-root").exists(), "a new dataset starts empty");
    fs::write(m.p("in-home"), vec![9u8; 1 << 20]).unwrap();
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(
        mounts.lines().any(|l| l.contains(m.mnt.to_str().unwrap())),
        "mounted: {mounts}"
    );
    m.remount();
    assert_eq!(fs::read(m.p("in-home")).unwrap(), vec![9u8; 1 << 20]);
    m.unmount();
    m.dataset = None;
    m.mount();
    assert_eq!(fs::read(m.p("in-root")).unwrap(), b"root's");
    assert!(!m.p("in-home").exists(), "datasets do not share files");
    // A mounted image is locked: the dataset commands wait for nothing
    // and refuse.
    let out = aegisfs(&["dataset", "destroy", &format!("{img}/home")]);
    assert!(!out.status.success(), "destroy of a mounted pool: {out:?}");
    m.unmount();
    let out = aegisfs(&["mount", &format!("{img}/nope"), m.mnt.to_str().unwrap()]);
    assert!(!out.status.success(), "mount of a missing dataset: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no dataset named"));
    ok(&["dataset", "destroy", &format!("{img}/home")]);
    m.mount();
    m.finish();
}

/// Names in `snapshot list --json`, with each one's unique bytes.
fn snapshots_listed(target: &str) -> Vec<(String, u64)> {
    let out = ok(&["snapshot", "list", target, "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap().to_string();
            (name, r["unique_bytes"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn snapshot_commands_and_their_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("pool.img");
    let s = img.to_str().unwrap();
    ok(&["mkfs", "--size", "256M", s]);
    ok(&["dataset", "create", &format!("{s}/home")]);
    let host = dir.path().join("big");
    fs::write(&host, noise(2 << 20, 5)).unwrap();
    let h = host.to_str().unwrap();
    ok(&["put", h, &format!("{s}:/big")]);
    let out = ok(&["snapshot", "create", &format!("{s}@monday")]);
    assert!(out.contains("created snapshot"), "{out}");
    ok(&["snapshot", "create", &format!("{s}/home@monday")]);
    ok(&["rm", &format!("{s}:/big")]);
    assert_eq!(
        ok(&["snapshot", "diff", &format!("{s}@monday")]),
        "M\t/\n-\t/big\n"
    );
    // The deleted file's blocks are the snapshot's alone now.
    let root = snapshots_listed(s);
    assert_eq!(root.len(), 1);
    assert!(root[0].1 >= 2 << 20, "{root:?}");
    assert_eq!(
        snapshots_listed(&format!("{s}/home")),
        [("monday".to_string(), 0)]
    );
    let long = "n".repeat(256);
    for (args, needle) in [
        (
            vec!["snapshot", "create", &format!("{s}@monday")],
            "exists already",
        ),
        (vec!["snapshot", "create", s], "image[/dataset]@name"),
        (
            vec!["snapshot", "create", &format!("{s}@{long}")],
            "longer than 255",
        ),
        (vec!["snapshot", "create", &format!("{s}@")], "empty"),
        (
            vec!["snapshot", "create", &format!("{s}/nope@x")],
            "no dataset named",
        ),
        (
            vec!["snapshot", "delete", &format!("{s}@tuesday")],
            "no snapshot named",
        ),
        (vec!["dataset", "destroy", &format!("{s}/home")], "snapshot"),
    ] {
        refused(&args, needle, &img);
    }
    // A clone holds its origin; a rollback brings the deleted file back.
    ok(&["clone", &format!("{s}@monday"), &format!("{s}/work")]);
    assert_eq!(listed(s), ["root", "home", "work"]);
    refused(
        &["snapshot", "delete", &format!("{s}@monday")],
        "clone",
        &img,
    );
    refused(
        &["clone", &format!("{s}@monday"), "/elsewhere/x"],
        "own pool",
        &img,
    );
    ok(&["dataset", "destroy", &format!("{s}/work")]);
    ok(&["snapshot", "rollback", &format!("{s}@monday")]);
    let back = aegisfs(&["cat", &format!("{s}:/big")]);
    assert_eq!(
        back.stdout,
        noise(2 << 20, 5),
        "the file is back after the rollback"
    );
    ok(&["snapshot", "delete", &format!("{s}@monday")]);
    ok(&["snapshot", "delete", &format!("{s}/home@monday")]);
    assert!(snapshots_listed(s).is_empty());
    ok(&["dataset", "destroy", &format!("{s}/home")]);
    ok(&["fsck", s]);
}

#[test]
fn a_snapshot_mounts_read_only_with_what_it_held() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("256M");
    fs::write(m.p("kept"), noise(1 << 20, 1)).unwrap();
    m.unmount();
    let img = m.img.to_str().unwrap().to_string();
    ok(&["snapshot", "create", &format!("{img}@before")]);
    m.mount();
    fs::write(m.p("kept"), b"changed").unwrap();
    fs::write(m.p("later"), b"new").unwrap();
    m.unmount();
    m.snapshot = Some("before".into());
    m.mount();
    assert_eq!(fs::read(m.p("kept")).unwrap(), noise(1 << 20, 1));
    assert!(!m.p("later").exists(), "made after the snapshot");
    let e = fs::write(m.p("x"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    m.unmount();
    m.snapshot = None;
    m.mount();
    assert_eq!(fs::read(m.p("kept")).unwrap(), b"changed");
    m.finish();
}

/// Snapshots of a mounted dataset through the daemon: taken while it
/// serves (with the writes that came before), listed, refused by name,
/// deleted in the background; each snapshot mounts with what it held.
#[test]
fn a_mounted_dataset_takes_snapshots_through_its_daemon() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("256M");
    let mnt = m.mnt.to_str().unwrap().to_string();
    // Still open while the snapshot is taken: its pages must reach it.
    let mut f = fs::File::create(m.p("f")).unwrap();
    std::io::Write::write_all(&mut f, b"first").unwrap();
    let out = ok(&["snapshot", "create", &format!("{mnt}@one")]);
    assert!(out.contains("created snapshot one"), "{out}");
    drop(f);
    fs::write(m.p("f"), b"second").unwrap();
    ok(&["snapshot", "create", &format!("{mnt}@two")]);
    let img = m.img.clone();
    let refused_live = |args: &[&str], needle: &str| {
        let out = aegisfs(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
    };
    refused_live(
        &["snapshot", "create", &format!("{mnt}@one")],
        "exists already",
    );
    refused_live(
        &["snapshot", "create", &format!("{mnt}@a/b")],
        "name a snapshot as",
    );
    refused_live(
        &["snapshot", "delete", &format!("{mnt}@nope")],
        "no snapshot named",
    );
    let names: Vec<(String, u64)> = snapshots_listed(&mnt);
    assert_eq!(
        names.iter().map(|n| n.0.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );
    ok(&["snapshot", "delete", &format!("{mnt}@one")]);
    m.unmount();
    assert_eq!(
        snapshots_listed(img.to_str().unwrap()),
        [("two".to_string(), 0)]
    );
    m.snapshot = Some("two".into());
    m.mount();
    assert_eq!(fs::read(m.p("f")).unwrap(), b"second");
    m.unmount();
    m.snapshot = None;
    m.mount();
    m.finish();
}

/// A mounted dataset shows its snapshots under `.snapshots/NAME/`
/// (hidden from the root's listing, found by name), read-only, with what
/// each held; a snapshot taken live appears at once, one deleted live is
/// gone, and nothing there can change.
#[test]
fn snapshots_are_browsable_under_dot_snapshots() {
    if !fuse_available() {
        return;
    }
    let m = Mount::new("256M");
    let mnt = m.mnt.to_str().unwrap().to_string();
    fs::create_dir(m.p("dir")).unwrap();
    fs::write(m.p("dir/f"), noise(300_000, 5)).unwrap();
    std::os::unix::fs::symlink("dir/f", m.p("link")).unwrap();
    ok(&["snapshot", "create", &format!("{mnt}@one")]);
    fs::write(m.p("dir/f"), b"changed").unwrap();
    fs::write(m.p("new"), b"after one").unwrap();
    ok(&["snapshot", "create", &format!("{mnt}@two")]);
    let root: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !root.contains(&".snapshots".to_string()),
        "hidden: {root:?}"
    );
    let snaps = m.p(".snapshots");
    let mut names: Vec<String> = fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(
        fs::read(snaps.join("one/dir/f")).unwrap(),
        noise(300_000, 5)
    );
    assert_eq!(fs::read(snaps.join("two/dir/f")).unwrap(), b"changed");
    assert!(!snaps.join("one/new").exists());
    assert_eq!(fs::read(snaps.join("one/link")).unwrap(), noise(300_000, 5));
    assert_eq!(fs::read(m.p("dir/f")).unwrap(), b"changed");
    // Distinct inode numbers: the kernel must not confuse them.
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &std::path::Path| fs::metadata(p).unwrap().ino();
    assert_ne!(ino(&snaps.join("one/dir/f")), ino(&m.p("dir/f")));
    assert_ne!(ino(&snaps.join("one/dir/f")), ino(&snaps.join("two/dir/f")));
    for (what, r) in [
        ("write", fs::write(snaps.join("one/dir/f"), b"x")),
        ("create", fs::write(snaps.join("one/x"), b"x")),
        ("create in .snapshots", fs::write(snaps.join("x"), b"x")),
        ("remove", fs::remove_file(snaps.join("two/new"))),
    ] {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS), "{what}");
    }
    let e = fs::rename(snaps.join("one/dir/f"), m.p("moved")).unwrap_err();
    assert!(
        matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::EROFS)),
        "{e}"
    );
    assert_eq!(
        fs::create_dir(&snaps).unwrap_err().raw_os_error(),
        Some(libc::EEXIST)
    );
    ok(&["snapshot", "delete", &format!("{mnt}@one")]);
    assert!(!snaps.join("one").exists(), "deleted live");
    ok(&["snapshot", "create", &format!("{mnt}@three")]);
    assert_eq!(fs::read(snaps.join("three/new")).unwrap(), b"after one");
    m.finish();
}
