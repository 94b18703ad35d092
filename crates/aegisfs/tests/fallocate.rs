//! fallocate through a real FUSE mount, with util-linux `fallocate(1)` and
//! std calls as a user would: a reservation shows in `st_blocks` and in
//! `statfs`, ENOSPC when it cannot be held, is released by truncate and
//! unlink, and lets writes into it succeed on a pool that is otherwise
//! full; the zero, punch, collapse and insert modes. Each test ends with
//! unmount and `aegisfs fsck` (the fixture is `aegis_testkit`'s).

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use aegis_testkit::fuse_mount::{fuse_available, ImageMount};

const BIN: &str = env!("CARGO_BIN_EXE_aegisfs");
const MB: u64 = 1 << 20;
/// mkfs's default record size, the unit of collapse and insert.
const RS: u64 = 128 << 10;

fn statvfs(p: &Path) -> libc::statvfs {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st
}

/// Bytes available to an ordinary write, and free bytes, per statfs.
fn space(m: &ImageMount) -> (u64, u64) {
    let st = statvfs(&m.mnt);
    (st.f_bavail * st.f_frsize, st.f_bfree * st.f_frsize)
}

/// Run `fallocate(1)` with `args`; Ok or its stderr.
fn fallocate(args: &[&str], file: &Path) -> Result<(), String> {
    let out = Command::new("fallocate")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn blocks(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks()
}

#[test]
fn reservations_through_fuse() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut m = ImageMount::new(BIN, dir.path(), "96M");
    let (avail0, free0) = space(&m);

    // Twice the free space: ENOSPC, nothing held.
    let twice = (2 * avail0).to_string();
    let err = fallocate(&["-l", &twice], &m.p("big")).unwrap_err();
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(fs::metadata(m.p("big")).unwrap().len(), 0);
    assert_eq!(blocks(&m.p("big")), 0);

    // 16 MiB: st_blocks counts it, statfs free and available drop.
    fallocate(&["-l", "16M"], &m.p("f")).unwrap();
    let md = fs::metadata(m.p("f")).unwrap();
    assert_eq!((md.len(), md.blocks()), (16 * MB, 16 * MB / 512));
    let (avail1, free1) = space(&m);
    assert!(avail1 + 16 * MB <= avail0, "available {avail0} -> {avail1}");
    assert!(free1 + 16 * MB <= free0, "free {free0} -> {free1}");
    // Shrinking (as 5G -> 4G, scaled down) releases the part cut off.
    OpenOptions::new()
        .write(true)
        .open(m.p("f"))
        .unwrap()
        .set_len(12 * MB)
        .unwrap();
    assert_eq!(blocks(&m.p("f")), 12 * MB / 512);
    let (avail2, _) = space(&m);
    assert!(
        avail2 >= avail1 + 4 * MB,
        "truncate released: {avail1} -> {avail2}"
    );
    // Kept across a remount; `aegisfs info` shows it while unmounted.
    m.unmount();
    let out = Command::new(BIN)
        .args(["info", "--json"])
        .arg(&m.img)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info --json");
    let fsinfo = &info["filesystem"];
    assert_eq!(
        fsinfo["features"],
        serde_json::json!(["prealloc", "prealloc_tree"])
    );
    let held = fsinfo["preallocated"].as_u64().unwrap();
    assert!((12 * MB..13 * MB).contains(&held), "preallocated {held}");
    m.mount();
    assert_eq!(blocks(&m.p("f")), 12 * MB / 512);
    let (avail2, _) = space(&m);
    // Unlink releases the rest once the kernel forgets the inode, which it
    // may do a moment after unlink returns.
    fs::remove_file(m.p("f")).unwrap();
    let start = std::time::Instant::now();
    let mut avail3 = space(&m).0;
    while avail3 < avail2 + 12 * MB && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
        avail3 = space(&m).0;
    }
    assert!(
        avail3 >= avail2 + 12 * MB,
        "unlink released: {avail2} -> {avail3}"
    );
    m.finish();
}

#[test]
fn writes_into_a_reservation_succeed_when_the_pool_is_full() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = ImageMount::new(BIN, dir.path(), "96M");
    let (avail, _) = space(&m);
    let len = (avail - 12 * MB) / MB * MB;
    fallocate(&["-l", &len.to_string()], &m.p("reserved")).unwrap();
    // A log file: 4 MiB kept past its (empty) end, for appends.
    fs::File::create(m.p("log")).unwrap();
    fallocate(&["-n", "-l", "4M"], &m.p("log")).unwrap();
    // Fill the rest of the pool.
    let filler = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(m.p("filler"))
        .unwrap();
    let mut off = 0u64;
    for n in [MB, RS, 4096] {
        let buf = vec![0x5au8; n as usize];
        loop {
            match filler.write_at(&buf, off) {
                Ok(k) => off += k as u64,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filler: {e}");
                    break;
                }
            }
        }
    }
    let e = filler.write_at(&[1u8; 4096], off).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    // Every megabyte of the reservation takes its write.
    let f = OpenOptions::new()
        .write(true)
        .open(m.p("reserved"))
        .unwrap();
    let data: Vec<u8> = (0..MB).map(|i| (i % 251) as u8 + 1).collect();
    let mut pos = 0;
    while pos < len {
        f.write_at(&data, pos).unwrap();
        pos += MB;
    }
    f.sync_all().unwrap();
    // 4 KiB appends, as a log writes: each record of the log takes 32.
    let mut log = OpenOptions::new().append(true).open(m.p("log")).unwrap();
    let page = vec![0x6bu8; 4096];
    for i in 0..1024 {
        if let Err(e) = std::io::Write::write_all(&mut log, &page) {
            panic!("append {i} of 1024: {e}");
        }
    }
    log.sync_all().unwrap();
    assert_eq!(fs::metadata(m.p("log")).unwrap().len(), 4 * MB);
    drop((f, filler, log));
    let back = fs::read(m.p("reserved")).unwrap();
    assert_eq!(back.len() as u64, len);
    assert!(back.chunks(MB as usize).all(|c| c == &data[..]));
    assert!(fs::read(m.p("log")).unwrap().iter().all(|&b| b == 0x6b));
    m.finish();
}

