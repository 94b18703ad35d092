//! The `aegisfs` binary on bad input and on fresh images.
//!
//! Bad input (an image that is not AegisFS, truncated, zero-filled, or from
//! a future format version; an unknown block size; a size that is not a
//! number) must give one clear line naming the problem on stderr, a
//! non-zero exit, nothing written and no panic.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

const LABEL: u64 = 256 * 1024;
const CONFIG: usize = 4096;
const MIB: u64 = 1 << 20;

fn aegisfs<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_aegisfs"))
        .args(args)
        .env_remove("AEGISFS_LOG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run aegisfs")
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// BLAKE3 of the file's bytes, or None when it does not exist.
fn digest(p: &Path) -> Option<[u8; 32]> {
    fs::read(p).ok().map(|b| *blake3::hash(&b).as_bytes())
}

/// A failure as the issue wants it: non-zero exit (not a signal), exactly
/// one line on stderr mentioning one of `needles` (case-insensitive), no
/// panic, nothing on stdout.
#[track_caller]
fn assert_one_line_failure(out: &Output, paths: &[&Path], needles: &[&str], ctx: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        code.is_some_and(|c| c != 0),
        "{ctx}: expected a non-zero exit\n{}",
        show(out)
    );
    assert!(
        !stderr.contains("panicked") && code != Some(101),
        "{ctx}: panicked\n{}",
        show(out)
    );
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1,
        "{ctx}: stderr is not exactly one line\n{}",
        show(out)
    );
    // Match the needles against the message without the paths in it, so a
    // file or directory name cannot stand in for the explanation.
    let mut msg = stderr.to_string();
    for path in paths {
        msg = msg.replace(&*path.to_string_lossy(), "<path>");
        if let Some(n) = path.file_name() {
            msg = msg.replace(&*n.to_string_lossy(), "<name>");
        }
    }
    let lower = msg.to_lowercase();
    assert!(
        needles.iter().any(|n| lower.contains(&n.to_lowercase())),
        "{ctx}: stderr does not mention any of {needles:?}\n{}",
        show(out)
    );
    assert!(
        out.stdout.is_empty(),
        "{ctx}: stdout not empty\n{}",
        show(out)
    );
}

#[track_caller]
fn assert_success(out: &Output, ctx: &str) {
    assert!(out.status.success(), "{ctx}: failed\n{}", show(out));
    assert!(
        out.stderr.is_empty(),
        "{ctx}: unexpected stderr\n{}",
        show(out)
    );
}

fn mkfs(img: &Path, extra: &[&str]) {
    let mut args: Vec<&OsStr> = vec![
        "mkfs".as_ref(),
        img.as_ref(),
        "--size".as_ref(),
        "16M".as_ref(),
    ];
    args.extend(extra.iter().map(|s| OsStr::new(*s)));
    let out = aegisfs(&args);
    assert_success(&out, &format!("mkfs {}", img.display()));
}

/// Byte offsets of the four labels on a device of `size` bytes.
fn label_offsets(size: u64) -> [u64; 4] {
    let end = size / LABEL * LABEL;
    [0, LABEL, end - 2 * LABEL, end - LABEL]
}

/// Apply `f` to the config header of every label and re-seal its BLAKE3.
fn patch_labels(img: &Path, f: impl Fn(&mut [u8])) {
    let file = OpenOptions::new().read(true).write(true).open(img).unwrap();
    let size = file.metadata().unwrap().len();
    for off in label_offsets(size) {
        let mut hdr = vec![0u8; CONFIG];
        file.read_exact_at(&mut hdr, off).unwrap();
        assert_eq!(&hdr[..8], b"AEGISFS\0", "label at {off}");
        f(&mut hdr);
        let sum = blake3::hash(&hdr[..CONFIG - 32]);
        hdr[CONFIG - 32..].copy_from_slice(sum.as_bytes());
        file.write_all_at(&hdr, off).unwrap();
    }
    file.sync_all().unwrap();
}

fn write_file(p: &Path, len: u64, fill: impl Fn(u64) -> u8) {
    let bytes: Vec<u8> = (0..len).map(fill).collect();
    fs::write(p, bytes).unwrap();
}

