//! Send and receive through the store: a full stream and a chain of
//! incremental ones, received into another pool, give snapshots equal in
//! everything a user sees (contents, modes, owners, times, xattrs, hard
//! links, holes, preallocations, special files); the hole-birth patterns
//! of ZFS (truncate then write past the old end; punch a hole in a record
//! the base shares) travel; damaged streams are refused whole and leave
//! the target as it was; an interrupted receive resumes or is undone.
//! Every test ends with fsck of both pools.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use aegis_block::{DeviceRef, MemDevice};
use aegis_diskfs::{DiskFs, MountOptions};
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::receive::ReceiveOptions;
use aegis_fs::receive_state::ResumeToken;
use aegis_fs::Store;
use aegis_testkit::{noise, Kit};
use aegis_vfs::{FileSystem, FileType, Ino, Request, SetAttr, TimeOrNow, Whence, ROOT_INO};

fn mount(kit: &Kit, dev: &Arc<MemDevice>, ds: Option<&str>, snap: Option<&str>) -> Arc<DiskFs> {
    let opts = MountOptions {
        dataset_name: ds.map(str::to_string),
        snapshot_name: snap.map(str::to_string),
        ..kit.mount_opts()
    };
    aegis_diskfs::open(vec![dev.clone() as DeviceRef], &opts).unwrap()
}

fn lookup(fs: &DiskFs, path: &str) -> Ino {
    let mut ino = ROOT_INO;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = fs.lookup(ino, OsStr::new(part)).unwrap().ino;
    }
    ino
}

fn parent_and_name(fs: &DiskFs, path: &str) -> (Ino, String) {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    (lookup(fs, dir), name.to_string())
}

fn write_at(fs: &DiskFs, path: &str, off: u64, data: &[u8]) {
    let (dir, name) = parent_and_name(fs, path);
    let (ino, fh) = match fs.lookup(dir, OsStr::new(&name)) {
        Ok(a) => (a.ino, fs.open(a.ino, libc::O_RDWR).unwrap()),
        Err(_) => {
            let (a, fh) = fs
                .create(
                    &Request::root(),
                    dir,
                    OsStr::new(&name),
                    0o644,
                    libc::O_RDWR,
                )
                .unwrap();
            (a.ino, fh)
        }
    };
    fs.write(ino, fh, off, data).unwrap();
    fs.release(ino, fh).unwrap();
}

fn set(fs: &DiskFs, path: &str, s: SetAttr) {
    fs.setattr(&Request::root(), lookup(fs, path), &s, None)
        .unwrap();
}

fn at_secs(n: u64) -> Option<TimeOrNow> {
    Some(TimeOrNow::Time(UNIX_EPOCH + Duration::from_secs(n)))
}

/// Everything a user can see of one tree, one line per name.
fn dump(fs: &DiskFs) -> Vec<String> {
    let mut out = Vec::new();
    walk(fs, ROOT_INO, "", &mut out);
    out
}

fn walk(fs: &DiskFs, dir: Ino, path: &str, out: &mut Vec<String>) {
    let fh = fs.opendir(dir, 0).unwrap();
    let mut es = fs.readdir(dir, fh, 0, usize::MAX).unwrap();
    fs.releasedir(dir, fh).unwrap();
    es.retain(|e| e.offset > 2);
    es.sort_by(|a, b| a.name.cmp(&b.name));
    for e in es {
        let p = format!("{path}/{}", String::from_utf8_lossy(&e.name));
        let a = fs.getattr(e.ino).unwrap();
        let mut line = format!(
            "{p} ino{} {:?} {:o} n{} u{} g{} s{} b{} r{} t{:?}/{:?}/{:?}",
            a.ino,
            a.kind,
            a.perm,
            a.nlink,
            a.uid,
            a.gid,
            a.size,
            a.blocks,
            a.rdev,
            a.atime,
            a.mtime,
            a.ctime
        );
        line += &xattrs(fs, e.ino);
        match a.kind {
            FileType::RegularFile => line += &contents(fs, e.ino, a.size),
            FileType::Symlink => line += &format!(" -> {:?}", fs.readlink(e.ino).unwrap()),
            _ => {}
        }
        out.push(line);
        if a.kind == FileType::Directory {
            walk(fs, e.ino, &p, out);
        }
    }
}