#[test]
fn zero_punch_collapse_and_insert_with_fallocate_1() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = ImageMount::new(BIN, dir.path(), "96M");
    let p = m.p("f");
    let mut model: Vec<u8> = (0..8 * RS).map(|i| (i % 253) as u8 | 1).collect();
    fs::write(&p, &model).unwrap();
    let n = |v: u64| v.to_string();

    // -z: zeroes, still allocated; with -n past the end, size kept.
    fallocate(&["-z", "-o", &n(RS + 100), "-l", &n(RS)], &p).unwrap();
    model[(RS + 100) as usize..(2 * RS + 100) as usize].fill(0);
    assert_eq!(fs::read(&p).unwrap(), model);
    let before = blocks(&p);
    fallocate(&["-z", "-n", "-o", &n(8 * RS), "-l", &n(RS)], &p).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().len(), 8 * RS);
    assert_eq!(
        blocks(&p),
        before + RS / 512,
        "the zeroed range past the end is held"
    );
    // -p: a hole.
    fallocate(&["-p", "-o", &n(3 * RS), "-l", &n(RS)], &p).unwrap();
    model[(3 * RS) as usize..(4 * RS) as usize].fill(0);
    assert_eq!(fs::read(&p).unwrap(), model);

    // -c and -i: whole records only; the kernel's FUSE client decides
    // whether they reach the daemon at all.
    let collapse = fallocate(&["-c", "-o", &n(RS), "-l", &n(2 * RS)], &p);
    let insert = fallocate(&["-i", "-o", &n(RS), "-l", &n(RS)], &p);
    match (&collapse, &insert) {
        (Ok(()), Ok(())) => {
            eprintln!("collapse and insert reached the daemon");
            model.drain(RS as usize..(3 * RS) as usize);
            model.splice(RS as usize..RS as usize, vec![0; RS as usize]);
            assert_eq!(fs::read(&p).unwrap(), model);
            let e = fallocate(&["-c", "-o", "4096", "-l", &n(RS)], &p).unwrap_err();
            assert!(e.contains("Invalid argument"), "{e}");
        }
        (Err(c), Err(i)) => {
            // Linux's fuse_file_fallocate refuses both before asking the
            // daemon (only KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE pass).
            eprintln!("collapse and insert refused by the kernel's FUSE client");
            assert!(c.contains("Operation not supported"), "{c}");
            assert!(i.contains("Operation not supported"), "{i}");
            assert_eq!(fs::read(&p).unwrap(), model, "nothing changed");
        }
        other => panic!("collapse and insert disagree: {other:?}"),
    }
    m.finish();
}

/// Rewrites of an already written reservation on a pool full for every
/// other write: each pass needs fresh copy-on-write space while the old
/// blocks wait out their deferred free, and every one must still succeed
/// (the kernel sends at most 1 MiB per write, and a write that finds too
/// little commits to get the deferred frees back).
#[test]
fn rewrites_of_a_written_reservation_succeed_when_the_pool_is_full() {
    use std::io::Write;
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = ImageMount::new(BIN, dir.path(), "128M");
    let res = m.p("res");
    fallocate(&["-l", "60M"], &res).unwrap();
    // Fill everything else.
    let mut filler = fs::File::create(m.p("filler")).unwrap();
    let chunk: Vec<u8> = (0..MB).map(|i| (i * 7 + 3) as u8).collect();
    let full = loop {
        if let Err(e) = filler.write_all(&chunk) {
            break e;
        }
    };
    assert_eq!(full.raw_os_error(), Some(libc::ENOSPC));
    drop(filler);
    let f = OpenOptions::new().write(true).open(&res).unwrap();
    for pass in 0..4u8 {
        let data = vec![pass.wrapping_mul(37).wrapping_add(1); MB as usize];
        for i in 0..60 {
            f.write_all_at(&data, i * MB)
                .unwrap_or_else(|e| panic!("pass {pass}, MiB {i}: {e}"));
        }
        f.sync_all().unwrap();
    }
    drop(f);
    let back = fs::read(&res).unwrap();
    assert!(back
        .iter()
        .all(|&b| b == 3u8.wrapping_mul(37).wrapping_add(1)));
    m.finish();
}