struct BadImage {
    /// What is wrong with it (the file itself has a neutral name, so the
    /// path in a message cannot satisfy a needle).
    what: &'static str,
    path: PathBuf,
    /// What stderr must mention.
    needles: &'static [&'static str],
    /// Whether `mkfs` without --force must refuse it (it holds AegisFS).
    aegis: bool,
}

fn bad_images(dir: &Path) -> Vec<BadImage> {
    let mut v = Vec::new();
    let p = |n: &str| dir.join(n);

    // Not AegisFS: text, 16 MiB.
    let text = b"this is a plain file and not a pool at all. ";
    write_file(&p("bad-1.img"), 16 * MIB, |i| {
        text[(i % text.len() as u64) as usize]
    });
    v.push(BadImage {
        what: "not AegisFS (text)",
        path: p("bad-1.img"),
        needles: &["not an AegisFS"],
        aegis: false,
    });

    // Zero-filled (sparse).
    File::create(p("bad-2.img"))
        .unwrap()
        .set_len(16 * MIB)
        .unwrap();
    v.push(BadImage {
        what: "zero-filled",
        path: p("bad-2.img"),
        needles: &["not an AegisFS"],
        aegis: false,
    });

    // Empty.
    File::create(p("bad-3.img")).unwrap();
    v.push(BadImage {
        what: "empty",
        path: p("bad-3.img"),
        needles: &["not an AegisFS"],
        aegis: false,
    });

    // Truncated: the back labels are gone and the data area is short.
    for (name, len) in [
        ("bad-4.img", 12 * MIB),
        ("bad-5.img", 4 * MIB),
        ("bad-6.img", 300 * 1024),
        ("bad-9.img", 100 * 1024),
    ] {
        mkfs(&p(name), &[]);
        OpenOptions::new()
            .write(true)
            .open(p(name))
            .unwrap()
            .set_len(len)
            .unwrap();
        v.push(BadImage {
            what: "truncated",
            path: p(name),
            needles: &["truncated"],
            aegis: true,
        });
    }

    // A future format: an unknown incompat feature (bit 40) in every label.
    mkfs(&p("bad-7.img"), &[]);
    patch_labels(&p("bad-7.img"), |h| {
        let mut inc = u64::from_le_bytes(h[32..40].try_into().unwrap());
        inc |= 1 << 40;
        h[32..40].copy_from_slice(&inc.to_le_bytes());
    });
    v.push(BadImage {
        what: "unknown incompat feature",
        path: p("bad-7.img"),
        needles: &["incompat", "upgrade"],
        aegis: true,
    });

    // A future format version.
    mkfs(&p("bad-8.img"), &[]);
    patch_labels(&p("bad-8.img"), |h| {
        h[8..10].copy_from_slice(&2u16.to_le_bytes())
    });
    v.push(BadImage {
        what: "format version 2",
        path: p("bad-8.img"),
        needles: &["version 2", "unsupported format version"],
        aegis: true,
    });
    v
}

