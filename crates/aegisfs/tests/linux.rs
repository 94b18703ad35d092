//! End-to-end tests of the Linux semantics that tools rely on (issue 10),
//! through a real FUSE mount, each reproducing what a user saw differ from
//! ext4. Same fixture and rules as `e2e.rs`: every test unmounts (also on
//! panic) and ends with fsck.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod common;

use common::*;

/// One reader with readdir(3) while another program renames the entries
/// of a 5,000-entry directory away and back: the read ends, no name is
/// listed twice, and every entry the renamer left alone is listed.
#[test]
fn a_directory_read_ends_while_entries_are_renamed() {
    if !fuse_available() {
        return;
    }
    const N: usize = 5000;
    let m = Mount::new("256M");
    let (dir, away) = (m.p("big"), m.p("away"));
    fs::create_dir(&dir).unwrap();
    fs::create_dir(&away).unwrap();
    for i in 0..N {
        File::create(dir.join(format!("f{i:05}"))).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The renamer takes the first half only, so the second half must be
    // listed once each.
    let renamer = {
        let (dir, away, stop) = (dir.clone(), away.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) && rounds < 2_000_000 {
                let name = format!("f{:05}", rounds as usize % (N / 2));
                fs::rename(dir.join(&name), away.join(&name)).unwrap();
                fs::rename(away.join(&name), dir.join(&name)).unwrap();
                rounds += 1;
            }
            rounds
        })
    };
    for pass in 0..3 {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (count, e) in fs::read_dir(&dir).unwrap().enumerate() {
            assert!(
                count < 3 * N,
                "pass {pass}: more than {} entries: the read never ends",
                3 * N
            );
            let name = e.unwrap().file_name().into_string().unwrap();
            *seen.entry(name).or_default() += 1;
            // A slow reader (a program doing work per entry): the
            // renamer moves names faster than they are read.
            if count % 10 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        // A stream ends at the last entry that existed when it was
        // opened, so a name renamed during the read is met once at most.
        let twice: Vec<_> = seen.iter().filter(|(_, &c)| c > 1).collect();
        assert!(
            twice.is_empty(),
            "pass {pass}: listed more than once: {twice:?}"
        );
        for i in N / 2..N {
            let name = format!("f{i:05}");
            assert_eq!(seen.get(&name), Some(&1), "pass {pass}: {name}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = renamer.join().unwrap();
    assert!(rounds > 0, "the renamer never ran");
    let names: BTreeSet<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), N);
    m.finish();
}

/// The kernel's `struct iocb` for io_submit(2) (linux/aio_abi.h), little
/// endian: libc has the syscalls but not the struct.
#[repr(C)]
#[derive(Default)]
struct Iocb {
    data: u64,
    key: u32,
    rw_flags: i32,
    lio_opcode: u16,
    reqprio: i16,
    fildes: u32,
    buf: u64,
    nbytes: u64,
    offset: i64,
    reserved2: u64,
    flags: u32,
    resfd: u32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

/// One asynchronous write with io_submit, waited for with io_getevents:
/// what databases do with O_DIRECT.
fn aio_write(fd: i32, buf: &[u8], offset: i64) -> i64 {
    const IOCB_CMD_PWRITE: u16 = 1;
    let mut ctx: libc::c_ulong = 0;
    // SAFETY: io_setup writes the context id into `ctx`.
    let r = unsafe { libc::syscall(libc::SYS_io_setup, 1, &mut ctx) };
    assert_eq!(r, 0, "io_setup: {}", std::io::Error::last_os_error());
    let mut cb = Iocb {
        lio_opcode: IOCB_CMD_PWRITE,
        fildes: fd as u32,
        buf: buf.as_ptr() as u64,
        nbytes: buf.len() as u64,
        offset,
        ..Default::default()
    };
    let mut list = [&mut cb as *mut Iocb];
    // SAFETY: one valid iocb whose buffer outlives the wait below.
    let r = unsafe { libc::syscall(libc::SYS_io_submit, ctx, 1, list.as_mut_ptr()) };
    assert_eq!(r, 1, "io_submit: {}", std::io::Error::last_os_error());
    let mut ev = [IoEvent::default()];
    // SAFETY: room for one event; no timeout.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_getevents,
            ctx,
            1,
            1,
            ev.as_mut_ptr(),
            std::ptr::null::<libc::timespec>(),
        )
    };
    assert_eq!(r, 1, "io_getevents: {}", std::io::Error::last_os_error());
    // SAFETY: the context is ours and idle.
    unsafe { libc::syscall(libc::SYS_io_destroy, ctx) };
    ev[0].res
}

