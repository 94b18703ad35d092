//! The ramfs oracle's fallocate modes: zero, collapse and insert ranges
//! (whole chunks), ENOSPC against its capacity, and the Linux errors, so
//! that the differential test has an oracle to hold the on-disk
//! filesystem to.

use std::ffi::OsStr;

use aegis_vfs::ramfs::{RamFs, RamFsConfig, CHUNK};
use aegis_vfs::*;

fn errno(r: Result<()>) -> i32 {
    r.unwrap_err().errno()
}

#[test]
fn zero_collapse_insert_and_capacity() {
    let fs = RamFs::with_config(RamFsConfig {
        max_bytes: 64 * CHUNK,
        ..Default::default()
    });
    let (a, fh) = fs
        .create(
            &Request::root(),
            ROOT_INO,
            OsStr::new("f"),
            0o644,
            libc::O_RDWR,
        )
        .unwrap();
    let f = a.ino;
    let mut model: Vec<u8> = (0..8 * CHUNK).map(|i| (i % 251) as u8 | 1).collect();
    fs.write(f, fh, 0, &model).unwrap();
    let all = |fs: &RamFs| {
        let size = fs.getattr(f).unwrap().size;
        fs.read(f, fh, 0, size as u32).unwrap()
    };

    fs.fallocate(f, fh, CHUNK + 7, 2 * CHUNK, libc::FALLOC_FL_ZERO_RANGE)
        .unwrap();
    model[(CHUNK + 7) as usize..(3 * CHUNK + 7) as usize].fill(0);
    assert_eq!(all(&fs), model);
    assert_eq!(
        fs.getattr(f).unwrap().blocks,
        8 * CHUNK / 512,
        "still allocated"
    );
    let keep = libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE;
    fs.fallocate(f, fh, 8 * CHUNK, CHUNK, keep).unwrap();
    assert_eq!(fs.getattr(f).unwrap().size, 8 * CHUNK);
    assert_eq!(fs.getattr(f).unwrap().blocks, 9 * CHUNK / 512);

    fs.fallocate(f, fh, CHUNK, 2 * CHUNK, libc::FALLOC_FL_COLLAPSE_RANGE)
        .unwrap();
    model.drain(CHUNK as usize..(3 * CHUNK) as usize);
    assert_eq!(all(&fs), model);
    fs.fallocate(f, fh, 0, CHUNK, libc::FALLOC_FL_INSERT_RANGE)
        .unwrap();
    model.splice(0..0, vec![0; CHUNK as usize]);
    assert_eq!(all(&fs), model);

    // Alignment, end of file, size and capacity.
    let c = libc::FALLOC_FL_COLLAPSE_RANGE;
    let i = libc::FALLOC_FL_INSERT_RANGE;
    assert_eq!(errno(fs.fallocate(f, fh, 1, CHUNK, c)), libc::EINVAL);
    assert_eq!(errno(fs.fallocate(f, fh, 0, 7 * CHUNK, c)), libc::EINVAL);
    assert_eq!(
        errno(fs.fallocate(f, fh, 7 * CHUNK, CHUNK, i)),
        libc::EINVAL
    );
    let big = i64::MAX as u64 / CHUNK * CHUNK;
    assert_eq!(errno(fs.fallocate(f, fh, 0, big, i)), libc::EFBIG);
    assert_eq!(
        errno(fs.fallocate(f, fh, 0, CHUNK, c | libc::FALLOC_FL_KEEP_SIZE)),
        libc::EINVAL
    );
    assert_eq!(
        errno(fs.fallocate(f, fh, 0, CHUNK, 0x100)),
        libc::EOPNOTSUPP
    );
    assert_eq!(errno(fs.fallocate(f, fh, 0, 100 * CHUNK, 0)), libc::ENOSPC);
    assert_eq!(all(&fs), model, "refusals change nothing");
}
