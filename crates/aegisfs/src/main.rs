//! `aegisfs`: the one command line for AegisFS pools.
//!
//! Every failure ends as one line on stderr naming the problem and a
//! non-zero exit; nothing is written unless the command's checks pass.

mod cmd;
mod loop_device;
mod signature;
mod units;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "aegisfs",
    version,
    about = "AegisFS: a checksummed copy-on-write filesystem"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a pool on an image file (created sparse if missing) or a block device.
    Mkfs(cmd::mkfs::Args),
    /// Mount an image with FUSE, or an empty RAM filesystem with --ram (in the background unless --foreground).
    Mount(cmd::mount::CliArgs),
    /// Quick start: create aegisfs.img (1 GiB) if missing and mount it at ./mnt.
    Up(cmd::up::Args),
    /// Set a property of files or directories on a mounted AegisFS (logging=full|metadata|none).
    Set(cmd::property::SetArgs),
    /// Show a property of files or directories on a mounted AegisFS.
    Get(cmd::property::GetArgs),
    /// Run a workload script on a recorded in-memory AegisFS and check every crash state.
    Crashtest(cmd::crashtest::Args),
    /// Stop a mounted AegisFS as a crash would (FS_IOC_SHUTDOWN): every operation then fails with EIO.
    Shutdown(cmd::shutdown::Args),
    /// Show a pool's identity, features, newest txg, space and trees.
    Info(cmd::info::Args),
    /// Check every reachable block; exit 0 clean, 1 corrected, 4 errors left, 8 operational error.
    Fsck(cmd::fsck::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AEGISFS_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match mount_helper_args() {
        Some(args) => cmd::mount::run(args),
        None => run(Cli::parse()),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("aegisfs: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(cli: Cli) -> cmd::CliResult<u8> {
    match cli.command {
        Command::Mkfs(a) => cmd::mkfs::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Fsck(a) => cmd::fsck::run(a),
        Command::Mount(a) => cmd::mount::run_cli(a),
        Command::Up(a) => cmd::up::run(a),
        Command::Set(a) => cmd::property::set(a),
        Command::Crashtest(a) => cmd::crashtest::run(a),
        Command::Get(a) => cmd::property::get(a),
        Command::Shutdown(a) => cmd::shutdown::run(a),
    }
}

/// Called as `mount.fuse.aegisfs` (or `mount.fuseblk.aegisfs`,
/// `mount.aegisfs`) by mount(8):
/// `SOURCE DIR [-sfnv] [-o OPTIONS]`. Options only mount(8) understands
/// are dropped; `-n`, `-s` and `-v` are accepted and ignored; `-f` keeps
/// the daemon in the foreground.
fn mount_helper_args() -> Option<cmd::mount::Args> {
    let mut argv = std::env::args_os();
    let argv0 = argv.next()?;
    let name = std::path::Path::new(&argv0)
        .file_name()?
        .to_string_lossy()
        .into_owned();
    // mount.fuseblk.aegisfs: what mount(8) calls for a remount of a
    // fuseblk mount (the type it reads back is fuseblk.aegisfs).
    if ![
        "mount.fuse.aegisfs",
        "mount.fuseblk.aegisfs",
        "mount.aegisfs",
    ]
    .contains(&name.as_str())
    {
        return None;
    }
    let mut positional = Vec::new();
    // mount(8) passes neither `dev` nor `suid` (its defaults), so as root
    // they are the helper's defaults too; `nodev`/`nosuid` given later
    // override them. Unprivileged mounts get nodev,nosuid from
    // fusermount3 whatever is asked.
    // SAFETY: geteuid has no preconditions.
    let mut options = if unsafe { libc::geteuid() } == 0 {
        vec!["dev,suid".to_string()]
    } else {
        Vec::new()
    };
    let mut foreground = false;
    while let Some(a) = argv.next() {
        match a.to_str() {
            Some("-o") => {
                if let Some(o) = argv.next() {
                    options.push(cmd::mount::strip_mount8_options(&o.to_string_lossy()));
                }
            }
            Some("-f") => foreground = true,
            Some("-n" | "-s" | "-v") => {}
            _ => positional.push(std::path::PathBuf::from(a)),
        }
    }
    if positional.len() != 2 {
        eprintln!("usage: {name} IMAGE MOUNTPOINT [-o OPTIONS]");
        std::process::exit(1);
    }
    let mountpoint = positional.pop().expect("two");
    let image = positional.pop().expect("two");
    Some(cmd::mount::Args {
        image,
        mountpoint,
        options,
        foreground,
    })
}
