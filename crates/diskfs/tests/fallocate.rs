//! fallocate(2) on the on-disk filesystem: a reservation that later writes
//! into the range can draw on (ENOSPC at fallocate time when it cannot be
//! held, shown by `st_blocks` and `statfs`, released by truncate, punch and
//! unlink, exact across remounts and intent-log replay), and the zero,
//! collapse and insert modes with their argument checks. Every test ends
//! with fsck on the image.

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::MemDevice;
use aegis_diskfs::DiskFs;
use aegis_fs::ObjectRead;
use aegis_testkit::Kit;
use aegis_vfs::*;

const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
const ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE;
const COLLAPSE: i32 = libc::FALLOC_FL_COLLAPSE_RANGE;
const INSERT: i32 = libc::FALLOC_FL_INSERT_RANGE;
const RS: u64 = 16 << 10;

fn kit() -> Kit {
    Kit::default().size(64 << 20).record_size(RS as u32)
}

fn create(fs: &DiskFs, name: &str) -> (Ino, Fh) {
    aegis_testkit::create_file(fs, name)
}

fn avail(fs: &DiskFs) -> u64 {
    let s = fs.statfs(ROOT_INO).unwrap();
    s.bavail * s.frsize as u64
}

fn free(fs: &DiskFs) -> u64 {
    let s = fs.statfs(ROOT_INO).unwrap();
    s.bfree * s.frsize as u64
}

fn blocks(fs: &DiskFs, ino: Ino) -> u64 {
    fs.getattr(ino).unwrap().blocks
}

fn reserved(fs: &DiskFs) -> u64 {
    fs.store().reserved_bytes()
}

/// What an unwritten preallocated record holds for the tree growth of
/// its first write, beyond its data blocks.
fn tree_share(fs: &DiskFs) -> u64 {
    let copies = fs.store().config().metadata_copies;
    aegis_fs::posix::ShareRule::new(fs.store().block_size(), copies, true).tree_bytes
}

/// Rewrite `[0, len)` of `ino` with noise of `seed` in one call and read
/// it back.
fn rewrite_all(fs: &DiskFs, ino: Ino, fh: Fh, len: u64, seed: u64) {
    let all = aegis_testkit::noise(len as usize, seed);
    match fs.write(ino, fh, 0, &all) {
        Ok(n) => assert_eq!(n as u64, len, "rewrite of {len} bytes: short write"),
        Err(e) => panic!("rewrite of {len} bytes in one call: {e:?}"),
    }
    assert!(fs.read(ino, fh, 0, len as u32).unwrap() == all);
}

/// Let the filler `ino` take in 4 KiB writes at `off` all it still can.
fn fill_up(fs: &DiskFs, ino: Ino, fh: Fh, off: u64) {
    let page = aegis_testkit::noise(4096, off);
    let mut n = 0;
    while fs.write(ino, fh, off + n, &page).is_ok() {
        n += 4096;
    }
}

/// The reservation of `records` unwritten records holding `data` bytes.
fn held(fs: &DiskFs, data: u64, records: u64) -> u64 {
    data + records * tree_share(fs)
}

/// The meta record's counter, read from the tree (not the store's copy).
fn meta_reserved(fs: &DiskFs) -> (u64, u64) {
    fs.store()
        .view(aegis_fs::dataset::ROOT_DATASET, |v| {
            let m = v.meta()?.unwrap();
            Ok::<_, aegis_fs::FsError>((m.features, m.reserved))
        })
        .unwrap()
}

fn fsck(dev: &Arc<MemDevice>) {
    kit().fsck_clean(dev.clone());
}

#[test]
fn fallocate_past_free_space_is_enospc_and_changes_nothing() {
    let kit = kit();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let (ino, fh) = create(&fs, "f");
    let room = avail(&fs);
    assert_eq!(fs.fallocate(ino, fh, 0, 2 * room, 0), Err(FsError::NoSpace));
    assert_eq!(
        fs.fallocate(ino, fh, 0, 2 * room, KEEP),
        Err(FsError::NoSpace)
    );
    let a = fs.getattr(ino).unwrap();
    assert_eq!((a.size, a.blocks), (0, 0));
    assert_eq!(reserved(&fs), 0);
    assert_eq!(
        meta_reserved(&fs),
        (0, 0),
        "no feature until a reservation stands"
    );
    fs.release(ino, fh).unwrap();
    fs.unmount().unwrap();
    fsck(&dev);
}

