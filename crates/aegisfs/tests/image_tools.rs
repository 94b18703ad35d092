//! The image commands (`ls`, `stat`, `cat`, `get`, `put`, `mkdir`, `rm`,
//! `mv`, `ln`, `touch`, `df`, `tree`) on unmounted images, through the
//! embedded VFS: a tree copied in and out keeps contents, modes, times,
//! symlinks, FIFOs and ACLs; the editing commands do what coreutils do;
//! reading commands leave the image byte for byte; bad input (no `:`, a
//! missing, damaged or mounted image) is one line and a non-zero exit
//! with the image untouched. Every test ends with fsck.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

mod common;

use aegis_testkit::fuse_mount::{fuse_available, ImageMount};
use common::BIN;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("AEGISFS_LOG")
        .output()
        .expect("run aegisfs")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "aegisfs {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The one line of a failing command.
fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "aegisfs {args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    err
}

fn image(dir: &Path) -> String {
    let img = dir.join("t.img");
    ok(&["mkfs", img.to_str().unwrap(), "--size", "128M"]);
    img.to_str().unwrap().to_string()
}

fn hash(path: &str) -> blake3::Hash {
    blake3::hash(&fs::read(path).unwrap())
}

fn fsck(img: &str) {
    let out = run(&["fsck", img]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "fsck: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A host tree with what `cp -a` must keep.
fn host_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::write(root.join("plain.txt"), b"hello\n").unwrap();
    fs::write(
        root.join("sub/deeper/big.bin"),
        aegis_testkit::noise(3 << 20, 1),
    )
    .unwrap();
    fs::set_permissions(root.join("plain.txt"), fs::Permissions::from_mode(0o4750)).unwrap();
    fs::set_permissions(root.join("sub"), fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::symlink("plain.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("dangling")).unwrap();
    let fifo = std::ffi::CString::new(root.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
    let old = fs::File::options()
        .write(true)
        .open(root.join("plain.txt"))
        .unwrap();
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    old.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
    if Command::new("setfacl")
        .args(["-m", "u:1234:r"])
        .arg(root.join("sub/deeper/big.bin"))
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(acl_of(&root.join("sub/deeper/big.bin")).contains("user:1234:r"));
    }
}

fn acl_of(p: &Path) -> String {
    Command::new("getfacl")
        .args(["-c", "-p"])
        .arg(p)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn same_tree(a: &Path, b: &Path) {
    for entry in walk(a) {
        let rel = entry.strip_prefix(a).unwrap();
        let other = b.join(rel);
        let (ma, mb) = (
            fs::symlink_metadata(&entry).unwrap(),
            fs::symlink_metadata(&other).unwrap(),
        );
        assert_eq!(ma.mode(), mb.mode(), "{rel:?}: mode");
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "{rel:?}: owner");
        if ma.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(&entry).unwrap(),
                fs::read_link(&other).unwrap()
            );
            continue;
        }
        assert_eq!(ma.mtime(), mb.mtime(), "{rel:?}: mtime");
        if ma.is_file() {
            assert!(
                fs::read(&entry).unwrap() == fs::read(&other).unwrap(),
                "{rel:?}: contents"
            );
            assert_eq!(acl_of(&entry), acl_of(&other), "{rel:?}: ACL");
        }
    }
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            out.extend(walk(&e.unwrap().path()));
        }
    }
    out
}

