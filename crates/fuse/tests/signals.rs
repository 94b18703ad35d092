//! The blocking `mount` turns SIGTERM, SIGINT and SIGHUP into a clean
//! unmount and returns, handing the filesystem back. Its own test binary:
//! it signals its whole process, and the handlers stay installed after.

mod common;

use std::fs;
use std::sync::Arc;

use aegis_fuse::MountConfig;
use aegis_vfs::{FileSystem, RamFs, ROOT_INO};
use common::*;

fn mount_then_signal(sig: i32) {
    let fs = Arc::new(RamFs::new());
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let root = mnt.canonicalize().unwrap();
    let config = MountConfig {
        threads: Some(2),
        ..MountConfig::default()
    };
    let served = {
        let fs: Arc<dyn FileSystem> = fs.clone();
        let mnt = mnt.clone();
        std::thread::spawn(move || aegis_fuse::mount(fs, &mnt, &config))
    };
    if !eventually(10, || is_mounted(&root) || served.is_finished()) {
        panic!("not mounted after 10 s");
    }
    if served.is_finished() {
        panic!("mount returned early: {:?}", served.join());
    }
    fs::write(root.join("f"), b"before the signal").unwrap();

    // SAFETY: kill on our own pid with a signal `mount` has a handler for.
    assert_eq!(unsafe { libc::kill(libc::getpid(), sig) }, 0);
    let finished = eventually(10, || served.is_finished());
    if !finished {
        // Do not leave the mount behind if the handler failed.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&root)
            .status();
    }
    assert!(finished, "signal {sig} did not end the session");
    served.join().unwrap().unwrap();
    assert!(!is_mounted(&root));
    assert_eq!(Arc::strong_count(&fs), 1, "the session kept a reference");
    assert_eq!(fs.lookup(ROOT_INO, "f".as_ref()).unwrap().size, 17);
}

#[test]
fn signals_unmount_cleanly() {
    if let Some(why) = fuse_unavailable() {
        eprintln!("SKIPPED signals_unmount_cleanly: {why}");
        return;
    }
    // One test in sequence: each signal reaches the single handler.
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        mount_then_signal(sig);
    }
}