#[test]
fn bad_images_give_one_line_and_are_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for img in bad_images(dir.path()) {
        let name = format!(
            "{} ({}, {} bytes)",
            img.path.file_name().unwrap().to_string_lossy(),
            img.what,
            fs::metadata(&img.path).unwrap().len()
        );
        let before = digest(&img.path).unwrap();
        let i: &OsStr = img.path.as_ref();
        let cmds: Vec<Vec<&OsStr>> = vec![
            vec!["info".as_ref(), i],
            vec!["info".as_ref(), "--json".as_ref(), i],
            vec!["fsck".as_ref(), i],
            vec!["fsck".as_ref(), "--json".as_ref(), i],
            vec!["fsck".as_ref(), "--repair".as_ref(), i],
        ];
        for args in cmds {
            let ctx = format!(
                "{name}: aegisfs {}",
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let out = aegisfs(&args);
            let r = std::panic::catch_unwind(|| {
                assert_one_line_failure(&out, &[&img.path], img.needles, &ctx);
                if args[0] == "fsck" {
                    assert_eq!(
                        out.status.code(),
                        Some(8),
                        "{ctx}: fsck(8) operational error\n{}",
                        show(&out)
                    );
                }
            });
            if let Err(e) = r {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "?".into());
                failures.push(msg);
            }
            assert_eq!(
                digest(&img.path).unwrap(),
                before,
                "{ctx}: image was written"
            );
        }
        if img.aegis {
            // mkfs without --force must not overwrite what looks like a pool.
            let out = aegisfs([OsStr::new("mkfs"), i]);
            assert_one_line_failure(
                &out,
                &[&img.path],
                &["AegisFS", "too small"],
                &format!("{name}: mkfs"),
            );
            assert_eq!(digest(&img.path).unwrap(), before, "{name}: mkfs wrote");
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn mkfs_rejects_bad_arguments_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing.img");
    mkfs(&existing, &[]);
    let existing_before = digest(&existing).unwrap();
    let long_label = "x".repeat(65);
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["--block-size", "3K"], &["block size", "block-size"]),
        (vec!["--block-size", "5000"], &["block size", "block-size"]),
        (vec!["--block-size", "128K"], &["block size", "block-size"]),
        (vec!["--block-size", "8X"], &["block size", "block-size"]),
        (vec!["--size", "abc"], &["not a size"]),
        (vec!["--size", "12Q"], &["not a size"]),
        (vec!["--size", "four gigabytes"], &["not a size"]),
        (vec!["--size=-5"], &["not a size"]),
        (vec!["--size", "1M"], &["too small"]),
        (vec!["--size", "99999999999T"], &["too large"]),
        (
            vec!["--metadata-copies", "4"],
            &["metadata-copies", "metadata copies"],
        ),
        (vec!["--checksum", "md5"], &["checksum"]),
        (vec!["--compression", "gzip"], &["compression"]),
        (vec!["--label", &long_label], &["label"]),
        (vec!["--log-size", "100K"], &["log-size"]),
        (vec!["--log-size", "2G"], &["log-size"]),
        (vec!["--log-size", "257K"], &["log-size"]),
        (vec!["--log-size", "lots"], &["log-size"]),
    ];
    for (i, (extra, needles)) in cases.iter().enumerate() {
        // A new image: nothing may be created.
        let fresh = dir.path().join(format!("new-{i}.img"));
        let mut args = vec!["mkfs", fresh.to_str().unwrap()];
        args.extend(extra.iter().copied());
        let out = aegisfs(&args);
        let ctx = format!("mkfs {extra:?} on a new file");
        assert_one_line_failure(&out, &[&fresh], needles, &ctx);
        assert!(!fresh.exists(), "{ctx}: created {}", fresh.display());

        // An existing pool, even with --force: nothing may be written.
        let mut args = vec!["mkfs", existing.to_str().unwrap(), "--force"];
        args.extend(extra.iter().copied());
        let out = aegisfs(&args);
        let ctx = format!("mkfs --force {extra:?} on an existing pool");
        assert!(!out.status.success(), "{ctx}: succeeded\n{}", show(&out));
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{ctx}\n{}",
            show(&out)
        );
        assert_eq!(digest(&existing).unwrap(), existing_before, "{ctx}: wrote");
    }
}

fn make_ext4(img: &Path) -> &'static str {
    File::create(img).unwrap().set_len(16 * MIB).unwrap();
    let made = ["mkfs.ext4", "/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4"]
        .iter()
        .any(|tool| {
            Command::new(tool)
                .args(["-q", "-F"])
                .arg(img)
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if made {
        "mkfs.ext4"
    } else {
        let f = OpenOptions::new().write(true).open(img).unwrap();
        f.write_all_at(&0xEF53u16.to_le_bytes(), 1080).unwrap();
        "ext4 magic"
    }
}

#[test]
fn mkfs_refuses_ext4_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("ext4.img");
    let how = make_ext4(&img);
    let before = digest(&img).unwrap();
    for extra in [&[][..], &["--size", "16M"][..], &["--label", "x"][..]] {
        let mut args = vec!["mkfs", img.to_str().unwrap()];
        args.extend(extra);
        let out = aegisfs(&args);
        assert_one_line_failure(
            &out,
            &[&img],
            &["ext2/ext3/ext4"],
            &format!("mkfs {extra:?} on {how}"),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--force"),
            "does not say how to override: {stderr}"
        );
        assert_eq!(
            digest(&img).unwrap(),
            before,
            "mkfs wrote over ext4 ({how})"
        );
    }

    let out = aegisfs(["mkfs".as_ref(), img.as_os_str(), "--force".as_ref()]);
    assert_success(&out, "mkfs --force over ext4");
    assert!(String::from_utf8_lossy(&out.stdout).contains("created AegisFS pool"));
    assert_eq!(fs::metadata(&img).unwrap().len(), 16 * MIB, "size kept");
    let out = aegisfs(["fsck".as_ref(), img.as_os_str()]);
    assert_success(&out, "fsck after mkfs --force");
    // Now it is a pool: mkfs refuses again without --force.
    let before = digest(&img).unwrap();
    let out = aegisfs(["mkfs".as_ref(), img.as_os_str()]);
    assert_one_line_failure(&out, &[&img], &["AegisFS"], "mkfs on the new pool");
    assert_eq!(digest(&img).unwrap(), before);
}