#[test]
fn a_tree_copied_in_and_out_keeps_what_cp_a_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let src = dir.path().join("src");
    host_tree(&src);
    ok(&["put", "-r", src.to_str().unwrap(), &format!("{img}:/")]);
    let listing = ok(&["ls", "-l", "-a", &format!("{img}:/src")]);
    assert!(listing.contains("-rwsr-x---"), "{listing}");
    assert!(listing.contains("link -> plain.txt"), "{listing}");
    assert!(listing.contains("drwxrwxrwt"), "{listing}");
    assert!(listing.lines().any(|l| l.ends_with(" ..")), "{listing}");
    assert_eq!(ok(&["cat", &format!("{img}:/src/plain.txt")]), "hello\n");
    let before = hash(&img);
    let out = dir.path().join("out");
    ok(&["get", "-r", &format!("{img}:/src"), out.to_str().unwrap()]);
    same_tree(&src, &out);
    // Looking and copying out write nothing.
    ok(&["ls", "-R", &format!("{img}:/")]);
    ok(&["stat", &format!("{img}:/src/link")]);
    ok(&["tree", &format!("{img}:/")]);
    ok(&["df", &img]);
    assert_eq!(hash(&img), before, "read-only commands changed the image");
    // Into an existing directory: by name; a directory without -r refused.
    let err = fails(&["get", &format!("{img}:/src"), out.to_str().unwrap()]);
    assert!(err.contains("use -r"), "{err}");
    ok(&[
        "get",
        &format!("{img}:/src/plain.txt"),
        out.to_str().unwrap(),
    ]);
    fsck(&img);
}

#[test]
fn editing_commands_do_what_coreutils_do() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let at = |p: &str| format!("{img}:{p}");
    ok(&["mkdir", "-p", &at("/a/b/c"), &at("/d")]);
    ok(&["mkdir", "-p", &at("/a/b")]);
    let err = fails(&["mkdir", &at("/a")]);
    assert!(err.contains(":/a: File exists"), "{err}");
    ok(&["touch", &at("/a/b/c/f"), &at("/d")]);
    ok(&["ln", "-s", "/a/b/c/f", &at("/d/sym")]);
    ok(&["ln", &at("/a/b/c/f"), &at("/d/hard")]);
    let st = ok(&["stat", &at("/d/hard")]);
    assert!(st.contains("Links: 2"), "{st}");
    ok(&["mv", &at("/a/b"), &at("/d")]);
    let tree = ok(&["tree", &at("/")]);
    assert!(tree.contains("sym -> /a/b/c/f"), "{tree}");
    assert!(tree.contains("4 directories, 3 files"), "{tree}");
    assert!(fails(&["rm", &at("/d")]).contains("Is a directory"));
    ok(&["rm", "-r", &at("/d/b")]);
    ok(&["rm", &at("/d/sym")]);
    let ls = ok(&["ls", &at("/d")]);
    assert_eq!(ls, "hard\n");
    let df = ok(&["df", &img]);
    assert!(df.lines().count() == 2 && df.contains("%"), "{df}");
    fsck(&img);
}

#[test]
fn bad_places_and_images_are_one_line_and_touch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let before = hash(&img);
    assert!(fails(&["ls", &img]).contains("expected IMAGE:PATH"));
    assert!(fails(&["ls", &format!("{img}:/nope")]).contains("No such file or directory"));
    assert!(fails(&["cat", &format!("{img}:/")]).contains("Is a directory"));
    assert!(fails(&["rm", &format!("{img}:/nope")]).contains("No such file"));
    assert!(fails(&["ls", "missing.img:/"]).contains("no such file"));
    let other = dir.path().join("other.img");
    fs::write(&other, vec![0u8; 16 << 20]).unwrap();
    let other = other.to_str().unwrap();
    assert!(fails(&["ls", &format!("{other}:/")]).contains("not an AegisFS image"));
    assert!(fails(&["mv", &format!("{img}:/a"), &format!("{other}:/b")]).contains("one image"));
    assert_eq!(hash(&img), before, "failed commands changed the image");
    assert!(fs::read(other).unwrap().iter().all(|&b| b == 0));
    fsck(&img);
}

#[test]
fn a_mounted_image_is_refused() {
    if !fuse_available() {
        eprintln!("skipped: FUSE is not available");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = ImageMount::new(BIN, dir.path(), "64M");
    fs::write(m.p("f"), b"x").unwrap();
    let img = m.img.to_str().unwrap().to_string();
    let err = fails(&["ls", &format!("{img}:/")]);
    assert!(err.contains("in use") || err.contains("lock"), "{err}");
    assert!(fails(&["put", "/etc/hostname", &format!("{img}:/")]).contains(&img));
    m.finish();
    // Once unmounted, the same command works and sees the file.
    assert_eq!(ok(&["ls", &format!("{img}:/")]), "f\n");
}