/// A 4 KiB-aligned buffer for O_DIRECT.
fn aligned(len: usize, byte: u8) -> (Vec<u8>, usize) {
    let v = vec![byte; len + 4096];
    let skip = v.as_ptr().align_offset(4096);
    (v, skip)
}

/// Buffered readers keep the file in the page cache while an asynchronous
/// O_DIRECT write of 640 KiB completes; a buffered read after it must
/// return the new bytes, never the cached old ones.
#[test]
fn a_buffered_read_after_a_direct_write_sees_the_new_bytes() {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    if !fuse_available() {
        return;
    }
    const LEN: usize = 640 << 10;
    let m = Mount::new("256M");
    let path = m.p("db");
    fs::write(&path, vec![b'a'; 1 << 20]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let f = File::open(&path).unwrap();
                let mut buf = vec![0u8; 64 << 10];
                while !stop.load(Ordering::Relaxed) {
                    for off in (0..1u64 << 20).step_by(64 << 10) {
                        f.read_at(&mut buf, off).unwrap();
                    }
                }
            })
        })
        .collect();
    let direct = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .unwrap();
    let reader = File::open(&path).unwrap();
    let mut stale = Vec::new();
    for round in 0..200u8 {
        let byte = 1 + round % 250;
        let (buf, skip) = aligned(LEN, byte);
        let n = aio_write(
            std::os::fd::AsRawFd::as_raw_fd(&direct),
            &buf[skip..skip + LEN],
            0,
        );
        assert_eq!(n, LEN as i64, "round {round}: the direct write");
        let mut back = vec![0u8; LEN];
        reader.read_exact_at(&mut back, 0).unwrap();
        if let Some(at) = back.iter().position(|&b| b != byte) {
            stale.push(format!("round {round}: old bytes from {at}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(
        stale.is_empty(),
        "stale reads after a completed direct write: {stale:?}"
    );
    drop((direct, reader));
    m.finish();
}

/// Detaches whatever is still mounted on `mnt` when a test ends early,
/// for tests whose daemons are not their children.
struct Detach(std::path::PathBuf);

impl Drop for Detach {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
}

fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// On a plain `fuse` mount (`nofuseblk`, and every unprivileged one)
/// `umount DIR` returns before the old daemon has let go of the image; a
/// `mount` right after it must wait for that, not refuse the image. (A
/// fuseblk umount waits for the commit itself.)
#[test]
fn mount_right_after_umount_succeeds() {
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("512M");
    m.unmount();
    let _guard = Detach(m.mnt.clone());
    for round in 0..5 {
        run_ok(
            std::process::Command::new(BIN)
                .args(["mount", "-o", "nofuseblk"])
                .arg(&m.img)
                .arg(&m.mnt),
        );
        if round > 0 {
            let back = fs::read(m.p(&format!("round-{}", round - 1))).unwrap();
            assert_eq!(back, format!("data {}", round - 1).as_bytes());
        }
        fs::write(m.p(&format!("round-{round}")), format!("data {round}")).unwrap();
        // Uncommitted data that does not compress, so the old daemon has
        // a commit to finish after the unmount.
        fs::write(m.p("bulk"), noise(64 << 20, round as u64)).unwrap();
        run_ok(std::process::Command::new("umount").arg(&m.mnt));
    }
    // A second mount of a mounted image is still refused.
    run_ok(
        std::process::Command::new(BIN)
            .arg("mount")
            .arg(&m.img)
            .arg(&m.mnt),
    );
    let other = m.dir.path().join("other");
    fs::create_dir(&other).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("mount")
        .arg(&m.img)
        .arg(&other)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second mount of one image");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{out:?}"
    );
    run_ok(std::process::Command::new("umount").arg(&m.mnt));
    wait_for_lock_free(&m.img);
    m.fsck();
}

/// Puts `mount.fuse.aegisfs` where mount(8) looks for helpers, pointing
/// at the binary under test (atomically: other tests may be doing the
/// same at once).
fn install_mount8_helper() {
    for name in ["mount.fuse.aegisfs", "mount.fuseblk.aegisfs"] {
        let tmp = format!("/sbin/.{name}.{}", std::process::id());
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(BIN, &tmp).unwrap();
        fs::rename(&tmp, format!("/sbin/{name}")).unwrap();
    }
}

/// The options of the mount on `mnt` as /proc/mounts shows them.
fn mount_options(mnt: &std::path::Path) -> Vec<String> {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let want = mnt.to_string_lossy().replace(' ', "\\040");
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(want.as_str()))
        .unwrap_or_else(|| panic!("{} is not mounted", mnt.display()));
    line.split(' ')
        .nth(3)
        .unwrap()
        .split(',')
        .map(String::from)
        .collect()
}

