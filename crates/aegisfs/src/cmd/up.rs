//! `aegisfs up`: the quick start. Make `aegisfs.img` (1 GiB, sparse) if it
//! is missing, make `./mnt` if it is missing, and mount one on the other in
//! the background. Running it again while mounted does nothing.

use std::path::PathBuf;

use super::{mkfs, mount, CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// Image file to create if missing, then mount.
    #[arg(long, default_value = "aegisfs.img")]
    pub image: PathBuf,
    /// Directory to mount on (created if missing).
    #[arg(long, default_value = "mnt")]
    pub mountpoint: PathBuf,
    /// Size of a new image.
    #[arg(long, default_value = "1G")]
    pub size: String,
    /// Mount options, as for `aegisfs mount -o`.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
}

pub fn run(a: Args) -> CliResult<u8> {
    if a.mountpoint.exists() {
        let canon = a
            .mountpoint
            .canonicalize()
            .map_err(|e| CliError::new(format!("{}: {e}", a.mountpoint.display())))?;
        if mount::is_mounted(&canon) {
            println!(
                "{} is already mounted; unmount it with: fusermount3 -u {}",
                a.mountpoint.display(),
                a.mountpoint.display()
            );
            return Ok(0);
        }
    }
    if !a.image.exists() {
        mkfs::run(mkfs::Args {
            image: a.image.clone(),
            size: Some(a.size.clone()),
            block_size: "4K".into(),
            label: String::new(),
            checksum: "blake3".into(),
            compression: "lz4".into(),
            record_size: "128K".into(),
            log_size: None,
            metadata_copies: 2,
            force: false,
        })?;
    }
    if !a.mountpoint.exists() {
        std::fs::create_dir_all(&a.mountpoint)
            .map_err(|e| CliError::new(format!("{}: {e}", a.mountpoint.display())))?;
    }
    mount::run(mount::Args {
        image: a.image.clone(),
        mountpoint: a.mountpoint.clone(),
        options: a.options.clone(),
        foreground: false,
    })?;
    println!(
        "mounted {} at {}\nunmount with: fusermount3 -u {}   (everything is committed on unmount)",
        a.image.display(),
        a.mountpoint.display(),
        a.mountpoint.display()
    );
    Ok(0)
}