fn xattrs(fs: &DiskFs, ino: Ino) -> String {
    let aegis_vfs::XattrReply::Data(list) = fs.listxattr(ino, 1 << 16).unwrap() else {
        panic!("a size asked for")
    };
    let mut s = String::new();
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::new(std::str::from_utf8(name).unwrap());
        if let aegis_vfs::XattrReply::Data(v) = fs.getxattr(ino, name, 1 << 16).unwrap() {
            s += &format!(" x{name:?}={}", blake3::hash(&v).to_hex());
        }
    }
    s
}

/// The content's hash and where its data lies (SEEK_DATA / SEEK_HOLE).
fn contents(fs: &DiskFs, ino: Ino, size: u64) -> String {
    let fh = fs.open(ino, libc::O_RDONLY).unwrap();
    let d = fs.read(ino, fh, 0, size as u32).unwrap();
    let mut map = Vec::new();
    let mut off = 0;
    for _ in 0..10_000 {
        let Ok(data) = fs.lseek(ino, fh, off as i64, Whence::Data) else {
            break;
        };
        let hole = fs.lseek(ino, fh, data as i64, Whence::Hole).unwrap();
        map.push((data, hole));
        if hole >= size {
            break;
        }
        off = hole;
    }
    fs.release(ino, fh).unwrap();
    format!(" {} data{map:?}", blake3::hash(&d).to_hex())
}

fn snapshot_dump(kit: &Kit, dev: &Arc<MemDevice>, ds: Option<&str>, snap: &str) -> Vec<String> {
    let fs = mount(kit, dev, ds, Some(snap));
    let d = dump(&fs);
    fs.unmount().unwrap();
    d
}