#[test]
fn mkfs_refuses_existing_aegisfs() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("pool.img");
    mkfs(&img, &[]);
    let before = digest(&img).unwrap();
    for extra in [&[][..], &["--size", "16M"][..], &["--block-size", "8K"][..]] {
        let mut args = vec!["mkfs", img.to_str().unwrap()];
        args.extend(extra);
        let out = aegisfs(&args);
        assert_one_line_failure(
            &out,
            &[&img],
            &["AegisFS"],
            &format!("mkfs {extra:?} on a pool"),
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
        assert_eq!(digest(&img).unwrap(), before, "mkfs {extra:?} wrote");
    }

    // Front labels wiped: the back labels still mark it as a pool.
    let f = OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&vec![0u8; 2 * LABEL as usize], 0).unwrap();
    drop(f);
    let before = digest(&img).unwrap();
    let out = aegisfs(["mkfs".as_ref(), img.as_os_str()]);
    assert_one_line_failure(
        &out,
        &[&img],
        &["AegisFS"],
        "mkfs on a pool with wiped front labels",
    );
    assert_eq!(digest(&img).unwrap(), before);
    // ... and it still opens from them.
    let out = aegisfs(["fsck".as_ref(), img.as_os_str()]);
    assert!(
        out.status.success(),
        "fsck from the back labels\n{}",
        show(&out)
    );

    let out = aegisfs(["mkfs".as_ref(), img.as_os_str(), "--force".as_ref()]);
    assert_success(&out, "mkfs --force over a pool");
}

#[test]
fn mkfs_size_too_small_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("small.img");
    for size in ["1M", "7M", "0", "4096"] {
        let out = aegisfs(["mkfs", img.to_str().unwrap(), "--size", size]);
        assert_one_line_failure(
            &out,
            &[&img],
            &["too small"],
            &format!("mkfs --size {size}"),
        );
        assert!(!img.exists(), "--size {size} created the file");
    }
    // An existing file that is too small is refused and left alone.
    write_file(&img, 1 << 20, |i| i as u8);
    let before = digest(&img).unwrap();
    let out = aegisfs(["mkfs", img.to_str().unwrap()]);
    assert_one_line_failure(&out, &[&img], &["too small"], "mkfs on a 1 MiB file");
    assert_eq!(digest(&img).unwrap(), before);
}

#[test]
fn info_json_and_fsck_on_fresh_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fresh.img");
    mkfs(&img, &["--block-size", "8K", "--label", "tank"]);
    let before = digest(&img).unwrap();

    let out = aegisfs(["info".as_ref(), "--json".as_ref(), img.as_os_str()]);
    assert_success(&out, "info --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("info --json is not JSON: {e}\n{}", show(&out)));
    assert_eq!(v["block_size"].as_u64(), Some(8192), "{v}");
    assert_eq!(v["label"].as_str(), Some("tank"), "{v}");
    let txg = v["txg"].as_u64().expect("txg is a number");
    assert!(txg >= 1, "{v}");
    let trees = v["trees"].as_array().expect("trees is an array");
    assert!(
        trees.iter().any(|t| t["name"] == "pool"),
        "no pool tree in {v}"
    );
    assert!(
        trees
            .iter()
            .any(|t| t["name"].as_str().is_some_and(|n| n.contains("root"))),
        "no root dataset in {v}"
    );
    for t in trees {
        assert!(
            t["height"].is_u64() && t["nodes"].is_u64() && t["entries"].is_u64(),
            "{t}"
        );
    }

    let out = aegisfs(["info".as_ref(), img.as_os_str()]);
    assert_success(&out, "info");
    assert!(String::from_utf8_lossy(&out.stdout).contains("block size"));

    let out = aegisfs(["fsck".as_ref(), img.as_os_str()]);
    assert_success(&out, "fsck");
    assert_eq!(out.status.code(), Some(0));

    let out = aegisfs(["fsck".as_ref(), "--json".as_ref(), img.as_os_str()]);
    assert_success(&out, "fsck --json");
    let f: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fsck --json is not JSON: {e}\n{}", show(&out)));
    assert_eq!(f["exit_code"].as_u64(), Some(0), "{f}");
    assert_eq!(f["txg"].as_u64(), Some(txg), "{f}");
    assert_eq!(f["errors"].as_array().map(|a| a.len()), Some(0), "{f}");
    assert!(f["blocks_checked"].as_u64().is_some_and(|n| n >= 2), "{f}");

    assert_eq!(
        digest(&img).unwrap(),
        before,
        "info/fsck wrote to the image"
    );
}

