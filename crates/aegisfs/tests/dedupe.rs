//! `aegisfs dedupe` on an image: records found equal by checksum and
//! compared byte for byte are shared, a dry run changes not a byte, the
//! files read as before, the space comes back and fsck (which counts
//! every shared block's pointers) is clean.

use std::fs;

mod common;

use common::*;

fn json(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

#[test]
fn dedupe_shares_equal_records_and_a_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("pool.img");
    let img_s = img.to_str().unwrap();
    ok(&["mkfs", "--size", "256M", img_s]);
    let x = noise(3 << 20, 1);
    let y = noise(1 << 20, 2);
    fs::write(dir.path().join("x"), &x).unwrap();
    fs::write(dir.path().join("y"), &y).unwrap();
    let x_path = dir.path().join("x");
    let y_path = dir.path().join("y");
    for (src, dst) in [
        (&x_path, "/a"),
        (&x_path, "/b"),
        (&y_path, "/c"),
        (&x_path, "/d"),
    ] {
        ok(&["put", src.to_str().unwrap(), &format!("{img_s}:{dst}")]);
    }
    let records_of_x = (3 << 20) / (128 << 10);
    let before = fs::read(&img).unwrap();
    let dry = json(&["dedupe", img_s, "--dry-run", "--json"]);
    assert_eq!(dry["shared_records"], 2 * records_of_x, "{dry}");
    assert!(
        fs::read(&img).unwrap() == before,
        "a dry run writes nothing"
    );
    let used_before = json(&["info", img_s, "--json"])["used"].as_u64().unwrap();
    let done = json(&["dedupe", img_s, "--json"]);
    assert_eq!(done["shared_records"], 2 * records_of_x, "{done}");
    assert_eq!(done["shared_bytes"], 2 * (3 << 20), "{done}");
    assert_eq!(done["differed"], 0);
    let info = json(&["info", img_s, "--json"]);
    assert_eq!(info["reflinked"], 2 * (3 << 20), "{info}");
    // The freed blocks wait out the deferral: used + pending is what went.
    let used_after = info["used"].as_u64().unwrap() - info["deferred_free"].as_u64().unwrap();
    assert!(
        used_after + (5 << 20) < used_before,
        "{used_before} → {used_after}"
    );
    for (name, want) in [("/a", &x), ("/b", &x), ("/c", &y), ("/d", &x)] {
        let out = aegisfs(&["cat", &format!("{img_s}:{name}")]);
        assert!(out.status.success(), "{out:?}");
        assert!(&out.stdout == want, "{name} reads as before");
    }
    let again = json(&["dedupe", img_s, "--json"]);
    assert_eq!(again["candidates"], 0, "nothing left to share: {again}");
    let out = aegisfs(&["fsck", img_s]);
    assert!(out.status.success(), "{out:?}");
}
