//! The per-file intent log policy: what an fsync makes durable under
//! `full`, `metadata` and `none`, and inheritance by new entries. A crash
//! is a snapshot of the device taken right after fsync returned.

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::MemDevice;
use aegis_diskfs::DiskFs;
use aegis_testkit::Kit;
use aegis_vfs::*;

fn mount(dev: &Arc<MemDevice>) -> Arc<DiskFs> {
    Kit::default().mount(dev.clone()).unwrap()
}

fn txg(fs: &DiskFs) -> u64 {
    fs.store().last_uberblock().unwrap().txg
}

fn policy(fs: &DiskFs, ino: Ino) -> String {
    match fs
        .getxattr(ino, OsStr::new("user.aegisfs.logging"), 64)
        .unwrap()
    {
        XattrReply::Data(d) => String::from_utf8(d).unwrap(),
        XattrReply::Size(_) => unreachable!(),
    }
}

/// Write `data` to a new file `name` in `dir`, fsync it, and return the
/// inode and whether the fsync had to commit a txg.
fn write_fsync(fs: &DiskFs, dir: Ino, name: &str, data: &[u8]) -> (Ino, bool) {
    let (a, fh) = fs
        .create(&Request::root(), dir, OsStr::new(name), 0o644, libc::O_RDWR)
        .unwrap();
    fs.write(a.ino, fh, 0, data).unwrap();
    let before = txg(fs);
    fs.fsync(a.ino, fh, false).unwrap();
    let committed = txg(fs) != before;
    fs.release(a.ino, fh).unwrap();
    fs.forget(a.ino, 1);
    (a.ino, committed)
}

fn read_all(fs: &DiskFs, dir: Ino, name: &str) -> Option<Vec<u8>> {
    let a = fs.lookup(dir, OsStr::new(name)).ok()?;
    let fh = fs.open(a.ino, libc::O_RDONLY).unwrap();
    let d = fs.read(a.ino, fh, 0, a.size as u32).unwrap();
    fs.release(a.ino, fh).unwrap();
    fs.forget(a.ino, 1);
    Some(d)
}

#[test]
fn fsync_under_each_policy_and_inheritance() {
    let dev = Kit::default().fresh();
    let fs = mount(&dev);
    let req = Request::root();
    let mk = |name: &str, p: &str| {
        let d = fs.mkdir(&req, ROOT_INO, OsStr::new(name), 0o755).unwrap();
        fs.forget(d.ino, 1);
        if p != "full" {
            fs.setxattr(
                &Request::root(),
                d.ino,
                OsStr::new("user.aegisfs.logging"),
                p.as_bytes(),
                0,
            )
            .unwrap();
        }
        d.ino
    };
    let (full, meta, none) = (
        mk("full", "full"),
        mk("meta", "metadata"),
        mk("none", "none"),
    );
    assert_eq!(policy(&fs, full), "full");
    assert_eq!(policy(&fs, meta), "metadata");
    assert_eq!(
        fs.setxattr(
            &Request::root(),
            full,
            OsStr::new("user.aegisfs.logging"),
            b"fast",
            0
        ),
        Err(FsError::InvalidArgument(
            "logging policy is full, metadata or none"
        ))
    );
    // The first fsync of a mount starts the log chain with a commit.
    write_fsync(&fs, ROOT_INO, "warmup", b"x");

    let data = vec![0xabu8; 10_000];
    let (f1, c1) = write_fsync(&fs, full, "a", &data);
    let (f2, c2) = write_fsync(&fs, meta, "b", &data);
    assert!(!c1 && !c2, "full and metadata fsyncs only write the log");
    // Inherited from the directories.
    assert_eq!(policy(&fs, f1), "full");
    assert_eq!(policy(&fs, f2), "metadata");
    let crash_logged = dev.snapshot();
    let (f3, c3) = write_fsync(&fs, none, "c", &data);
    assert!(c3, "a none file's fsync commits");
    assert_eq!(policy(&fs, f3), "none");
    let crash_after_none = dev.snapshot();
    drop(fs);

    // Crash right after the full and metadata fsyncs.
    let img = Arc::new(crash_logged);
    let fs = mount(&img);
    let dir = |n: &str| fs.lookup(ROOT_INO, OsStr::new(n)).unwrap().ino;
    assert_eq!(
        read_all(&fs, dir("full"), "a").unwrap(),
        data,
        "full: data replayed"
    );
    // metadata: the file and its size are back, its data was not logged.
    let b = read_all(&fs, dir("meta"), "b").unwrap();
    assert_eq!(b.len(), data.len());
    assert!(
        b.iter().all(|&x| x == 0),
        "metadata: data is durable only with a commit"
    );
    fs.unmount().unwrap();

    // Crash right after the none fsync: everything is in the commit.
    let img = Arc::new(crash_after_none);
    let fs = mount(&img);
    let dir = |n: &str| fs.lookup(ROOT_INO, OsStr::new(n)).unwrap().ino;
    assert_eq!(read_all(&fs, dir("none"), "c").unwrap(), data);
    assert_eq!(
        read_all(&fs, dir("meta"), "b").unwrap(),
        data,
        "the commit carried the metadata file's data too"
    );
    fs.unmount().unwrap();
}
