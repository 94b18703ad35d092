//! `aegisfs set recordsize=SIZE PATH` and `aegisfs get recordsize PATH`
//! through a real FUSE mount: a directory's size is shown, inherited by
//! what is made in it, and reported as the files' `st_blksize`; bad
//! values are one line, a non-zero exit, and change nothing; a file
//! with more than one record keeps its size. fsck (from `finish`) checks
//! every record against its file's own size.

use super::*;

fn cli(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn get_rs(p: &Path) -> String {
    let out = cli(&["get".as_ref(), "recordsize".as_ref(), p.as_os_str()]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `aegisfs set ASSIGNMENT PATH` fails with one line holding `needle`.
fn refused(assignment: &str, p: &Path, needle: &str) {
    let out = cli(&["set".as_ref(), assignment.as_ref(), p.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.lines().count() == 1 && err.contains(needle),
        "{assignment}: {out:?}"
    );
}

#[test]
fn recordsize_set_and_get_through_the_cli() {
    if !fuse_available() {
        return;
    }
    let m = Mount::new("64M");
    let dir = m.p("small");
    fs::create_dir(&dir).unwrap();
    assert_eq!(get_rs(&dir), format!("{}: recordsize=128K", dir.display()));
    let out = cli(&["set".as_ref(), "recordsize=16K".as_ref(), dir.as_os_str()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(get_rs(&dir), format!("{}: recordsize=16K", dir.display()));

    // A file made inside inherits it; 1 MiB written reads back.
    let f = m.p("small/data");
    let data = noise(1 << 20, 7);
    fs::write(&f, &data).unwrap();
    assert_eq!(get_rs(&f), format!("{}: recordsize=16K", f.display()));
    assert_eq!(fs::metadata(&f).unwrap().blksize(), 16 << 10);
    assert_eq!(fs::read(&f).unwrap(), data);

    // Bad values: one line naming the value and the range, nothing changed.
    for bad in ["3K", "abc", "2M", "0", ""] {
        refused(
            &format!("recordsize={bad}"),
            &dir,
            &format!("'{bad}' is not a power of two from 4K to 1M"),
        );
    }
    assert_eq!(get_rs(&dir), format!("{}: recordsize=16K", dir.display()));
    // The file has 64 records: its size stays.
    refused("recordsize=64K", &f, "at most one record");
    assert_eq!(get_rs(&f), format!("{}: recordsize=16K", f.display()));
    // An empty file may take any size; 1 MiB is accepted as 1M or 1048576.
    let e = m.p("small/empty");
    fs::write(&e, b"").unwrap();
    let out = cli(&["set".as_ref(), "recordsize=1048576".as_ref(), e.as_os_str()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(get_rs(&e), format!("{}: recordsize=1M", e.display()));
    fs::write(&e, &data[..300_000]).unwrap();
    assert_eq!(fs::read(&e).unwrap(), &data[..300_000]);
    m.finish();
}
