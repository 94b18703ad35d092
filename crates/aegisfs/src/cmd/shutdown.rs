//! `aegisfs shutdown MOUNTPOINT`: stop a mounted AegisFS the way crash
//! tests stop ext4 and XFS (`FS_IOC_SHUTDOWN`). From then on every
//! operation on the mount fails with EIO and nothing more reaches the
//! image; unmount it, and the next mount shows what was durable (fsynced
//! or committed) at that moment.

use std::path::PathBuf;

use super::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// Mount point of an AegisFS mount.
    pub mountpoint: PathBuf,
}

pub fn run(a: Args) -> CliResult<u8> {
    let mnt = a
        .mountpoint
        .canonicalize()
        .map_err(|e| CliError::new(format!("{}: {e}", a.mountpoint.display())))?;
    if !super::mount::is_mounted(&mnt) {
        return Err(CliError::new(format!(
            "{}: not a mounted AegisFS",
            mnt.display()
        )));
    }
    aegis_fuse::control::shutdown(&mnt).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(libc::EPERM) => "only root may shut a filesystem down".to_string(),
            Some(libc::ENOTTY) => "the filesystem does not know this request".to_string(),
            _ => e.to_string(),
        };
        CliError::new(format!("{}: {why}", mnt.display()))
    })?;
    println!(
        "{}: shut down; every operation now fails with EIO. Unmount it; the next mount shows what was durable.",
        mnt.display()
    );
    Ok(0)
}