/// A tree with every kind of thing a stream must carry.
fn populate(fs: &DiskFs) {
    let root = Request::root();
    fs.mkdir(&root, ROOT_INO, OsStr::new("dir"), 0o750).unwrap();
    write_at(fs, "small", 0, b"inline bytes");
    write_at(fs, "dir/big", 0, &noise(700_000, 1));
    write_at(fs, "text", 0, "compressible ".repeat(40_000).as_bytes());
    // Sparse: data, a hole of many records, data.
    write_at(fs, "sparse", 0, &noise(5000, 2));
    write_at(fs, "sparse", 3 << 20, &noise(5000, 3));
    // Preallocated, partly written.
    let ino = lookup(fs, "sparse");
    let fh = fs.open(ino, libc::O_RDWR).unwrap();
    fs.fallocate(ino, fh, 4 << 20, 1 << 20, libc::FALLOC_FL_KEEP_SIZE)
        .unwrap();
    fs.release(ino, fh).unwrap();
    fs.link(lookup(fs, "dir/big"), ROOT_INO, OsStr::new("hardlink"))
        .unwrap();
    fs.symlink(&root, ROOT_INO, OsStr::new("sym"), OsStr::new("dir/big"))
        .unwrap();
    fs.mknod(
        &root,
        ROOT_INO,
        OsStr::new("fifo"),
        libc::S_IFIFO | 0o600,
        0,
    )
    .unwrap();
    fs.mknod(
        &root,
        lookup(fs, "dir"),
        OsStr::new("null"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    )
    .unwrap();
    fs.setxattr(&root, lookup(fs, "small"), OsStr::new("user.a"), b"1", 0)
        .unwrap();
    fs.setxattr(
        &root,
        lookup(fs, "dir"),
        OsStr::new("user.long"),
        &noise(3000, 4),
        0,
    )
    .unwrap();
    set(
        fs,
        "small",
        SetAttr {
            uid: Some(1000),
            gid: Some(100),
            mode: Some(0o4755),
            ..Default::default()
        },
    );
    set(
        fs,
        "text",
        SetAttr {
            atime: at_secs(1_000_000),
            mtime: at_secs(2_000_000),
            ..Default::default()
        },
    );
}

/// Changes of every kind, the two hole-birth patterns among them.
fn change(fs: &DiskFs, round: u64) {
    let root = Request::root();
    // Truncate, then write past the old end: the records in between are
    // holes the base had data in.
    set(
        fs,
        "dir/big",
        SetAttr {
            size: Some(100),
            ..Default::default()
        },
    );
    write_at(fs, "dir/big", 900_000 + round, &noise(3000, 10 + round));
    // Punch a hole in a record the base shares.
    let ino = lookup(fs, "text");
    let fh = fs.open(ino, libc::O_RDWR).unwrap();
    fs.fallocate(
        ino,
        fh,
        140_000,
        200_000,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
    )
    .unwrap();
    fs.release(ino, fh).unwrap();
    write_at(fs, "sparse", (4 << 20) + 4096, &noise(9000, 20 + round));
    fs.rename(
        ROOT_INO,
        OsStr::new("small"),
        lookup(fs, "dir"),
        OsStr::new(&format!("moved{round}")),
        0,
    )
    .unwrap();
    write_at(fs, "small", 0, format!("new small {round}").as_bytes());
    fs.unlink(ROOT_INO, OsStr::new("fifo")).ok();
    fs.removexattr(lookup(fs, "dir"), OsStr::new("user.long"))
        .ok();
    fs.setxattr(&root, lookup(fs, "sym"), OsStr::new("trusted.t"), b"x", 0)
        .ok();
    fs.mkdir(&root, ROOT_INO, OsStr::new(&format!("d{round}")), 0o700)
        .unwrap();
    for i in 0..20 {
        write_at(
            fs,
            &format!("d{round}/f{i}"),
            0,
            &noise(i * 1000, i as u64 + round),
        );
    }
    set(
        fs,
        "dir",
        SetAttr {
            mode: Some(0o711),
            ..Default::default()
        },
    );
}

fn stream(store: &Store, ds: u64, snap: &str, base: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .send(ds, snap, base, None, &mut out, &mut |_| {})
        .unwrap();
    out
}

fn receive(store: &Store, target: &str, s: &[u8], opts: ReceiveOptions) -> aegis_fs::Result<()> {
    store.receive(target, s, opts, &mut |_| {}).map(|_| ())
}

/// Pool A with the populated tree in snapshot s1, and an empty pool B.
fn two_pools(kit: &Kit) -> (Arc<MemDevice>, Arc<MemDevice>) {
    let a = kit.fresh();
    let fs = mount(kit, &a, None, None);
    populate(&fs);
    fs.unmount().unwrap();
    let store = kit.open_store(a.clone());
    store.create_snapshot(ROOT_DATASET, "s1").unwrap();
    store.shutdown().unwrap();
    (a, kit.fresh())
}

/// [`two_pools`] with a second snapshot s2 of A after one round of
/// changes; A's store open, its full stream of s1 and its s1 → s2 one.
type Chain = (Arc<MemDevice>, Arc<MemDevice>, Arc<Store>, Vec<u8>, Vec<u8>);

fn chain(kit: &Kit) -> Chain {
    let (a, b) = two_pools(kit);
    take(kit, &a, 1, "s2");
    let src = kit.open_store(a.clone());
    let full = stream(&src, ROOT_DATASET, "s1", None);
    let inc = stream(&src, ROOT_DATASET, "s2", Some("s1"));
    (a, b, src, full, inc)
}

fn take(kit: &Kit, dev: &Arc<MemDevice>, round: u64, snap: &str) {
    let fs = mount(kit, dev, None, None);
    change(&fs, round);
    fs.unmount().unwrap();
    let store = kit.open_store(dev.clone());
    store.create_snapshot(ROOT_DATASET, snap).unwrap();
    store.shutdown().unwrap();
}

#[test]
fn a_full_stream_and_an_incremental_chain_round_trip() {
    let kit = Kit::default().size(256 << 20);
    let (a, b) = two_pools(&kit);
    take(&kit, &a, 1, "s2");
    take(&kit, &a, 2, "s3");
    let src = kit.open_store(a.clone());
    let full = stream(&src, ROOT_DATASET, "s1", None);
    let inc2 = stream(&src, ROOT_DATASET, "s2", Some("s1"));
    let inc3 = stream(&src, ROOT_DATASET, "s3", Some("s2"));
    src.shutdown().unwrap();
    assert!(
        inc2.len() * 2 < full.len(),
        "an incremental stream carries what changed: {} vs {} bytes",
        inc2.len(),
        full.len()
    );
    let dst = kit.open_store(b.clone());
    receive(&dst, "copy", &full, ReceiveOptions::default()).unwrap();
    // Out of order: s3's base is s2, which is not there yet.
    let e = receive(&dst, "copy", &inc3, ReceiveOptions::default()).unwrap_err();
    assert!(e.to_string().contains("base"), "{e}");
    receive(&dst, "copy", &inc2, ReceiveOptions::default()).unwrap();
    receive(&dst, "copy", &inc3, ReceiveOptions::default()).unwrap();
    let names: Vec<String> = dst
        .snapshots(dst.dataset_id("copy").unwrap())
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["s1", "s2", "s3"]);
    dst.shutdown().unwrap();
    for s in ["s1", "s2", "s3"] {
        let want = snapshot_dump(&kit, &a, None, s);
        if std::env::var_os("SEND_DUMP").is_some() {
            eprintln!("{s}:\n{}", want.join("\n"));
        }
        if s == "s1" {
            // The tree holds every kind the stream must carry.
            let has =
                |p: &str, what: &str| want.iter().any(|l| l.starts_with(p) && l.contains(what));
            assert!(has("/fifo ", "NamedPipe") && has("/dir/null ", "r259"));
            assert!(has("/hardlink ", " n2 ") && has("/sym ", "Symlink"));
            assert!(has("/sparse ", "data[(0, 5000), (3145728,") && has("/small ", "u1000"));
        }
        assert_eq!(
            snapshot_dump(&kit, &b, Some("copy"), s),
            want,
            "snapshot {s}"
        );
    }
    // The received dataset is a dataset like any other: it mounts
    // writable and takes changes.
    let fs = mount(&kit, &b, Some("copy"), None);
    write_at(&fs, "after", 0, b"written after the receive");
    fs.unmount().unwrap();
    kit.fsck_clean(a as DeviceRef);
    kit.fsck_clean(b as DeviceRef);
}