/// The pid of the daemon serving `img` (not our child when mount(8)
/// started it), if one runs.
fn daemon_pid(img: &std::path::Path) -> Option<i32> {
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("--foreground") && cmd.contains(&*img.to_string_lossy()) {
            return Some(pid);
        }
    }
    None
}

fn daemon_of(img: &std::path::Path) -> i32 {
    daemon_pid(img).unwrap_or_else(|| panic!("no daemon serves {}", img.display()))
}

/// `mount -o remount,ro` and back through mount(8): the kernel and the
/// daemon both switch, a remount that cannot happen (a file open for
/// writing) changes nothing, and going read-only commits everything.
#[test]
fn remount_read_only_and_back_through_mount8() {
    use std::process::Command;
    if !fuse_available() || unsafe { libc::geteuid() } != 0 {
        return;
    }
    install_mount8_helper();
    let mut m = Mount::new("64M");
    m.unmount();
    let _guard = Detach(m.mnt.clone());
    let mount8 = |args: &[&str]| {
        Command::new("mount")
            .args(args)
            .arg(&m.mnt)
            .output()
            .unwrap()
    };
    let out = Command::new("mount")
        .args(["-t", "fuse.aegisfs", "-o", "allow_other"])
        .arg(&m.img)
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "mount(8): {out:?}");
    fs::write(m.p("kept"), b"written before the remount").unwrap();
    // Busy: a file open for writing keeps the mount writable.
    let busy = fs::OpenOptions::new()
        .append(true)
        .open(m.p("kept"))
        .unwrap();
    let out = mount8(&["-o", "remount,ro"]);
    assert!(!out.status.success(), "remount,ro with a writer: {out:?}");
    assert!(mount_options(&m.mnt).contains(&"rw".to_string()));
    fs::write(m.p("still-writable"), b"yes").unwrap();
    drop(busy);

    // Options a mounted daemon cannot change: refused, nothing changes.
    for bad in [
        "remount,ro,nolog",
        "remount,threads=3",
        "remount,auto_unmount",
        "remount,writeback_cache",
        "remount,attr_timeout=5",
        "remount,entry_timeout=0.5",
    ] {
        let out = mount8(&["-o", bad]);
        assert!(!out.status.success(), "{bad}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot change"),
            "{bad}: {out:?}"
        );
        assert!(
            mount_options(&m.mnt).contains(&"rw".to_string()),
            "{bad} changed the mount"
        );
    }
    fs::write(m.p("still-writable"), b"yes").unwrap();
    // What the mount already has may be repeated (as an fstab line is).
    let out = mount8(&["-o", "remount,ro,allow_other,nowriteback_cache"]);
    assert!(out.status.success(), "remount,ro,allow_other: {out:?}");
    assert!(mount8(&["-o", "remount,rw"]).status.success());
    let out = mount8(&["-o", "remount,ro"]);
    assert!(out.status.success(), "remount,ro: {out:?}");
    assert!(mount_options(&m.mnt).contains(&"ro".to_string()));
    let err = fs::write(m.p("refused"), b"no").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    assert_eq!(
        fs::read(m.p("kept")).unwrap(),
        b"written before the remount"
    );

    let out = mount8(&["-o", "remount,rw"]);
    assert!(out.status.success(), "remount,rw: {out:?}");
    assert!(mount_options(&m.mnt).contains(&"rw".to_string()));
    fs::write(m.p("after"), b"writable again").unwrap();

    // Read-only again, then kill -9: the freeze committed everything.
    assert!(mount8(&["-o", "remount,ro"]).status.success());
    let pid = daemon_of(&m.img);
    // SAFETY: signalling the daemon found above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = Command::new("umount").arg("-l").arg(&m.mnt).status();
    wait_for_lock_free(&m.img);
    m.fsck();
    m.mount();
    assert_eq!(fs::read(m.p("after")).unwrap(), b"writable again");
    assert_eq!(fs::read(m.p("still-writable")).unwrap(), b"yes");
    assert!(!m.p("refused").exists());
    m.finish();
}

