//! The decoded-data cache and read-ahead through the `FileSystem` trait:
//! reads it serves are never stale (overwrite, punch, truncate, delete and
//! reuse of the room), the policies measured on a scan beside a hot set
//! (the adaptive ones keep it, LRU does not), and read-ahead filling the
//! cache ahead of a sequential reader. Every test ends with fsck.

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::DeviceRef;
use aegis_diskfs::DiskFs;
use aegis_fs::CachePolicy;
use aegis_testkit::{noise, Kit};
use aegis_vfs::*;

const RS: u64 = 128 << 10;

fn kit(policy: CachePolicy, cache_bytes: u64, read_ahead: u32) -> Kit {
    let mut k = Kit::default().size(256 << 20).record_size(RS as u32);
    k.store.data_cache_bytes = cache_bytes;
    k.store.data_cache_policy = policy;
    k.store.read_ahead_records = read_ahead;
    k
}

fn create(fs: &DiskFs, name: &str) -> (Ino, Fh) {
    aegis_testkit::create_file(fs, name)
}

fn write_file(fs: &DiskFs, name: &str, len: u64, seed: u64) -> (Ino, Fh, Vec<u8>) {
    let (ino, fh) = create(fs, name);
    let data = noise(len as usize, seed);
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        fs.write(ino, fh, i as u64 * (1 << 20), chunk).unwrap();
    }
    (ino, fh, data)
}

#[test]
fn cached_reads_follow_every_change() {
    let k = kit(CachePolicy::default(), 64 << 20, 0);
    let dev = k.fresh();
    let fs = k.mount(dev.clone() as DeviceRef).unwrap();
    let (ino, fh, mut model) = write_file(&fs, "f", 8 * RS, 1);
    fs.syncfs().unwrap();
    assert_eq!(fs.read(ino, fh, 0, (8 * RS) as u32).unwrap(), model);
    let before = fs.store().data_cache_stats();
    assert_eq!(fs.read(ino, fh, 0, (8 * RS) as u32).unwrap(), model);
    let after = fs.store().data_cache_stats();
    assert_eq!(
        after.hits - before.hits,
        8,
        "a second read of 8 records hits 8 times"
    );

    // Overwrite part of a cached record, commit, read: the new bytes.
    let patch = noise(5000, 2);
    fs.write(ino, fh, RS + 100, &patch).unwrap();
    model[(RS + 100) as usize..(RS + 100) as usize + 5000].copy_from_slice(&patch);
    fs.syncfs().unwrap();
    assert_eq!(fs.read(ino, fh, 0, (8 * RS) as u32).unwrap(), model);

    // Punch a cached record out, then truncate into another.
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fs.fallocate(ino, fh, 2 * RS, RS, punch).unwrap();
    model[(2 * RS) as usize..(3 * RS) as usize].fill(0);
    fs.syncfs().unwrap();
    let cut = 5 * RS + 77;
    let attr = SetAttr {
        size: Some(cut),
        ..Default::default()
    };
    fs.setattr(&Request::root(), ino, &attr, Some(fh)).unwrap();
    model.truncate(cut as usize);
    fs.syncfs().unwrap();
    assert_eq!(fs.read(ino, fh, 0, (8 * RS) as u32).unwrap(), model);

    // Delete the file; new files take over its room over the next txgs.
    fs.release(ino, fh).unwrap();
    fs.unlink(ROOT_INO, OsStr::new("f")).unwrap();
    for round in 0..6 {
        let name = format!("g{round}");
        let (g, gfh, data) = write_file(&fs, &name, 8 * RS, 10 + round);
        fs.syncfs().unwrap();
        assert_eq!(fs.read(g, gfh, 0, (8 * RS) as u32).unwrap(), data, "{name}");
        fs.release(g, gfh).unwrap();
        fs.unlink(ROOT_INO, OsStr::new(&name)).unwrap();
    }
    fs.unmount().unwrap();
    k.fsck_clean(dev);
}