#[test]
fn reservation_shows_in_st_blocks_and_statfs_and_truncate_punch_unlink_release_it() {
    let kit = kit();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let (ino, fh) = create(&fs, "f");
    let (avail0, free0) = (avail(&fs), free(&fs));
    let len = 4 << 20;
    fs.fallocate(ino, fh, 0, len, 0).unwrap();
    let a = fs.getattr(ino).unwrap();
    assert_eq!((a.size, a.blocks), (len, len / 512));
    assert!(tree_share(&fs) > 0);
    assert_eq!(reserved(&fs), held(&fs, len, len / RS));
    let features = aegis_fs::posix::FEATURE_PREALLOC | aegis_fs::posix::FEATURE_PREALLOC_TREE;
    assert_eq!(meta_reserved(&fs), (features, held(&fs, len, len / RS)));
    assert!(avail(&fs) + len <= avail0, "statfs available drops");
    assert!(free(&fs) + len <= free0, "statfs free drops");
    // Reads as zeroes.
    assert!(fs
        .read(ino, fh, 100_000, 5000)
        .unwrap()
        .iter()
        .all(|&b| b == 0));
    // Zeroes written over a reservation keep it.
    fs.write(ino, fh, 0, &vec![0u8; 2 * RS as usize]).unwrap();
    assert_eq!(reserved(&fs), held(&fs, len, len / RS));
    // KEEP_SIZE past the end: reserved, size unchanged.
    fs.fallocate(ino, fh, len, len, KEEP).unwrap();
    assert_eq!(fs.getattr(ino).unwrap().size, len);
    assert_eq!(blocks(&fs, ino), 2 * len / 512);
    // Shrinking releases everything past the new end, KEEP_SIZE's too.
    let set = SetAttr {
        size: Some(3 << 20),
        ..Default::default()
    };
    fs.setattr(&Request::root(), ino, &set, None).unwrap();
    assert_eq!(blocks(&fs, ino), (3 << 20) / 512);
    assert_eq!(reserved(&fs), held(&fs, 3 << 20, (3 << 20) / RS));
    // A punch releases the records it covers whole.
    fs.fallocate(ino, fh, 1 << 20, 1 << 20, PUNCH).unwrap();
    assert_eq!(reserved(&fs), held(&fs, 2 << 20, (2 << 20) / RS));
    assert_eq!(blocks(&fs, ino), (2 << 20) / 512);
    // Unlink frees the rest once the inode goes.
    fs.unlink(ROOT_INO, OsStr::new("f")).unwrap();
    assert_eq!(
        reserved(&fs),
        held(&fs, 2 << 20, (2 << 20) / RS),
        "still open"
    );
    fs.release(ino, fh).unwrap();
    fs.forget(ino, 1);
    assert_eq!(reserved(&fs), 0);
    assert_eq!(meta_reserved(&fs).1, 0);
    fs.unmount().unwrap();
    fsck(&dev);
}

/// A file "reserved" with `[0, len)` preallocated (`mode`) and a file
/// "filler" that then took every byte ordinary writes could get, in
/// 1 MiB, record and 4 KiB writes of noise: (reserved, its handle,
/// filler, its handle, filler's size).
fn reserve_then_fill(fs: &DiskFs, len: u64, mode: i32) -> (Ino, Fh, Ino, Fh, u64) {
    let (a, fa) = create(fs, "reserved");
    fs.fallocate(a, fa, 0, len, mode).unwrap();
    let (b, fb) = create(fs, "filler");
    let mut off = 0;
    for n in [1 << 20, RS as usize, 4096] {
        let chunk = aegis_testkit::noise(n, off);
        loop {
            match fs.write(b, fb, off, &chunk) {
                Ok(k) => off += k as u64,
                Err(FsError::NoSpace) => break,
                Err(e) => panic!("filler: {e:?}"),
            }
        }
    }
    assert_eq!(fs.write(b, fb, off, &[1u8; 4096]), Err(FsError::NoSpace));
    assert!(len > 0 && off > 0);
    (a, fa, b, fb, off)
}

