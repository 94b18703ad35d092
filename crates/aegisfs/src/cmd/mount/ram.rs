//! `aegisfs mount --ram MOUNTPOINT`: an empty in-memory filesystem
//! (`aegis_vfs::RamFs`) served through the FUSE adapter, as tmpfs is
//! mounted: a size limit (ENOSPC past it) that `df` shows, and free space
//! that goes down as files are written.
//!
//! It shares the image mount's daemon start (`daemonize`: back in the
//! foreground as a detached child, returning once the kernel lists the
//! mount) and its signal handling (`aegis_fuse::mount`: SIGTERM, SIGINT
//! and SIGHUP unmount), so the two behave alike.
//!
//! Invariants: nothing is mounted unless every option is understood and
//! the mount point is an empty directory; there is no image, no lock and
//! no device, so nothing outlives the daemon: the contents are gone once
//! it is unmounted. It is always a plain `fuse` mount, root or not: a
//! `fuseblk` mount needs a block device, and what it would bring (sync(2)
//! reaching the daemon, umount waiting for the last commit) has nothing to
//! make durable here.

mod options;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;

use aegis_fuse::check_mountpoint;
use aegis_vfs::{FileSystem, RamFs, RamFsConfig, Request, SetAttr, ROOT_INO};

use self::options::{Host, RamOptions};
use crate::cmd::{CliError, CliResult};

/// A RAM mount as `aegisfs mount --ram` asks for it.
pub(crate) struct Args {
    /// Empty directory to mount on.
    pub mountpoint: PathBuf,
    /// The `-o` lists, as given.
    pub options: Vec<String>,
    /// Stay in the foreground until unmounted.
    pub foreground: bool,
}

pub(crate) fn run(a: Args) -> CliResult<u8> {
    let (ram, mut parsed) =
        options::parse(&a.options, &Host::current()).map_err(|e| CliError::new(e.to_string()))?;
    let mountpoint = check_mountpoint(&a.mountpoint).map_err(|e| CliError::new(e.to_string()))?;
    if !a.foreground {
        let args = [OsStr::new("--ram"), mountpoint.as_os_str()];
        return super::daemonize(&args, &a.options, &mountpoint);
    }
    // What a remount may not change, listed as for an image (which has
    // an intent log to name; a RAM mount has none).
    parsed.mount.fixed_options = super::fixed_options(&parsed, true);
    let fs = new_fs(&ram).map_err(|e| CliError::new(format!("making the RAM filesystem: {e}")))?;
    // Serving ends at unmount (or a signal); the last reference to the
    // filesystem goes with this function, and its contents with it.
    aegis_fuse::mount(fs, &mountpoint, &parsed.mount).map_err(|e| CliError::new(e.to_string()))?;
    Ok(0)
}

/// An empty filesystem with the limits and root directory `ram` asks for.
fn new_fs(ram: &RamOptions) -> aegis_vfs::Result<Arc<dyn FileSystem>> {
    let fs = RamFs::with_config(RamFsConfig {
        max_bytes: ram.max_bytes,
        max_inodes: ram.max_inodes,
    });
    // RamFs makes its root 0755 root:root; set it as tmpfs's mode=, uid=
    // and gid= do, as root, before anyone else can see it.
    let root = SetAttr {
        mode: Some(ram.mode),
        uid: Some(ram.uid),
        gid: Some(ram.gid),
        ..SetAttr::default()
    };
    fs.setattr(&Request::root(), ROOT_INO, &root, None)?;
    Ok(Arc::new(fs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_fs_has_the_limits_and_root_asked_for() {
        let ram = RamOptions {
            max_bytes: 8 << 20,
            max_inodes: 100,
            mode: 0o1777,
            uid: 1000,
            gid: 100,
        };
        let fs = new_fs(&ram).unwrap();
        let root = fs.getattr(ROOT_INO).unwrap();
        assert_eq!((root.perm, root.uid, root.gid), (0o1777, 1000, 100));
        let s = fs.statfs(ROOT_INO).unwrap();
        assert_eq!(s.blocks * u64::from(s.frsize), 8 << 20);
        assert_eq!((s.bfree, s.files), (s.blocks, 100));
    }
}