#[test]
fn damaged_streams_are_refused_and_leave_the_target_as_it_was() {
    let kit = Kit::default().size(256 << 20);
    let (a, b, src, full, inc) = chain(&kit);
    src.shutdown().unwrap();
    let dst = kit.open_store(b.clone());
    receive(&dst, "copy", &full, ReceiveOptions::default()).unwrap();
    let used = dst
        .dataset_used_bytes(dst.dataset_id("copy").unwrap())
        .unwrap();
    dst.shutdown().unwrap();
    let before = snapshot_dump(&kit, &b, Some("copy"), "s1");
    let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
    for cut in [10, inc.len() / 3, inc.len() / 2, inc.len() - 1] {
        damaged.push((format!("cut at {cut}"), inc[..cut].to_vec()));
    }
    for at in [20, 200, inc.len() / 2, inc.len() - 5] {
        let mut d = inc.clone();
        d[at] ^= 0x01;
        damaged.push((format!("flip at {at}"), d));
    }
    // A stream for another pool's base.
    damaged.push(("the full stream again".into(), full.clone()));
    for (what, d) in &damaged {
        let dst = kit.open_store(b.clone());
        let r = receive(&dst, "copy", d, ReceiveOptions::default());
        assert!(r.is_err(), "{what} was accepted");
        let id = dst.dataset_id("copy").unwrap();
        assert_eq!(dst.receive_state(id).unwrap(), None, "{what}: undone");
        assert_eq!(dst.snapshots(id).len(), 1, "{what}");
        dst.shutdown().unwrap();
        assert_eq!(
            snapshot_dump(&kit, &b, Some("copy"), "s1"),
            before,
            "{what}"
        );
    }
    // A full stream cut short makes no dataset.
    let dst = kit.open_store(b.clone());
    assert!(receive(
        &dst,
        "other",
        &full[..full.len() / 2],
        ReceiveOptions::default()
    )
    .is_err());
    assert!(dst.dataset_id("other").is_err());
    assert_eq!(dst.datasets().len(), 2, "root and copy, nothing else");
    let id = dst.dataset_id("copy").unwrap();
    assert_eq!(
        dst.dataset_used_bytes(id).unwrap(),
        used,
        "copy is as it was"
    );
    dst.shutdown().unwrap();
    // Nothing leaked: fsck finds every allocated block reachable.
    kit.fsck_clean(b.clone() as DeviceRef);
    // The good stream still goes in after all that.
    let dst = kit.open_store(b.clone());
    receive(&dst, "copy", &inc, ReceiveOptions::default()).unwrap();
    dst.shutdown().unwrap();
    assert_eq!(
        snapshot_dump(&kit, &b, Some("copy"), "s2"),
        snapshot_dump(&kit, &a, None, "s2")
    );
    kit.fsck_clean(a as DeviceRef);
    kit.fsck_clean(b as DeviceRef);
}