#[test]
fn writes_into_a_reservation_succeed_on_a_full_pool() {
    let kit = kit();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let len = avail(&fs) * 3 / 4 / RS * RS;
    let (a, fa, b, fb, off) = reserve_then_fill(&fs, len, 0);
    let small = vec![1u8; 4096];
    // Every record of the reservation takes its first write: whole
    // records, and then single small writes at the start of records.
    let data: Vec<u8> = (0..RS).map(|i| (i % 251) as u8 + 1).collect();
    let mut pos = 0;
    while pos + RS <= len / 2 {
        fs.write(a, fa, pos, &data).unwrap();
        pos += RS;
    }
    while pos < len {
        fs.write(a, fa, pos, &small).unwrap();
        pos += RS;
    }
    // The records stay preallocated: data plus share is still the whole
    // reservation, and so are st_blocks.
    assert_eq!(blocks(&fs, a), len / 512);
    assert_eq!(fs.read(a, fa, RS, RS as u32).unwrap(), data);
    assert_eq!(fs.read(a, fa, len - RS, 4096).unwrap(), small);
    // Rewrites inside the reservation are paid for too, across commits
    // (1 MiB of records, three times: each round's old blocks wait out
    // their deferral in the pool's commit reserve).
    // Incompressible, so each block takes its record's whole share.
    let other = aegis_testkit::noise(RS as usize, 0);
    for round in 0..3 {
        let mut pos = 0;
        while pos < (1 << 20) {
            if let Err(e) = fs.write(a, fa, pos, &other) {
                panic!("rewrite {round} at {pos} of {len}: {e:?}");
            }
            pos += RS;
        }
        fs.sync().unwrap();
    }
    assert_eq!(fs.read(a, fa, RS, RS as u32).unwrap(), other);
    assert_eq!(blocks(&fs, a), len / 512);
    // What the records' writes gave back (tree share they did not need,
    // room the commits made) may go to others; the reservation still
    // takes its rewrites.
    fill_up(&fs, b, fb, off);
    rewrite_all(&fs, a, fa, len, 3);
    fs.release(a, fa).unwrap();
    fs.release(b, fb).unwrap();
    fs.unmount().unwrap();
    fsck(&dev);
}

#[test]
fn small_sequential_writes_fill_a_reservation_on_a_full_pool() {
    let kit = kit();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let len = avail(&fs) / 2 / RS * RS;
    let (a, fa, b, fb, _) = reserve_then_fill(&fs, len, KEEP);
    // An appending log: 4 KiB at a time, each record rewritten four times
    // (16 KiB records), with commits in between.
    let page: Vec<u8> = (0..4096).map(|i| (i % 7) as u8 + 1).collect();
    let mut pos = 0;
    while pos < len {
        if let Err(e) = fs.write(a, fa, pos, &page) {
            panic!("append at {pos} of {len}: {e:?}");
        }
        pos += 4096;
        if pos % (64 * RS) == 0 {
            fs.sync().unwrap();
        }
    }
    assert_eq!(blocks(&fs, a), len / 512, "still all reserved or written");
    assert_eq!(fs.read(a, fa, len - 4096, 4096).unwrap(), page);
    fs.release(a, fa).unwrap();
    fs.release(b, fb).unwrap();
    fs.unmount().unwrap();
    fsck(&dev);
}

