//! Metadata speed of the embedded VFS over a disk image, beside the same
//! workload on ext4 through system calls, in one run: create, stat and
//! unlink of N files (100 directories), `ls -l` of a cached 100-entry
//! directory, and the mount of a pool holding the N files, cold (page
//! cache dropped, root only) and warm.
//!
//! `cargo bench -p aegisfs --bench embedded_vfs` (N = 100,000; set
//! BENCH_FILES to change it, BENCH_DIR for the scratch directory, which
//! should be on ext4). Prints a Markdown table; medians of repeated runs
//! where a step is short.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_block::{DeviceRef, FileDevice, OpenMode};
use aegis_diskfs::{DiskFs, MountOptions};
use aegis_vfs::{Creds, FileSystem, Process, Vfs};

const DIRS: usize = 100;

fn files() -> usize {
    std::env::var("BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median of five runs of `mount_once` (which times itself), the page
/// cache dropped before each when `cold`.
fn mounts_timed(cold: bool, mut mount_once: impl FnMut() -> Duration) -> Duration {
    median(
        (0..5)
            .map(|_| {
                if cold {
                    drop_caches();
                }
                mount_once()
            })
            .collect(),
    )
}

fn drop_caches() -> bool {
    // SAFETY: sync(2) takes no arguments.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn name(i: usize) -> String {
    format!("/d{}/file-{i:07}", i % DIRS)
}

/// One row: AegisFS embedded, ext4 syscalls.
struct Row(&'static str, String, String);

fn rate(n: usize, d: Duration) -> String {
    format!("{:.0}/s", n as f64 / d.as_secs_f64())
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn open_image(img: &Path) -> (Arc<DiskFs>, Arc<Vfs>, Process) {
    let dev = FileDevice::open(img, OpenMode::ReadWrite).expect("open image");
    let opts = MountOptions::default();
    let fs = aegis_diskfs::open(vec![Arc::new(dev) as DeviceRef], &opts).expect("mount");
    let vfs = Vfs::new(fs.clone() as Arc<dyn FileSystem>);
    let p = vfs.process(Creds::root());
    (fs, vfs, p)
}

fn ls_l(p: &Process, dir: &[u8]) -> usize {
    let fd = p.open(dir, libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap();
    let mut n = 0;
    loop {
        let buf = p.getdents64(fd, 1 << 16).unwrap();
        if buf.is_empty() {
            break;
        }
        for d in aegis_vfs::embedded::dirent64_records(&buf).unwrap() {
            let mut path = dir.to_vec();
            path.push(b'/');
            path.extend_from_slice(&d.name);
            p.lstat(&path).unwrap();
            n += 1;
        }
    }
    p.close(fd).unwrap();
    n
}

fn aegis(scratch: &Path, n: usize) -> Vec<(String, String)> {
    let img = scratch.join("bench.img");
    let fs = aegis_testkit::image_fs(&img, 4 << 30);
    let vfs = Vfs::new(fs.clone() as Arc<dyn FileSystem>);
    let p = vfs.process(Creds::root());
    for d in 0..DIRS {
        p.mkdir(format!("/d{d}").as_bytes(), 0o755).unwrap();
    }
    p.mkdir(b"/ls", 0o755).unwrap();
    for i in 0..100 {
        let fd = p
            .open(
                format!("/ls/e{i}").as_bytes(),
                libc::O_CREAT | libc::O_WRONLY,
                0o644,
            )
            .unwrap();
        p.close(fd).unwrap();
    }
    let t = Instant::now();
    for i in 0..n {
        let fd = p
            .open(name(i).as_bytes(), libc::O_CREAT | libc::O_WRONLY, 0o644)
            .unwrap();
        p.close(fd).unwrap();
    }
    let create = t.elapsed();
    let t = Instant::now();
    for i in 0..n {
        p.stat(name(i).as_bytes()).unwrap();
    }
    let stat = t.elapsed();
    ls_l(&p, b"/ls");
    let ls = median(
        (0..21)
            .map(|_| {
                let t = Instant::now();
                ls_l(&p, b"/ls");
                t.elapsed()
            })
            .collect(),
    );
    drop((p, vfs));
    fs.unmount().unwrap();
    drop(fs);
    let mount = |cold: bool| {
        mounts_timed(cold, || {
            let t = Instant::now();
            let (fs, vfs, p) = open_image(&img);
            p.stat(b"/").unwrap();
            let d = t.elapsed();
            drop((p, vfs));
            fs.unmount().unwrap();
            d
        })
    };
    let cold = if drop_caches() {
        ms(mount(true))
    } else {
        "n/a (not root)".into()
    };
    let warm = ms(mount(false));
    let (fs, vfs, p) = open_image(&img);
    let t = Instant::now();
    for i in 0..n {
        p.unlink(name(i).as_bytes()).unwrap();
    }
    let unlink = t.elapsed();
    drop((p, vfs));
    fs.unmount().unwrap();
    let _ = std::fs::remove_file(&img);
    vec![
        (rate(n, create), rate(n, stat)),
        (rate(n, unlink), ms(ls)),
        (cold, warm),
    ]
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn ext4_ls_l(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        std::fs::symlink_metadata(e.unwrap().path()).unwrap();
        n += 1;
    }
    n
}

fn ext4(scratch: &Path, n: usize) -> Vec<(String, String)> {
    let root = scratch.join("ext4-tree");
    let _ = std::fs::remove_dir_all(&root);
    for d in 0..DIRS {
        std::fs::create_dir_all(root.join(format!("d{d}"))).unwrap();
    }
    std::fs::create_dir_all(root.join("ls")).unwrap();
    for i in 0..100 {
        std::fs::File::create(root.join(format!("ls/e{i}"))).unwrap();
    }
    let paths: Vec<CString> = (0..n).map(|i| c(&root.join(&name(i)[1..]))).collect();
    let t = Instant::now();
    for p in &paths {
        // SAFETY: valid NUL-terminated paths; the descriptor is closed.
        unsafe {
            let fd = libc::open(p.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
            assert!(fd >= 0);
            libc::close(fd);
        }
    }
    let create = t.elapsed();
    let t = Instant::now();
    for p in &paths {
        // SAFETY: valid path and a stat buffer.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::stat(p.as_ptr(), &mut st) }, 0);
    }
    let stat = t.elapsed();
    ext4_ls_l(&root.join("ls"));
    let ls = median(
        (0..21)
            .map(|_| {
                let t = Instant::now();
                ext4_ls_l(&root.join("ls"));
                t.elapsed()
            })
            .collect(),
    );
    let t = Instant::now();
    for p in &paths {
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::unlink(p.as_ptr()) }, 0);
    }
    let unlink = t.elapsed();
    let _ = std::fs::remove_dir_all(&root);
    let mount = ext4_mount(scratch, n).unwrap_or_else(|why| (why.clone(), why));
    vec![
        (rate(n, create), rate(n, stat)),
        (rate(n, unlink), ms(ls)),
        mount,
    ]
}

/// Mount time of an ext4 loop image holding `n` files, cold and warm
/// (root only: mkfs.ext4, a loop device, mount(2)).
fn ext4_mount(scratch: &Path, n: usize) -> Result<(String, String), String> {
    let img = scratch.join("ext4.img");
    let mnt = scratch.join("ext4-mnt");
    let sh = |cmd: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .map_err(|e| e.to_string())
    };
    std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    let out = sh(&format!(
        "truncate -s 4G {i} && mkfs.ext4 -q -F {i} && losetup -f --show {i}",
        i = img.display()
    ))?;
    if !out.status.success() {
        return Err("n/a (needs root and mkfs.ext4)".into());
    }
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (devc, mntc, ty) = (c(Path::new(&dev)), c(&mnt), CString::new("ext4").unwrap());
    // SAFETY: valid NUL-terminated strings; no data argument.
    let mount = || unsafe {
        libc::mount(
            devc.as_ptr(),
            mntc.as_ptr(),
            ty.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    // SAFETY: a valid mount point path.
    let umount = || unsafe { libc::umount(mntc.as_ptr()) };
    assert_eq!(mount(), 0, "mount ext4");
    for i in 0..n {
        let p = mnt.join(format!("d{}/f{i}", i % DIRS));
        if i < DIRS {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        }
        std::fs::File::create(p).unwrap();
    }
    assert_eq!(umount(), 0);
    let time = |cold: bool| {
        mounts_timed(cold, || {
            let t = Instant::now();
            assert_eq!(mount(), 0);
            std::fs::metadata(&mnt).unwrap();
            let d = t.elapsed();
            assert_eq!(umount(), 0);
            d
        })
    };
    let r = (ms(time(true)), ms(time(false)));
    let _ = sh(&format!("losetup -d {dev}; rm -f {}", img.display()));
    Ok(r)
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test` run skips.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = files();
    let scratch: PathBuf = std::env::var("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("aegis-vfs-bench"));
    std::fs::create_dir_all(&scratch).unwrap();
    let a = aegis(&scratch, n);
    let e = ext4(&scratch, n);
    let rows = [
        Row(
            "create (open O_CREAT + close)",
            a[0].0.clone(),
            e[0].0.clone(),
        ),
        Row("stat", a[0].1.clone(), e[0].1.clone()),
        Row("unlink", a[1].0.clone(), e[1].0.clone()),
        Row("ls -l, cached 100 entries", a[1].1.clone(), e[1].1.clone()),
        Row(
            "mount holding the files, cold",
            a[2].0.clone(),
            e[2].0.clone(),
        ),
        Row(
            "mount holding the files, warm",
            a[2].1.clone(),
            e[2].1.clone(),
        ),
    ];
    println!("\n{n} files in {DIRS} directories\n");
    println!("| operation | AegisFS embedded VFS | ext4 (syscalls) |");
    println!("|---|---:|---:|");
    for Row(what, x, y) in rows {
        println!("| {what} | {x} | {y} |");
    }
}