#[test]
fn an_interrupted_receive_resumes_from_its_token_or_is_undone() {
    let kit = Kit::default().size(256 << 20);
    let a = kit.fresh();
    let fs = mount(&kit, &a, None, None);
    // More records than one batch, so some are committed before the cut.
    for i in 0..1500 {
        write_at(&fs, &format!("f{i:04}"), 0, format!("file {i}").as_bytes());
    }
    write_at(&fs, "zz-big", 0, &noise(2 << 20, 9));
    fs.unmount().unwrap();
    let src = kit.open_store(a.clone());
    src.create_snapshot(ROOT_DATASET, "s").unwrap();
    let full = stream(&src, ROOT_DATASET, "s", None);
    let b = kit.fresh();
    let dst = kit.open_store(b.clone());
    let resumable = ReceiveOptions {
        resumable: true,
        ..Default::default()
    };
    let cut = full.len() - (1 << 20);
    assert!(receive(&dst, "copy", &full[..cut], resumable).is_err());
    let id = dst.dataset_id("copy").unwrap();
    let st = dst
        .receive_state(id)
        .unwrap()
        .expect("the partial receive stays");
    assert!(st.records >= 4096, "a batch was committed: {}", st.records);
    // A whole stream is not a resume, and the dataset does not mount.
    assert!(receive(&dst, "copy", &full, resumable).is_err());
    dst.shutdown().unwrap();
    let opts = MountOptions {
        dataset_name: Some("copy".into()),
        ..kit.mount_opts()
    };
    let e = aegis_diskfs::open(vec![b.clone() as DeviceRef], &opts)
        .err()
        .unwrap();
    assert!(e.to_string().contains("receive"), "{e}");
    kit.fsck_clean(b.clone() as DeviceRef);
    // The sender goes on after the token's key.
    let token = ResumeToken::parse(&st.token()).unwrap();
    let mut rest = Vec::new();
    src.send(
        ROOT_DATASET,
        "s",
        None,
        Some(&token),
        &mut rest,
        &mut |_| {},
    )
    .unwrap();
    assert!(rest.len() < full.len());
    let dst = kit.open_store(b.clone());
    receive(&dst, "copy", &rest, ReceiveOptions::default()).unwrap();
    assert_eq!(dst.receive_state(id).unwrap(), None);
    // Undo: a second receive cut short, then aborted, leaves no trace.
    assert!(receive(&dst, "again", &full[..cut], resumable).is_err());
    dst.receive_abort("again").unwrap();
    assert!(dst.dataset_id("again").is_err());
    dst.shutdown().unwrap();
    src.shutdown().unwrap();
    assert_eq!(
        snapshot_dump(&kit, &b, Some("copy"), "s"),
        snapshot_dump(&kit, &a, None, "s")
    );
    kit.fsck_clean(a as DeviceRef);
    kit.fsck_clean(b as DeviceRef);
}

#[test]
fn receive_refuses_targets_that_do_not_fit() {
    let kit = Kit::default().size(256 << 20);
    let (a, b, src, full, inc) = chain(&kit);
    assert!(src
        .send(
            ROOT_DATASET,
            "s1",
            Some("s2"),
            None,
            Vec::new(),
            &mut |_| {}
        )
        .is_err());
    src.shutdown().unwrap();
    let dst = kit.open_store(b.clone());
    let e = receive(&dst, "copy", &inc, ReceiveOptions::default()).unwrap_err();
    assert!(e.to_string().contains("no dataset"), "{e}");
    receive(&dst, "copy", &full, ReceiveOptions::default()).unwrap();
    let e = receive(&dst, "copy", &full, ReceiveOptions::default()).unwrap_err();
    assert!(e.to_string().contains("exists"), "{e}");
    assert!(receive(&dst, "bad@name", &full, ReceiveOptions::default()).is_err());
    dst.shutdown().unwrap();
    // A change after the base: refused, then rolled back with force.
    let fs = mount(&kit, &b, Some("copy"), None);
    write_at(&fs, "local", 0, b"a change after s1");
    fs.unmount().unwrap();
    let dst = kit.open_store(b.clone());
    let e = receive(&dst, "copy", &inc, ReceiveOptions::default()).unwrap_err();
    assert!(e.to_string().contains("changed since"), "{e}");
    let forced = ReceiveOptions {
        force: true,
        ..Default::default()
    };
    receive(&dst, "copy", &inc, forced).unwrap();
    dst.shutdown().unwrap();
    assert_eq!(
        snapshot_dump(&kit, &b, Some("copy"), "s2"),
        snapshot_dump(&kit, &a, None, "s2")
    );
    let fs = mount(&kit, &b, Some("copy"), None);
    assert!(
        fs.lookup(ROOT_INO, OsStr::new("local")).is_err(),
        "rolled back"
    );
    fs.unmount().unwrap();
    kit.fsck_clean(a as DeviceRef);
    kit.fsck_clean(b as DeviceRef);
}