#[test]
fn reservation_is_exact_after_remount_and_after_log_replay() {
    let kit = kit();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let (ino, fh) = create(&fs, "f");
    fs.write(ino, fh, 0, b"head").unwrap();
    fs.fsync(ino, fh, false).unwrap(); // the first fsync arms the log
    fs.fallocate(ino, fh, 0, 10 * RS + 100, 0).unwrap();
    fs.fallocate(ino, fh, 20 * RS, 3 * RS, KEEP).unwrap();
    fs.write(ino, fh, 2 * RS, b"second record").unwrap();
    fs.fallocate(ino, fh, 5 * RS, RS, PUNCH).unwrap();
    fs.fallocate(ino, fh, 6 * RS, 2 * RS, ZERO | KEEP).unwrap();
    let before = fs.store().last_uberblock().unwrap().txg;
    fs.fsync(ino, fh, false).unwrap();
    assert_eq!(
        fs.store().last_uberblock().unwrap().txg,
        before,
        "the fsync went to the log"
    );
    let want = (fs.getattr(ino).unwrap(), reserved(&fs));
    let content = fs.read(ino, fh, 0, (11 * RS) as u32).unwrap();
    // Record 0 held data before, 5 is punched; the rest of 0..=10 and
    // 20..23 are reserved (record 10 for 100 bytes: one block), all
    // unwritten until the commit stores record 2's small write, which
    // then takes one block of its share and its tree growth.
    let bs = fs.statfs(ROOT_INO).unwrap().frsize as u64;
    assert_eq!(want.1, held(&fs, 7 * RS + bs + 3 * RS + RS, 12));
    let want = (want.0, held(&fs, 7 * RS + bs + 3 * RS + (RS - bs), 11));
    let crash = Arc::new(dev.snapshot());
    fs.release(ino, fh).unwrap();
    fs.unmount().unwrap();
    for image in [dev.clone(), crash] {
        let fs = kit.mount(image.clone()).unwrap();
        fs.sync().unwrap();
        let a = fs.getattr(ino).unwrap();
        assert_eq!((a.size, a.blocks), (want.0.size, want.0.blocks));
        assert_eq!(reserved(&fs), want.1);
        assert_eq!(meta_reserved(&fs).1, want.1);
        let fh = fs.open(ino, libc::O_RDONLY).unwrap();
        assert_eq!(fs.read(ino, fh, 0, (11 * RS) as u32).unwrap(), content);
        fs.release(ino, fh).unwrap();
        fs.unmount().unwrap();
        fsck(&image);
    }
}

fn pattern(n: u64, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 253) as u8 ^ seed | 1).collect()
}

fn read_all(fs: &DiskFs, ino: Ino, fh: Fh) -> Vec<u8> {
    let size = fs.getattr(ino).unwrap().size;
    fs.read(ino, fh, 0, size as u32).unwrap()
}

#[test]
fn zero_collapse_and_insert_ranges_move_contents() {
    let kit = kit();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let (ino, fh) = create(&fs, "f");
    let mut model = pattern(8 * RS + 1000, 7);
    fs.write(ino, fh, 0, &model).unwrap();

    // ZERO_RANGE inside the file: zeroes, the range stays allocated.
    fs.fallocate(ino, fh, RS + 10, 2 * RS, ZERO).unwrap();
    model[(RS + 10) as usize..(3 * RS + 10) as usize].fill(0);
    assert_eq!(read_all(&fs, ino, fh), model);
    assert_eq!(
        reserved(&fs),
        held(&fs, RS, 1),
        "record 2, whole in the range, is reserved"
    );
    // ZERO_RANGE past the end extends the size unless KEEP_SIZE.
    fs.fallocate(ino, fh, 9 * RS, RS, ZERO | KEEP).unwrap();
    assert_eq!(fs.getattr(ino).unwrap().size, model.len() as u64);
    fs.fallocate(ino, fh, 8 * RS + 1000, 500, ZERO).unwrap();
    model.resize(model.len() + 500, 0);
    assert_eq!(read_all(&fs, ino, fh), model);

    // COLLAPSE_RANGE of records 1..3.
    fs.fallocate(ino, fh, RS, 2 * RS, COLLAPSE).unwrap();
    model.drain(RS as usize..(3 * RS) as usize);
    assert_eq!(read_all(&fs, ino, fh), model);
    // INSERT_RANGE at record 0 (an inline-free file) and in the middle.
    fs.fallocate(ino, fh, 2 * RS, RS, INSERT).unwrap();
    model.splice(2 * RS as usize..2 * RS as usize, vec![0; RS as usize]);
    assert_eq!(read_all(&fs, ino, fh), model);
    fs.fallocate(ino, fh, 0, RS, INSERT).unwrap();
    model.splice(0..0, vec![0; RS as usize]);
    assert_eq!(read_all(&fs, ino, fh), model);
    fs.release(ino, fh).unwrap();

    // An inline file moved by an insert at 0 becomes a block record.
    let (small, sh) = create(&fs, "small");
    fs.write(small, sh, 0, b"tiny").unwrap();
    fs.fallocate(small, sh, 0, RS, INSERT).unwrap();
    let mut want = vec![0u8; RS as usize];
    want.extend_from_slice(b"tiny");
    assert_eq!(read_all(&fs, small, sh), want);
    fs.release(small, sh).unwrap();

    fs.unmount().unwrap();
    fsck(&dev);
    let fs = kit.mount(dev.clone()).unwrap();
    let fh = fs.open(ino, libc::O_RDONLY).unwrap();
    assert_eq!(read_all(&fs, ino, fh), model, "after a remount");
    fs.release(ino, fh).unwrap();
    fs.unmount().unwrap();
    fsck(&dev);
}