/// Through mount(8) as root the defaults are mount(8)'s (`dev`, `suid`):
/// a device node works. An fstab line with `nodev,nosuid` gets both.
#[test]
fn dev_and_suid_through_mount8_and_fstab() {
    use std::process::Command;
    if !fuse_available() || unsafe { libc::geteuid() } != 0 {
        return;
    }
    install_mount8_helper();
    let mut m = Mount::new("64M");
    m.unmount();
    let _guard = Detach(m.mnt.clone());
    let out = Command::new("mount")
        .args(["-t", "fuse.aegisfs"])
        .arg(&m.img)
        .arg(&m.mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "mount(8): {out:?}");
    let opts = mount_options(&m.mnt);
    assert!(
        !opts.contains(&"nodev".to_string()) && !opts.contains(&"nosuid".to_string()),
        "{opts:?}"
    );
    let null = std::ffi::CString::new(m.p("null").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid path; makedev(1, 3) is /dev/null's number.
    assert_eq!(
        unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) },
        0
    );
    fs::write(m.p("null"), b"into the void").unwrap();
    run_ok(Command::new("umount").arg(&m.mnt));
    wait_for_lock_free(&m.img);

    let fstab = m.dir.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "{} {} fuse.aegisfs nodev,nosuid,noauto 0 0\n",
            m.img.display(),
            m.mnt.display()
        ),
    )
    .unwrap();
    run_ok(Command::new("mount").arg("-T").arg(&fstab).arg(&m.mnt));
    let opts = mount_options(&m.mnt);
    assert!(
        opts.contains(&"nodev".to_string()) && opts.contains(&"nosuid".to_string()),
        "{opts:?}"
    );
    let err = fs::write(m.p("null"), b"refused").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    run_ok(Command::new("umount").arg(&m.mnt));
    wait_for_lock_free(&m.img);
    m.fsck();
}

/// `aegisfs shutdown` (FS_IOC_SHUTDOWN): every later operation fails with
/// EIO, not one more byte reaches the image, and the next mount shows what
/// was durable.
#[test]
fn shutdown_stops_every_operation_and_every_write() {
    use std::io::Write;
    use std::process::Command;
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("64M");
    let mut f = File::create(m.p("durable")).unwrap();
    f.write_all(b"fsynced before the shutdown").unwrap();
    f.sync_all().unwrap();
    fs::write(m.p("maybe"), b"not fsynced").unwrap();
    if unsafe { libc::geteuid() } == 0 {
        // Only root may.
        let out = Command::new(BIN)
            .arg("shutdown")
            .arg(&m.mnt)
            .env("LC_ALL", "C")
            .uid_gid_nobody()
            .output()
            .unwrap();
        assert!(!out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("only root"),
            "{out:?}"
        );
    }
    run_ok(Command::new(BIN).arg("shutdown").arg(&m.mnt));
    let image_after = fs::read(&m.img).unwrap();
    let eio = |r: std::io::Result<()>| {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EIO));
    };
    eio(fs::metadata(m.p("durable")).map(|_| ()));
    eio(fs::read(m.p("durable")).map(|_| ()));
    eio(f.write_all(b"more").and_then(|_| f.sync_all()));
    eio(fs::write(m.p("new"), b"x"));
    eio(fs::read_dir(&m.mnt).map(|_| ()));
    drop(f);
    m.unmount();
    assert!(
        fs::read(&m.img).unwrap() == image_after,
        "the image changed after the shutdown"
    );
    m.fsck();
    m.mount();
    assert_eq!(
        fs::read(m.p("durable")).unwrap(),
        b"fsynced before the shutdown"
    );
    assert!(!m.p("new").exists());
    m.finish();
}