/// The hot set's hit rate while a scan of twice the cache runs beside it,
/// through the filesystem: 4 KiB reads, four scan records per hot read.
fn hot_hit_rate(policy: CachePolicy) -> f64 {
    let cache = 8u64 << 20;
    let k = kit(policy, cache, 0);
    let dev = k.fresh();
    let fs = k.mount(dev.clone() as DeviceRef).unwrap();
    let (hot, hfh, hot_data) = write_file(&fs, "hot", cache / 2, 1);
    let (scan, sfh, _) = write_file(&fs, "scan", 2 * cache, 2);
    fs.syncfs().unwrap();
    let (hot_records, scan_records) = (cache / 2 / RS, 2 * cache / RS);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let (mut hits, mut reads) = (0u64, 0u64);
    for pass in 0..12 {
        for r in 0..scan_records {
            for piece in 0..RS / 4096 {
                fs.read(scan, sfh, r * RS + piece * 4096, 4096).unwrap();
            }
            if r % 4 != 0 {
                continue;
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed % hot_records) * RS + 4096 * (seed % 32);
            let before = fs.store().data_cache_stats().hits;
            let got = fs.read(hot, hfh, at, 4096).unwrap();
            assert_eq!(got, hot_data[at as usize..at as usize + 4096]);
            if pass >= 6 {
                reads += 1;
                hits += fs.store().data_cache_stats().hits - before;
            }
        }
    }
    let st = fs.store().data_cache_stats();
    assert!(st.resident_bytes <= st.capacity_bytes);
    fs.unmount().unwrap();
    k.fsck_clean(dev);
    hits as f64 / reads as f64
}

#[test]
fn data_cache_policies() {
    let mut rates = Vec::new();
    for p in [CachePolicy::Arc, CachePolicy::Lru2, CachePolicy::Lru] {
        let r = hot_hit_rate(p);
        println!(
            "{:>5}: hot set hit rate {:.1}% beside a scan of 2x the cache",
            p.name(),
            r * 100.0
        );
        rates.push((p, r));
    }
    let (arc, lru2, lru) = (rates[0].1, rates[1].1, rates[2].1);
    // LRU-2, the default, keeps the hot set soonest; ARC learns it more
    // slowly but still far better than LRU.
    assert!(lru2 > 0.9, "LRU-2 lost the hot set: {rates:?}");
    assert!(arc > lru + 0.3, "ARC did not beat LRU: {rates:?}");
    assert!(
        lru < 0.5,
        "LRU kept the hot set, so the test measures nothing: {rates:?}"
    );
}

#[test]
fn read_ahead_fills_the_cache_ahead_of_a_sequential_reader() {
    for (window, expect_hits) in [(32u32, true), (0, false)] {
        let k = kit(CachePolicy::default(), 64 << 20, window);
        let dev = k.fresh();
        let fs = k.mount(dev.clone() as DeviceRef).unwrap();
        let (ino, fh, data) = write_file(&fs, "f", 32 * RS, 3);
        fs.unmount().unwrap();
        let fs = k.mount(dev.clone() as DeviceRef).unwrap();
        let (_, fh2) = (ino, fs.open(ino, libc::O_RDONLY).unwrap());
        let _ = fh;
        let mut got = Vec::new();
        for r in 0..32 {
            got.extend(fs.read(ino, fh2, r * RS, RS as u32).unwrap());
            // Give the workers a moment, as a reader doing work would.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(got == data, "window {window}: data read back differs");
        let st = fs.store().data_cache_stats();
        if expect_hits {
            assert!(
                st.hits >= 16,
                "read-ahead should serve most records: {st:?}"
            );
        } else {
            assert_eq!(st.hits, 0, "no read-ahead, each record read once: {st:?}");
        }
        fs.unmount().unwrap();
        k.fsck_clean(dev);
    }
}

#[test]
fn a_zero_cache_still_reads_right() {
    let k = kit(CachePolicy::Lru, 0, 0);
    let dev = k.fresh();
    let fs = k.mount(dev.clone() as DeviceRef).unwrap();
    let (ino, fh, data) = write_file(&fs, "f", 3 * RS + 5, 4);
    fs.syncfs().unwrap();
    for _ in 0..2 {
        assert!(fs.read(ino, fh, 0, (4 * RS) as u32).unwrap() == data);
    }
    assert_eq!(fs.store().data_cache_stats().resident_bytes, 0);
    let _ = Arc::clone(&fs);
    fs.unmount().unwrap();
    k.fsck_clean(dev);
}
