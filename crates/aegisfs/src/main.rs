//! `aegisfs`: the one command line for AegisFS pools.
//!
//! Every failure ends as one line on stderr naming the problem and a
//! non-zero exit; nothing is written unless the command's checks pass.

mod cmd;
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Mkfs(a) => cmd::mkfs::run(a),
        Command::Info(a) => cmd::info::run(a),
        Command::Fsck(a) => cmd::fsck::run(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("aegisfs: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
