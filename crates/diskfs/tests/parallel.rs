//! Operations on different files and directories at once, through the
//! `FileSystem` trait: four threads each create, write, rename (into the
//! next thread's directory, so the two-directory locks are taken in both
//! orders), link, unlink and look up, while a fifth lists every
//! directory with readdirplus and forgets what it was given. A deadlock
//! fails the test (a watchdog gives it minutes); afterwards every file
//! each thread kept is where it left it with its own bytes, the link
//! counts add up, and fsck is clean, before and after a remount.

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use aegis_testkit::Kit;
use aegis_vfs::*;

const THREADS: u64 = 4;
const ROUNDS: u64 = 600;
/// Far more than the work takes anywhere; a deadlock never ends.
const WATCHDOG: Duration = Duration::from_secs(300);

fn name(s: String) -> OsString {
    OsString::from(s)
}

fn content(t: u64, i: u64) -> Vec<u8> {
    format!("thread {t} round {i} ")
        .repeat(1 + (i % 7) as usize)
        .into_bytes()
}

/// One thread's work in its directory `dirs[t]`: what it keeps is
/// `dirs[t + 1]/m{t}_{i}` for even `i` (renamed there) and `dirs[t]/l{i}`
/// (a second link) for `i` divisible by 3.
fn worker(fs: &dyn FileSystem, dirs: &[Ino], t: u64) {
    let req = Request::root();
    let (mine, next) = (dirs[t as usize], dirs[((t + 1) % THREADS) as usize]);
    for i in 0..ROUNDS {
        let f = name(format!("f{i}"));
        let (a, fh) = fs.create(&req, mine, &f, 0o644, libc::O_RDWR).unwrap();
        fs.write(a.ino, fh, 0, &content(t, i)).unwrap();
        fs.release(a.ino, fh).unwrap();
        if i % 3 == 0 {
            fs.link(a.ino, mine, &name(format!("l{i}"))).unwrap();
            fs.forget(a.ino, 1);
        }
        if i % 2 == 0 {
            let to = name(format!("m{t}_{i}"));
            fs.rename(mine, &f, next, &to, 0).unwrap();
        } else {
            fs.unlink(mine, &f).unwrap();
        }
        let looked = fs.lookup(mine, &name(format!("l{}", i / 3 * 3)));
        if let Ok(l) = looked {
            fs.forget(l.ino, 1);
        }
        fs.forget(a.ino, 1);
    }
}

/// readdirplus over every directory until told to stop.
fn lister(fs: &dyn FileSystem, dirs: &[Ino], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        for &d in dirs {
            let fh = fs.opendir(d, 0).unwrap();
            // Every entry but `.` and `..` (cookies 1 and 2) counts a lookup.
            for (e, _) in fs.readdirplus(d, fh, 0, 10_000).unwrap() {
                if e.offset > 2 {
                    fs.forget(e.ino, 1);
                }
            }
            fs.releasedir(d, fh).unwrap();
        }
    }
}

fn read_all(fs: &dyn FileSystem, dir: Ino, n: &str) -> (Attr, Vec<u8>) {
    let a = fs.lookup(dir, &name(n.to_string())).unwrap();
    let fh = fs.open(a.ino, libc::O_RDONLY).unwrap();
    let b = fs.read(a.ino, fh, 0, 1 << 20).unwrap();
    fs.release(a.ino, fh).unwrap();
    fs.forget(a.ino, 1);
    (a, b)
}

fn check_kept(fs: &dyn FileSystem, dirs: &[Ino]) {
    for t in 0..THREADS {
        let (mine, next) = (dirs[t as usize], dirs[((t + 1) % THREADS) as usize]);
        for i in 0..ROUNDS {
            let want = content(t, i);
            if i % 2 == 0 {
                let (a, got) = read_all(fs, next, &format!("m{t}_{i}"));
                assert_eq!(got, want, "thread {t} round {i}: renamed file");
                assert_eq!(a.nlink, if i % 3 == 0 { 2 } else { 1 });
            }
            if i % 3 == 0 {
                let (_, got) = read_all(fs, mine, &format!("l{i}"));
                assert_eq!(got, want, "thread {t} round {i}: link");
            }
        }
    }
}

#[test]
fn namespace_and_data_changes_in_parallel_directories() {
    let kit = Kit::default().size(256 << 20);
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).expect("mount");
    let req = Request::root();
    let dirs: Vec<Ino> = (0..THREADS)
        .map(|t| {
            fs.mkdir(&req, ROOT_INO, &name(format!("d{t}")), 0o755)
                .unwrap()
                .ino
        })
        .collect();
    let dirs = Arc::new(dirs);
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let (fs, dirs, done) = (fs.clone(), dirs.clone(), done_tx.clone());
        handles.push(std::thread::spawn(move || {
            worker(&*fs, &dirs, t);
            done.send(()).unwrap();
        }));
    }
    let lister_thread = {
        let (fs, dirs, stop) = (fs.clone(), dirs.clone(), stop.clone());
        std::thread::spawn(move || lister(&*fs, &dirs, &stop))
    };
    for _ in 0..THREADS {
        done_rx
            .recv_timeout(WATCHDOG)
            .expect("a worker never finished: deadlock or a panic (see above)");
    }
    stop.store(true, Ordering::Relaxed);
    lister_thread.join().unwrap();
    for h in handles {
        h.join().unwrap();
    }
    check_kept(&*fs, &dirs);
    fs.unmount().expect("unmount");
    kit.fsck_clean(dev.clone());
    let fs = kit.mount(dev.clone()).expect("remount");
    check_kept(&*fs, &dirs);
    fs.unmount().expect("unmount");
    kit.fsck_clean(dev);
}