/// A target with a time travel window: the hidden snapshots its commits
/// took are not bases, an incremental stream still finds its base, and
/// `-F` deletes the hidden ones past the base to roll back.
#[test]
fn a_time_travel_window_on_the_target_does_not_block_the_next_incremental() {
    let kit = Kit::default().size(256 << 20);
    let (a, b, src, full, inc) = chain(&kit);
    src.shutdown().unwrap();
    let dst = kit.open_store(b.clone());
    receive(&dst, "copy", &full, ReceiveOptions::default()).unwrap();
    let copy = dst.dataset_id("copy").unwrap();
    dst.set_time_travel(copy, 3600).unwrap();
    dst.shutdown().unwrap();
    let fs = mount(&kit, &b, Some("copy"), None);
    write_at(&fs, "local", 0, b"a change after s1");
    fs.sync().unwrap();
    fs.unmount().unwrap();
    let dst = kit.open_store(b.clone());
    let hidden = |s: &Store| {
        s.snapshots(copy)
            .into_iter()
            .filter(|x| x.name.starts_with('%') && !x.deleting)
            .count()
    };
    assert!(hidden(&dst) > 0, "the window kept the commits");
    let e = receive(&dst, "copy", &inc, ReceiveOptions::default()).unwrap_err();
    assert!(e.to_string().contains("changed since"), "{e}");
    let forced = ReceiveOptions {
        force: true,
        ..Default::default()
    };
    receive(&dst, "copy", &inc, forced).unwrap();
    assert_eq!(hidden(&dst), 0, "the points past the base went");
    dst.shutdown().unwrap();
    assert_eq!(
        snapshot_dump(&kit, &b, Some("copy"), "s2"),
        snapshot_dump(&kit, &a, None, "s2")
    );
    kit.fsck_clean(a as DeviceRef);
    kit.fsck_clean(b as DeviceRef);
}

/// A receive crashed at any write is all or nothing: the pool opens with
/// the stream's snapshot whole, or without it and with the receive in
/// progress, which a resume from its token finishes or an abort undoes
/// (both are tried, alternately); fsck is clean either way.
#[test]
fn a_receive_survives_every_crash_point() {
    use aegis_block::RecordingDevice;
    use std::cell::Cell;
    let kit = Kit::default().size(128 << 20);
    let (_a, fresh_b, src, full, inc) = chain(&kit);
    let rec = Arc::new(RecordingDevice::new(fresh_b.snapshot()));
    let dst = kit.open_store(rec.clone() as DeviceRef);
    dst.set_receive_batch(8);
    let state = |s: &Store| {
        let names = |id| {
            s.snapshots(id)
                .into_iter()
                .map(|x| x.name)
                .collect::<Vec<_>>()
        };
        s.dataset_id("copy").ok().map(names)
    };
    let mut states = vec![(rec.len(), state(&dst))];
    receive(&dst, "copy", &full, ReceiveOptions::default()).unwrap();
    states.push((rec.len(), state(&dst)));
    receive(&dst, "copy", &inc, ReceiveOptions::default()).unwrap();
    states.push((rec.len(), state(&dst)));
    dst.shutdown().unwrap();
    let resume = Cell::new(false);
    let done = Cell::new((0, 0));
    kit.check_crash_states(&rec, 7, &states, |s| {
        let Ok(id) = s.dataset_id("copy") else {
            return state(s);
        };
        if let Some(st) = s.receive_state(id).unwrap() {
            resume.set(!resume.get());
            if resume.get() {
                let token = ResumeToken::parse(&st.token()).unwrap();
                let base = st.is_incremental().then_some("s1");
                let mut rest = Vec::new();
                src.send(
                    ROOT_DATASET,
                    &st.name,
                    base,
                    Some(&token),
                    &mut rest,
                    &mut |_| {},
                )
                .unwrap();
                receive(s, "copy", &rest, ReceiveOptions::default()).unwrap();
                done.set((done.get().0 + 1, done.get().1));
            } else {
                s.receive_abort("copy").unwrap();
                done.set((done.get().0, done.get().1 + 1));
            }
        }
        state(s)
    });
    src.shutdown().unwrap();
    assert!(
        done.get().0 > 0 && done.get().1 > 0,
        "resumed and aborted: {:?}",
        done.get()
    );
}