#[test]
fn bad_modes_and_ranges_get_linux_errors() {
    let kit = kit();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let (ino, fh) = create(&fs, "f");
    fs.write(ino, fh, 0, &pattern(4 * RS, 3)).unwrap();
    let einval = |r: Result<()>| assert_eq!(r.map_err(|e| e.errno()), Err(libc::EINVAL));
    assert_eq!(
        fs.fallocate(ino, fh, 0, RS, 0x100).map_err(|e| e.errno()),
        Err(libc::EOPNOTSUPP)
    );
    assert_eq!(
        fs.fallocate(ino, fh, 0, RS, libc::FALLOC_FL_PUNCH_HOLE)
            .map_err(|e| e.errno()),
        Err(libc::EOPNOTSUPP),
        "punch without KEEP_SIZE"
    );
    assert_eq!(
        fs.fallocate(ino, fh, 0, RS, ZERO | PUNCH)
            .map_err(|e| e.errno()),
        Err(libc::EOPNOTSUPP)
    );
    einval(fs.fallocate(ino, fh, 0, 0, 0));
    einval(fs.fallocate(ino, fh, 0, RS, COLLAPSE | KEEP));
    einval(fs.fallocate(ino, fh, 4096, RS, COLLAPSE));
    einval(fs.fallocate(ino, fh, 0, RS + 4096, INSERT));
    einval(fs.fallocate(ino, fh, 2 * RS, 2 * RS, COLLAPSE)); // reaches EOF
    einval(fs.fallocate(ino, fh, 4 * RS, RS, INSERT)); // at EOF
    let big = (i64::MAX as u64) / RS * RS;
    assert_eq!(fs.fallocate(ino, fh, 0, big, INSERT), Err(FsError::TooBig));
    assert_eq!(
        fs.fallocate(ino, fh, u64::MAX - 5, 10, 0),
        Err(FsError::TooBig)
    );
    assert_eq!(
        fs.fallocate(ino, fh, i64::MAX as u64, 1, 0),
        Err(FsError::TooBig)
    );
    // A huge reservation is ENOSPC, quickly.
    assert_eq!(
        fs.fallocate(ino, fh, 0, 1 << 60, KEEP),
        Err(FsError::NoSpace)
    );
    assert_eq!(
        fs.read(ino, fh, 0, (4 * RS) as u32).unwrap(),
        pattern(4 * RS, 3)
    );
    fs.release(ino, fh).unwrap();
    fs.unmount().unwrap();
    fsck(&dev);
}