/// Run a command as nobody.
trait AsNobody {
    fn uid_gid_nobody(&mut self) -> &mut Self;
}

impl AsNobody for std::process::Command {
    fn uid_gid_nobody(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        self.uid(65534).gid(65534)
    }
}

/// A file handle as name_to_handle_at(2) returns it: the header, then up
/// to 128 bytes of handle.
#[repr(C)]
struct Handle {
    bytes: u32,
    kind: i32,
    data: [u8; 128],
}

fn handle_of(path: &std::path::Path) -> std::io::Result<Handle> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut h = Handle {
        bytes: 128,
        kind: 0,
        data: [0; 128],
    };
    let mut mount_id = 0;
    // SAFETY: `h` starts with struct file_handle's header and has room for
    // the 128 bytes it announces.
    let rc = unsafe {
        libc::name_to_handle_at(
            libc::AT_FDCWD,
            c.as_ptr(),
            &mut h as *mut Handle as *mut libc::file_handle,
            &mut mount_id,
            0,
        )
    };
    if rc == 0 {
        Ok(h)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn open_handle(mount: &File, h: &mut Handle) -> std::io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: as in `handle_of`; the descriptor returned is ours.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            h as *mut Handle as *mut libc::file_handle,
            libc::O_RDONLY,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// File handles (what NFS export and backup tools keep): they open files
/// and directories across a remount; a deleted file's handle, a forged
/// one and a truncated one give ESTALE.
#[test]
fn file_handles_open_files_and_directories_across_remounts() {
    use std::io::Read;
    if !fuse_available() || unsafe { libc::geteuid() } != 0 {
        return;
    }
    let mut m = Mount::new("64M");
    fs::create_dir(m.p("dir")).unwrap();
    fs::write(m.p("dir/file"), b"by handle").unwrap();
    fs::write(m.p("doomed"), b"soon gone").unwrap();
    let mut file = handle_of(&m.p("dir/file")).unwrap();
    let mut dir = handle_of(&m.p("dir")).unwrap();
    let mut doomed = handle_of(&m.p("doomed")).unwrap();
    m.remount();
    let root = File::open(&m.mnt).unwrap();
    let mut text = String::new();
    open_handle(&root, &mut file)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "by handle");
    let d = open_handle(&root, &mut dir).unwrap();
    assert!(d.metadata().unwrap().is_dir());
    drop(d);

    fs::remove_file(m.p("doomed")).unwrap();
    drop(root);
    m.remount();
    let root = File::open(&m.mnt).unwrap();
    let stale = |r: std::io::Result<File>| r.map(|_| ()).unwrap_err().raw_os_error();
    assert_eq!(stale(open_handle(&root, &mut doomed)), Some(libc::ESTALE));
    let mut forged = Handle {
        bytes: file.bytes,
        kind: file.kind,
        data: file.data,
    };
    forged.data[0] ^= 0x5a;
    forged.data[1] ^= 0xa5;
    assert_eq!(stale(open_handle(&root, &mut forged)), Some(libc::ESTALE));
    let mut short = Handle {
        bytes: 4,
        kind: file.kind,
        data: file.data,
    };
    let e = stale(open_handle(&root, &mut short));
    assert!(e == Some(libc::ESTALE) || e == Some(libc::EINVAL), "{e:?}");
    drop(root);
    m.finish();
}

