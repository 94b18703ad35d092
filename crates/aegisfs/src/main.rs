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
    /// Set a property of files or directories on a mounted AegisFS (logging=full|metadata|none, recordsize=4K..1M).
    Set(cmd::property::SetArgs),
    /// Copy out of an image (get [-r] IMAGE:PATH DEST), or show a property of files on a mounted AegisFS (get PROPERTY PATH...).
    Get(cmd::image::GetAnyArgs),
    /// Copy a host file or tree (-r) into an image: put [-r] SRC IMAGE:PATH.
    Put(cmd::image::PutArgs),
    /// List directories of an unmounted image: ls [-l] [-a] [-R] IMAGE:PATH...
    Ls(cmd::image::LsArgs),
    /// Show attributes of paths on an unmounted image.
    Stat(cmd::image::StatArgs),
    /// Print files of an unmounted image.
    Cat(cmd::image::CatArgs),
    /// Make directories on an unmounted image: mkdir [-p] [-m MODE] IMAGE:PATH...
    Mkdir(cmd::image::MkdirArgs),
    /// Remove files (and with -r directories) on an unmounted image.
    Rm(cmd::image::RmArgs),
    /// Rename or move within an unmounted image: mv IMAGE:SRC IMAGE:DEST.
    Mv(cmd::image::MvArgs),
    /// Make a hard link (ln IMAGE:FILE IMAGE:NEW) or a symlink (ln -s TARGET IMAGE:NEW) on an image.
    Ln(cmd::image::LnArgs),
    /// Create files or set their times to now on an unmounted image.
    Touch(cmd::image::TouchArgs),
    /// Show the space and inodes of an unmounted image.
    Df(cmd::image::DfArgs),
    /// Show a directory tree of an unmounted image.
    Tree(cmd::image::TreeArgs),
    /// Run a workload script on a recorded in-memory AegisFS and check every crash state.
    Crashtest(cmd::crashtest::Args),
    /// Stop a mounted AegisFS as a crash would (FS_IOC_SHUTDOWN): every operation then fails with EIO.
    Shutdown(cmd::shutdown::Args),
    /// Show a pool's identity, features, newest txg, space and trees.
    Info(cmd::info::Args),
    /// Check every reachable block; exit 0 clean, 1 corrected, 4 errors left, 8 operational error.
    Fsck(cmd::fsck::Args),
    /// Create, list, destroy or rename the filesystems (datasets) of an unmounted pool.
    Dataset(cmd::dataset::Args),
    /// Take, list, delete or roll back to snapshots of a dataset of an unmounted pool (IMAGE[/DATASET]@NAME).
    Snapshot(cmd::snapshot::Args),
    /// Make a writable dataset from a snapshot: clone IMAGE[/DATASET]@SNAP IMAGE/NEW.
    Clone(cmd::snapshot::CloneArgs),
    /// Write a snapshot as a stream, whole or since an older one: send IMAGE[/DATASET]@SNAP [-i BASE] [-o FILE].
    Send(cmd::send::SendArgs),
    /// Apply a send stream to a dataset of an unmounted pool: receive IMAGE/DATASET [-i FILE].
    Receive(cmd::send::ReceiveArgs),
    /// Keep every txg of a dataset for a window while it is mounted, or show the window: timetravel IMAGE[/DATASET] [--window 15m|off].
    Timetravel(cmd::timetravel::Args),
    /// Bring a file or tree back from the dataset as it was: restore IMAGE[/DATASET]:PATH --at TIME|--txg N [--to PATH].
    Restore(cmd::timetravel::RestoreArgs),
    /// Share the identical records of an unmounted dataset's files (found by checksum, compared byte for byte): dedupe IMAGE[/DATASET] [--dry-run].
    Dedupe(cmd::dedupe::Args),
    /// Limits and usage of users, groups and datasets: quota set|get|list IMAGE[/DATASET]|MOUNTPOINT.
    Quota(cmd::quota::Args),
    /// Turn on the features this build adds to a pool made by an older one (snapshots, received snapshots).
    Upgrade(cmd::upgrade::Args),
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
        Command::Get(a) => cmd::image::get_any(a),
        Command::Put(a) => cmd::image::put(a),
        Command::Ls(a) => cmd::image::ls(a),
        Command::Stat(a) => cmd::image::stat(a),
        Command::Cat(a) => cmd::image::cat(a),
        Command::Mkdir(a) => cmd::image::mkdir(a),
        Command::Rm(a) => cmd::image::rm(a),
        Command::Mv(a) => cmd::image::mv(a),
        Command::Ln(a) => cmd::image::ln(a),
        Command::Touch(a) => cmd::image::touch(a),
        Command::Df(a) => cmd::image::df(a),
        Command::Tree(a) => cmd::image::tree(a),
        Command::Shutdown(a) => cmd::shutdown::run(a),
        Command::Dataset(a) => cmd::dataset::run(a),
        Command::Snapshot(a) => cmd::snapshot::run(a),
        Command::Clone(a) => cmd::snapshot::clone(a),
        Command::Send(a) => cmd::send::send(a),
        Command::Receive(a) => cmd::send::receive(a),
        Command::Timetravel(a) => cmd::timetravel::run(a),
        Command::Restore(a) => cmd::timetravel::restore(a),
        Command::Upgrade(a) => cmd::upgrade::run(a),
        Command::Quota(a) => cmd::quota::run(a),
        Command::Dedupe(a) => cmd::dedupe::run(a),
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
