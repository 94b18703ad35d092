//! A full pool whose free space is all in small holes: records larger than
//! any hole still go in (as gang blocks, in pieces behind a header), read
//! back across a remount, pass fsck, and give all their space back when
//! deleted. Every test ends with fsck on the image.

use std::ffi::OsStr;
use std::sync::atomic::Ordering;

use aegis_diskfs::DiskFs;
use aegis_testkit::{noise, Kit};
use aegis_vfs::*;

const RS: u64 = 64 << 10;

fn kit() -> Kit {
    Kit::default().size(32 << 20).record_size(RS as u32)
}

fn free_bytes(fs: &DiskFs) -> u64 {
    let s = fs.statfs(ROOT_INO).unwrap();
    s.bfree * s.frsize as u64
}

fn put(fs: &DiskFs, name: &str, data: &[u8]) -> Result<Ino> {
    let (a, fh) = fs.create(
        &Request::root(),
        ROOT_INO,
        OsStr::new(name),
        0o644,
        libc::O_RDWR,
    )?;
    let r = fs.write(a.ino, fh, 0, data);
    fs.release(a.ino, fh)?;
    // Drop the lookup the create gave, so an unlink frees the file.
    fs.forget(a.ino, 1);
    r.map(|_| a.ino)
}

/// Fill the pool with 8 KiB files (one block of data each, 4 KiB files
/// would be inline in the tree), then delete every other one and let the
/// frees out of their deferral: what is free is 8 KiB holes.
fn fragment(fs: &DiskFs) -> usize {
    let mut n = 0;
    while put(fs, &format!("s{n}"), &noise(8192, n as u64)).is_ok() {
        n += 1;
        assert!(n < 100_000, "the pool never filled");
    }
    for i in (0..n).step_by(2) {
        fs.unlink(ROOT_INO, OsStr::new(&format!("s{i}"))).unwrap();
    }
    for _ in 0..3 {
        fs.sync().unwrap();
    }
    n
}

#[test]
fn records_larger_than_every_hole_go_in_pieces_and_come_back() {
    let kit = kit();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let small = fragment(&fs);
    let ganged = || {
        fs.store()
            .pool()
            .counters()
            .gang_blocks
            .load(Ordering::Relaxed)
    };
    assert_eq!(ganged(), 0, "8 KiB files never gang");
    let free_before = free_bytes(&fs);
    // Records of 64 KiB, incompressible, in 1 MiB writes until ENOSPC.
    let (a, fh) = fs
        .create(
            &Request::root(),
            ROOT_INO,
            OsStr::new("big"),
            0o644,
            libc::O_RDWR,
        )
        .unwrap();
    let mut written = Vec::new();
    loop {
        let piece = noise(1 << 20, written.len() as u64 + 7);
        match fs.write(a.ino, fh, written.len() as u64, &piece) {
            Ok(n) => written.extend_from_slice(&piece[..n as usize]),
            Err(FsError::NoSpace) => break,
            Err(e) => panic!("write at {}: {e:?}", written.len()),
        }
    }
    fs.release(a.ino, fh).unwrap();
    assert!(ganged() > 0, "no record went in pieces");
    // Most of the holes took data: at least half the free space.
    assert!(
        written.len() as u64 >= free_before / 2,
        "only {} of {free_before} free bytes taken",
        written.len()
    );
    let read = |fs: &DiskFs| {
        let fh = fs.open(a.ino, libc::O_RDONLY).unwrap();
        let got = fs.read(a.ino, fh, 0, written.len() as u32).unwrap();
        fs.release(a.ino, fh).unwrap();
        got == written
    };
    assert!(read(&fs), "read back before the commit");
    fs.sync().unwrap();
    assert!(read(&fs), "read back after the commit");
    fs.unmount().unwrap();
    kit.fsck_clean(dev.clone());
    let fs = kit.mount(dev.clone()).unwrap();
    assert!(read(&fs), "read back after a remount");
    // Deleting the file gives back every piece and header.
    fs.unlink(ROOT_INO, OsStr::new("big")).unwrap();
    fs.forget(a.ino, 1);
    for _ in 0..3 {
        fs.sync().unwrap();
    }
    // fsck would name a leaked piece or header; what stays used is the
    // space map's log of these writes and frees (until it is condensed).
    let back = free_bytes(&fs);
    assert!(
        back + (512 << 10) >= free_before,
        "free {back} after the delete, {free_before} before the writes"
    );
    assert!(small > 100);
    fs.unmount().unwrap();
    kit.fsck_clean(dev.clone());
}