/// Under `strictatime` every read updates atime, also a read the page
/// cache could serve (a second read of the same bytes a second later);
/// mmap of such a file still works.
#[test]
fn strictatime_counts_every_read() {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    if !fuse_available() {
        return;
    }
    let mut m = Mount::new("64M");
    m.unmount();
    m.mount_with("allow_other,strictatime");
    fs::write(m.p("f"), b"read me twice").unwrap();
    let atime = |m: &Mount| {
        let md = fs::metadata(m.p("f")).unwrap();
        (md.atime(), md.atime_nsec())
    };
    let mut buf = String::new();
    File::open(m.p("f"))
        .unwrap()
        .read_to_string(&mut buf)
        .unwrap();
    let first = atime(&m);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    buf.clear();
    File::open(m.p("f"))
        .unwrap()
        .read_to_string(&mut buf)
        .unwrap();
    assert_eq!(buf, "read me twice");
    let second = atime(&m);
    assert!(second > first, "atime {first:?} then {second:?}");
    // mmap of a file opened for direct I/O.
    let f = File::open(m.p("f")).unwrap();
    // SAFETY: a private read-only mapping of 13 bytes of an open file.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            13,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&f),
            0,
        )
    };
    assert_ne!(
        p,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: the mapping is 13 readable bytes.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, 13) };
    assert_eq!(bytes, b"read me twice");
    // SAFETY: unmapping what was mapped above.
    unsafe { libc::munmap(p, 13) };
    drop(f);
    m.finish();
}

/// AegisFS as overlayfs's upper layer: the overlay mounts, and a copy-up,
/// a whiteout (the lower file deleted) and a rename land in the upper
/// layer as overlayfs writes them, and stay after a remount.
#[test]
fn an_overlay_with_aegisfs_as_its_upper_layer() {
    use std::os::unix::fs::FileTypeExt;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;
    if !fuse_available() || unsafe { libc::geteuid() } != 0 {
        return;
    }
    let mut m = Mount::new("64M");
    let (lower, merged) = (m.dir.path().join("lower"), m.dir.path().join("merged"));
    fs::create_dir(&lower).unwrap();
    fs::create_dir(&merged).unwrap();
    for n in ["copied", "deleted", "renamed"] {
        fs::write(lower.join(n), format!("lower {n}")).unwrap();
    }
    fs::create_dir(m.p("upper")).unwrap();
    fs::create_dir(m.p("work")).unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        m.p("upper").display(),
        m.p("work").display()
    );
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .output()
        .unwrap();
    assert!(out.status.success(), "overlay mount: {out:?}");
    let _guard = Detach(merged.clone());
    // Copy-up.
    fs::OpenOptions::new()
        .append(true)
        .open(merged.join("copied"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b", changed"))
        .unwrap();
    // Whiteout.
    fs::remove_file(merged.join("deleted")).unwrap();
    // Rename of a lower file: copied up under the new name, whiteout at
    // the old one.
    fs::rename(merged.join("renamed"), merged.join("moved")).unwrap();
    assert_eq!(
        fs::read_to_string(merged.join("copied")).unwrap(),
        "lower copied, changed"
    );
    assert!(!merged.join("deleted").exists() && !merged.join("renamed").exists());
    assert_eq!(
        fs::read_to_string(merged.join("moved")).unwrap(),
        "lower renamed"
    );
    run_ok(Command::new("umount").arg(&merged));
    m.remount();
    assert_eq!(
        fs::read_to_string(m.p("upper/copied")).unwrap(),
        "lower copied, changed"
    );
    assert_eq!(
        fs::read_to_string(m.p("upper/moved")).unwrap(),
        "lower renamed"
    );
    for wo in ["upper/deleted", "upper/renamed"] {
        let md = fs::symlink_metadata(m.p(wo)).unwrap();
        assert!(
            md.file_type().is_char_device() && md.rdev() == 0,
            "{wo} is no whiteout"
        );
    }
    assert_eq!(
        fs::read_to_string(lower.join("deleted")).unwrap(),
        "lower deleted"
    );
    m.finish();
}