/// Fill everything but the reservation, then write and rewrite all of it:
/// in 1 MiB pieces (what the kernel sends), and in one call of the whole
/// range (the embedded API), with small records so that the tree grows by
/// a block pointer per record. Every write must succeed.
#[test]
fn whole_reservation_writes_and_rewrites_succeed_on_a_full_pool() {
    let kit = kit();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let len = avail(&fs) * 3 / 4 / RS * RS;
    let (a, fa, b, fb, off) = reserve_then_fill(&fs, len, 0);
    for round in 0..2u64 {
        let piece = aegis_testkit::noise(1 << 20, round);
        let mut pos = 0;
        while pos < len {
            let n = (len - pos).min(1 << 20) as usize;
            if let Err(e) = fs.write(a, fa, pos, &piece[..n]) {
                panic!("1 MiB pieces, round {round}: at {pos} of {len}: {e:?}");
            }
            pos += n as u64;
        }
        fs.fsync(a, fa, false).unwrap();
    }
    for round in 2..4u64 {
        rewrite_all(&fs, a, fa, len, round);
    }
    // All written; a record that went in pieces also counts its header.
    assert!(blocks(&fs, a) >= len / 512);
    fill_up(&fs, b, fb, off);
    rewrite_all(&fs, a, fa, len, 9);
    fs.release(a, fa).unwrap();
    fs.release(b, fb).unwrap();
    fs.unmount().unwrap();
    fsck(&dev);
}

/// Writes into preallocated records wait in memory for the commit as any
/// others (no block until then), while every figure a user sees stays
/// what the reservation says: st_blocks, the reservation, SEEK_HOLE. A
/// punch, a truncate and a write past a short record's length each store
/// the waiting record first and then act as on the tree.
#[test]
fn writes_into_a_reservation_wait_for_the_commit_with_exact_accounts() {
    let kit = kit();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    let (a, fa) = create(&fs, "f");
    let size = 4 * RS + RS / 2;
    fs.fallocate(a, fa, 0, size, 0).unwrap();
    fs.sync().unwrap();
    let (b0, r0) = (blocks(&fs, a), reserved(&fs));
    let allocs = fs.store().allocation_count();
    let page = aegis_testkit::noise(4096, 1);
    for rec in 0..4 {
        fs.write(a, fa, rec * RS + 100, &page).unwrap();
    }
    assert_eq!(
        fs.store().allocation_count(),
        allocs,
        "no block before the commit"
    );
    assert_eq!((blocks(&fs, a), reserved(&fs)), (b0, r0));
    assert_eq!(fs.lseek(a, fa, 0, Whence::Hole).unwrap(), size);
    assert_eq!(fs.read(a, fa, RS + 100, 4096).unwrap(), page);
    assert_eq!(fs.read(a, fa, RS, 100).unwrap(), vec![0; 100]);
    // Punch record 1 whole: its reservation goes, as on the tree.
    fs.fallocate(a, fa, RS, RS, PUNCH).unwrap();
    assert_eq!(fs.read(a, fa, RS + 100, 4096).unwrap(), vec![0; 4096]);
    assert_eq!(blocks(&fs, a), b0 - RS / 512);
    // Cut record 2 in the middle: its share ends at the new end.
    truncate(&fs, a, 2 * RS + RS / 4);
    let kept = fs.read(a, fa, 2 * RS + 100, 4096).unwrap();
    assert!(kept == page[..4096 - 100], "the cut record keeps its head");
    // Grow again and write past the short last record's length.
    truncate(&fs, a, size);
    fs.fallocate(a, fa, 4 * RS, RS / 2, 0).unwrap();
    fs.write(a, fa, 4 * RS + 10, &page).unwrap();
    fs.write(a, fa, 4 * RS + RS / 2 - 10, &page).unwrap();
    let end = 4 * RS + RS / 2 - 10 + 4096;
    assert_eq!(fs.getattr(a).unwrap().size, end);
    assert_eq!(fs.read(a, fa, 4 * RS + 10, 4096).unwrap(), page);
    fs.sync().unwrap();
    assert_eq!(
        reserved(&fs),
        meta_reserved(&fs).1,
        "counter as in the tree"
    );
    assert_eq!(fs.read(a, fa, 100, 4096).unwrap(), page);
    assert_eq!(fs.read(a, fa, 4 * RS + RS / 2 - 10, 4096).unwrap(), page);
    fs.release(a, fa).unwrap();
    fs.unmount().unwrap();
    fsck(&dev);
}

fn truncate(fs: &DiskFs, ino: Ino, size: u64) {
    let set = SetAttr {
        size: Some(size),
        ..Default::default()
    };
    fs.setattr(&Request::root(), ino, &set, None).unwrap();
}
