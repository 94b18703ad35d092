//! Operations in parallel through the embedded VFS over a disk image, on
//! 1, 2 and 4 threads, each in a directory and on files of its own:
//! create, rename within the directory and unlink of N files in all, and
//! 4 KiB and 1 MiB writes to a file per thread. Aggregate rates; what
//! they show is how far the threads get without waiting on each other
//! (namespace changes take directory locks, writes file locks, and both
//! meet only at the tree lock for their tree edits).
//!
//! `cargo bench -p aegisfs --bench embedded_parallel` (N = 40,000; set
//! BENCH_FILES to change it, BENCH_DIR for the scratch directory). Prints
//! a Markdown table, one column per thread count.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use aegis_diskfs::DiskFs;
use aegis_vfs::{Creds, FileSystem, Process, Vfs};

const THREADS: [usize; 3] = [1, 2, 4];
/// Bytes each thread writes per write test.
const WRITE_BYTES: usize = 64 << 20;

fn files() -> usize {
    std::env::var("BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000)
}

fn fresh(scratch: &Path) -> (PathBuf, Arc<DiskFs>, Arc<Vfs>) {
    let img = scratch.join("bench-parallel.img");
    let fs = aegis_testkit::image_fs(&img, 4 << 30);
    let vfs = Vfs::new(fs.clone() as Arc<dyn FileSystem>);
    (img, fs, vfs)
}

/// Run `work(thread, process)` on `threads` threads started together;
/// the wall time from the start to the last one done.
fn timed(vfs: &Arc<Vfs>, threads: usize, work: impl Fn(usize, &Process) + Sync) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (p, start, work) = (vfs.process(Creds::root()), &start, &work);
                s.spawn(move || {
                    start.wait();
                    work(t, &p);
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for h in hs {
            h.join().expect("bench thread");
        }
        began.elapsed()
    })
}

fn path(t: usize, name: &str, i: usize) -> Vec<u8> {
    format!("/t{t}/{name}{i}").into_bytes()
}

fn write_file(p: &Process, t: usize, piece: usize) {
    let chunk = aegis_testkit::noise(piece, t as u64);
    let fd = p
        .open(&path(t, "w", piece), libc::O_CREAT | libc::O_WRONLY, 0o644)
        .unwrap();
    for _ in 0..WRITE_BYTES / piece {
        p.write(fd, &chunk).unwrap();
    }
    p.close(fd).unwrap();
}

/// One column: rates for `threads` threads on a fresh image.
fn column(scratch: &Path, threads: usize) -> Vec<String> {
    let (img, fs, vfs) = fresh(scratch);
    let root = vfs.process(Creds::root());
    for t in 0..threads {
        root.mkdir(format!("/t{t}").as_bytes(), 0o755).unwrap();
    }
    let per = files() / threads;
    let n = (per * threads) as f64;
    let rate = |d: Duration| format!("{:.0}/s", n / d.as_secs_f64());
    let create = timed(&vfs, threads, |t, p| {
        for i in 0..per {
            let fd = p
                .open(&path(t, "f", i), libc::O_CREAT | libc::O_WRONLY, 0o644)
                .unwrap();
            p.close(fd).unwrap();
        }
    });
    let rename = timed(&vfs, threads, |t, p| {
        for i in 0..per {
            p.rename(&path(t, "f", i), &path(t, "g", i)).unwrap();
        }
    });
    let unlink = timed(&vfs, threads, |t, p| {
        for i in 0..per {
            p.unlink(&path(t, "g", i)).unwrap();
        }
    });
    let mbs = |d: Duration| {
        format!(
            "{:.0} MB/s",
            (WRITE_BYTES * threads) as f64 / d.as_secs_f64() / 1e6
        )
    };
    let small = timed(&vfs, threads, |t, p| write_file(p, t, 4 << 10));
    let large = timed(&vfs, threads, |t, p| write_file(p, t, 1 << 20));
    fs.unmount().expect("unmount");
    let _ = std::fs::remove_file(&img);
    vec![
        rate(create),
        rate(rename),
        rate(unlink),
        mbs(small),
        mbs(large),
    ]
}

fn main() {
    let scratch = std::env::var("BENCH_DIR").map_or_else(|_| std::env::temp_dir(), PathBuf::from);
    let cols: Vec<Vec<String>> = THREADS.iter().map(|&t| column(&scratch, t)).collect();
    let rows = [
        "create (open O_CREAT + close)",
        "rename within the directory",
        "unlink",
        "write 4 KiB pieces, 64 MiB per thread",
        "write 1 MiB pieces, 64 MiB per thread",
    ];
    println!(
        "| embedded, {} files, a directory per thread | 1 thread | 2 threads | 4 threads |",
        files()
    );
    println!("|---|---:|---:|---:|");
    for (i, r) in rows.iter().enumerate() {
        println!("| {r} | {} | {} | {} |", cols[0][i], cols[1][i], cols[2][i]);
    }
}
