//! `aegisfs quota` end to end: limits set on an image and on a mount
//! point, a user's writes through FUSE refused with EDQUOT ("Disk quota
//! exceeded") past the limit and allowed again after a delete, usage
//! listed, bad input refused with one line and the image unchanged.
//! Each mount ends with `aegisfs fsck`, which recomputes usage.

use std::fs;
use std::os::unix::fs::PermissionsExt;

mod common;

use common::*;

fn nobody_entry(target: &std::path::Path) -> serde_json::Value {
    let t = target.to_str().unwrap();
    let out = ok(&["quota", "get", t, "--user", "65534", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0].clone()
}

#[test]
fn quota_commands_and_edquot_through_fuse() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("128M");
    let img = m.img.to_str().unwrap().to_string();
    m.unmount();
    // Bad input: one line, nothing changed.
    refused(
        &["quota", "set", &img, "--user", "65534", "--bytes", "lots"],
        "not a size",
        &m.img,
    );
    refused(
        &["quota", "set", &img, "--user", "65534"],
        "give --bytes",
        &m.img,
    );
    refused(
        &[
            "quota",
            "set",
            &img,
            "--user",
            "no-such-user-here",
            "--bytes",
            "1M",
        ],
        "no user named",
        &m.img,
    );
    refused(
        &["quota", "set", &img, "--group", "1", "--inodes", "3x"],
        "not a count",
        &m.img,
    );
    ok(&["quota", "set", &img, "--user", "65534", "--bytes", "1M"]);
    let e = nobody_entry(&m.img);
    assert_eq!(e["limit_bytes"], 1 << 20);
    assert_eq!(e["used_bytes"], 0);

    m.mount();
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o1777)).unwrap();
    for a in m.mnt.ancestors().skip(1).take(2) {
        let mode = fs::metadata(a).unwrap().permissions().mode();
        fs::set_permissions(a, fs::Permissions::from_mode(mode | 0o711)).unwrap();
    }
    let f = m.p("f");
    let out = as_nobody(&format!(
        "dd if=/dev/urandom of={} bs=64K count=32 conv=fsync",
        f.display()
    ));
    assert!(!out.status.success(), "2 MiB past a 1 MiB quota: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Disk quota exceeded"),
        "{out:?}"
    );
    let size = fs::metadata(&f).unwrap().len();
    assert!(
        size <= 1 << 20,
        "no more than the limit was written: {size}"
    );
    let e = nobody_entry(&m.mnt);
    assert_eq!(e["used_inodes"], 1);
    assert!(e["used_bytes"].as_u64().unwrap() <= 1 << 20, "{e}");
    // A delete frees; then writes pass again.
    let out = as_nobody(&format!(
        "rm {} && dd if=/dev/urandom of={} bs=64K count=1 conv=fsync",
        f.display(),
        m.p("g").display()
    ));
    assert!(out.status.success(), "{out:?}");
    // The limit moves live; a limit below the usage warns.
    let mnt = m.mnt.to_str().unwrap().to_string();
    let out = aegisfs(&["quota", "set", &mnt, "--user", "65534", "--inodes", "1"]);
    assert!(out.status.success(), "{out:?}");
    let out = as_nobody(&format!("touch {}", m.p("h").display()));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Disk quota exceeded"),
        "an inode limit of 1 with one file: {out:?}"
    );
    let out = aegisfs(&["quota", "set", &mnt, "--user", "65534", "--bytes", "1"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("past the new limit"),
        "{out:?}"
    );
    let list = ok(&["quota", "list", &mnt]);
    assert!(list.contains("65534") && list.contains("dataset"), "{list}");
    m.finish();
}