fn link_empty_path(fd: &File, path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: an open descriptor, an empty path and a valid target path.
    let rc = unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// O_TMPFILE: an unnamed file that linkat names later (kept across a
/// remount and a kill -9 after the link returned); with O_EXCL it cannot
/// be named; one never named is gone after close, and fsck finds no leak.
#[test]
fn o_tmpfile_files_are_unnamed_until_linked() {
    use std::io::{Read, Write};
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if !fuse_available() || unsafe { libc::geteuid() } != 0 {
        return;
    }
    let mut m = Mount::new("64M");
    let tmp = |excl: bool| {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o640)
            .custom_flags(libc::O_TMPFILE | if excl { libc::O_EXCL } else { 0 })
            .open(&m.mnt)
    };
    let mut f = tmp(false).unwrap();
    f.write_all(b"made unnamed").unwrap();
    assert_eq!(
        fs::read_dir(&m.mnt).unwrap().count(),
        0,
        "an O_TMPFILE file has no name"
    );
    assert_eq!(f.metadata().unwrap().nlink(), 0);
    link_empty_path(&f, &m.p("named")).unwrap();
    assert_eq!(fs::metadata(m.p("named")).unwrap().nlink(), 1);
    assert_eq!(fs::metadata(m.p("named")).unwrap().mode() & 0o7777, 0o640);
    drop(f);
    let g = tmp(true).unwrap();
    let e = link_empty_path(&g, &m.p("never")).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::ENOENT),
        "O_EXCL forbids the link"
    );
    drop(g);
    let mut h = tmp(false).unwrap();
    h.write_all(&vec![7u8; 1 << 20]).unwrap();
    h.sync_all().unwrap();
    drop(h);
    // An fsync made everything durable: kill -9 loses none of it.
    m.kill();
    m.fsck();
    m.mount();
    let mut text = String::new();
    File::open(m.p("named"))
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "made unnamed");
    assert!(!m.p("never").exists());
    m.finish();
}

/// `-o fuseblk` (an image through a loop device, as root): `sync` reaches
/// the daemon, so sync then kill -9 loses nothing, while without it the
/// last changes are lost; `umount` returns only after the last commit;
/// the loop device goes with the mount.
#[test]
fn fuseblk_sync_commits_and_umount_waits_for_the_commit() {
    use std::process::Command;
    if !fuse_available()
        || unsafe { libc::geteuid() } != 0
        || !std::path::Path::new("/dev/loop-control").exists()
    {
        return;
    }
    let mut m = Mount::new("64M");
    m.unmount();
    let _guard = Detach(m.mnt.clone());
    let mount = || {
        run_ok(
            Command::new(BIN)
                .args(["mount", "-o", "fuseblk,allow_other"])
                .arg(&m.img)
                .arg(&m.mnt),
        )
    };
    let kill_daemon = || {
        // SAFETY: signalling the daemon found for this image.
        unsafe { libc::kill(daemon_of(&m.img), libc::SIGKILL) };
        let _ = Command::new("umount").arg("-l").arg(&m.mnt).status();
        wait_for_lock_free(&m.img);
    };
    mount();
    assert!(fs::read_to_string("/proc/mounts")
        .unwrap()
        .contains("fuseblk.aegisfs"));
    fs::write(m.p("lost"), b"never synced").unwrap();
    kill_daemon();
    mount();
    assert!(
        !m.p("lost").exists(),
        "a kill -9 without sync keeps nothing new"
    );
    fs::write(m.p("synced"), b"sync(1) reached the daemon").unwrap();
    run_ok(&mut Command::new("sync"));
    kill_daemon();
    mount();
    assert_eq!(
        fs::read(m.p("synced")).unwrap(),
        b"sync(1) reached the daemon"
    );
    fs::write(m.p("at-umount"), b"committed before umount returned").unwrap();
    run_ok(Command::new("umount").arg(&m.mnt));
    // Whatever the daemon still does now, the commit is on the image.
    if let Some(pid) = daemon_pid(&m.img) {
        // SAFETY: signalling the daemon found for this image.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    wait_for_lock_free(&m.img);
    let loops = run_ok(Command::new("losetup").arg("-a"));
    assert!(
        !loops.contains(&*m.img.to_string_lossy()),
        "a loop device is left: {loops}"
    );
    m.fsck();
    m.mount();
    assert_eq!(
        fs::read(m.p("at-umount")).unwrap(),
        b"committed before umount returned"
    );
    m.finish();
}
