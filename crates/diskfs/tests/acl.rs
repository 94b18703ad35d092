//! POSIX ACLs and privilege bits on DiskFs: the scenario ramfs runs
//! (`crates/vfs/tests/acl_scenario`), the same final state as ramfs, the
//! same state again after a crash replays the intent log, and fsck clean.

#[path = "../../vfs/tests/acl_scenario/mod.rs"]
mod acl_scenario;

use std::ffi::OsStr;
use std::sync::Arc;

use aegis_block::DeviceRef;
use aegis_testkit::Kit;
use aegis_vfs::*;

#[test]
fn diskfs_applies_acls_as_ramfs_and_replay_keeps_them() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let fs = kit.mount(dev.clone()).unwrap();
    // The first fsync of a mount commits and starts the log; everything
    // after it reaches the device through the log alone.
    let (a, fh) = fs
        .create(
            &Request::root(),
            ROOT_INO,
            OsStr::new("log"),
            0o644,
            libc::O_RDWR,
        )
        .unwrap();
    fs.fsync(a.ino, fh, false).unwrap();
    let txg = fs.store().last_uberblock().unwrap().txg;
    let inos = acl_scenario::run(&*fs);
    fs.fsync(a.ino, fh, false).unwrap();
    assert_eq!(
        fs.store().last_uberblock().unwrap().txg,
        txg,
        "fsync only logged"
    );
    let live = acl_scenario::state(&*fs, &inos);

    let oracle = RamFs::new();
    oracle
        .create(&Request::root(), ROOT_INO, OsStr::new("log"), 0o644, 0)
        .unwrap();
    let oracle_inos = acl_scenario::run(&oracle);
    assert_eq!(
        acl_scenario::state(&oracle, &oracle_inos),
        live,
        "ramfs and DiskFs agree"
    );

    let crash = Arc::new(dev.snapshot());
    fs.release(a.ino, fh).unwrap();
    fs.unmount().unwrap();
    kit.fsck_clean(dev as DeviceRef);

    let replayed = kit.mount(crash.clone()).unwrap();
    assert_eq!(
        acl_scenario::state(&*replayed, &inos),
        live,
        "replay rebuilt the ACLs"
    );
    replayed.unmount().unwrap();
    kit.fsck_clean(crash as DeviceRef);
}
