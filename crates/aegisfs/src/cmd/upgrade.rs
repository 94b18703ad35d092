//! `aegisfs upgrade IMAGE`: turn on the features this build adds to a
//! pool made by an older one (today `snapshots`). Explicit, because a
//! pool upgraded so no longer opens with the older build.

use std::path::PathBuf;
use std::sync::Arc;

use aegis_block::DeviceRef;

use super::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// The pool's image file or block device.
    pub image: PathBuf,
}

pub fn run(a: Args) -> CliResult<u8> {
    let shown = a.image.display();
    let dev = super::open_locked(&a.image, true)?;
    let added = aegis_fs::Store::upgrade(vec![Arc::new(dev) as DeviceRef])
        .map_err(|e| CliError::new(format!("{shown}: {e}")))?;
    if added.is_empty() {
        println!("{shown}: every feature of this build is on already");
    } else {
        println!("{shown}: turned on {}", added.join(", "));
    }
    Ok(0)
}