#[test]
fn fsck_on_non_aegisfs_exits_8() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("random.img");
    fs::write(&img, common::noise(16 * MIB as usize, 0)).unwrap();
    let before = digest(&img).unwrap();
    for args in [
        vec!["fsck"],
        vec!["fsck", "--repair"],
        vec!["fsck", "--json"],
    ] {
        let mut a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        a.push(img.as_os_str());
        let out = aegisfs(&a);
        assert_one_line_failure(&out, &[&img], &["not an AegisFS"], &format!("{args:?}"));
        assert_eq!(out.status.code(), Some(8), "{args:?}\n{}", show(&out));
    }
    assert_eq!(digest(&img).unwrap(), before);

    let missing = dir.path().join("missing.img");
    let out = aegisfs(["fsck".as_ref(), missing.as_os_str()]);
    assert_one_line_failure(
        &out,
        &[&missing],
        &["no such file"],
        "fsck on a missing file",
    );
    assert_eq!(out.status.code(), Some(8));
    assert!(!missing.exists());
    let out = aegisfs(["info".as_ref(), missing.as_os_str()]);
    assert_one_line_failure(
        &out,
        &[&missing],
        &["no such file"],
        "info on a missing file",
    );
    assert!(!missing.exists());
}

#[test]
fn crashtest_runs_the_documented_script_and_refuses_bad_lines() {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/crashtest/kernel-patterns.txt");
    let out = aegisfs([OsStr::new("crashtest"), script.as_os_str()]);
    assert_success(&out, "crashtest of the documented script");
    let text = String::from_utf8_lossy(&out.stdout);
    let states: usize = text
        .split_whitespace()
        .zip(text.split_whitespace().skip(1))
        .find(|(_, w)| *w == "crash")
        .and_then(|(n, _)| n.parse().ok())
        .expect("a count of crash states");
    assert!(
        states >= 50 && text.contains(&format!("{states} passed")),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    for (body, needle) in [
        ("mkdir a\nfrobnicate a\n", "unknown operation"),
        ("write a x 5\n", "not a number"),
        ("rename a\n", "takes 2 argument"),
    ] {
        let p = dir.path().join("w.txt");
        fs::write(&p, body).unwrap();
        let out = aegisfs([OsStr::new("crashtest"), p.as_os_str()]);
        assert_one_line_failure(&out, &[], &[needle], body);
    }
}

#[test]
fn mount_rejects_bad_cache_and_dirty_options_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("pool.img");
    mkfs(&img, &[]);
    let before = digest(&img).unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("cache_size=abc", &["cache_size"]),
        ("cache_size=100", &["out of range"]),
        ("cache_size", &["needs a size"]),
        ("cache_policy=mru", &["not a policy"]),
        ("dirty_max=1K", &["out of range"]),
        ("dirty_max=64Q", &["dirty_max"]),
        ("dirty_max=99999T", &["out of range"]),
        ("dirty_max", &["needs a size"]),
    ];
    for (opt, needles) in cases {
        let args: [&OsStr; 6] = [
            "mount".as_ref(),
            "--foreground".as_ref(),
            "-o".as_ref(),
            opt.as_ref(),
            img.as_ref(),
            mnt.as_ref(),
        ];
        let out = aegisfs(args);
        let ctx = format!("mount -o {opt}");
        assert_one_line_failure(&out, &[&img, &mnt], needles, &ctx);
        assert_eq!(digest(&img).unwrap(), before, "{ctx}: the image changed");
    }
}
