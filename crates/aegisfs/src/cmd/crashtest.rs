//! `aegisfs crashtest SCRIPT`: run a workload script on an in-memory
//! AegisFS that records every write and flush, then check every crash
//! state (each flush point, and random subsets of the writes between two
//! flushes): each must mount with the intent log replayed, hold exactly
//! what an acknowledged fsync (or a later one) left, and pass fsck. The
//! script format is in `aegis_crashtest::run_script` and the README.
//! Exit 0 when every state passed, 1 when some failed.

use std::path::PathBuf;

use aegis_crashtest::run_script;

use super::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    /// Workload script, one operation per line (`-` reads standard input).
    pub script: PathBuf,
    /// Random subsets of the unflushed writes tried per flush.
    #[arg(long, default_value_t = 10)]
    pub subsets: usize,
    /// Seed of those subsets.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(a: Args) -> CliResult<u8> {
    let text = if a.script.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::new(format!("standard input: {e}")))?
    } else {
        std::fs::read_to_string(&a.script)
            .map_err(|e| CliError::new(format!("{}: {e}", a.script.display())))?
    };
    let (report, notes) = run_script(&text, a.subsets.min(1000), a.seed)
        .map_err(|e| CliError::new(format!("{}: {e}", a.script.display())))?;
    for n in &notes {
        println!("note: {n}");
    }
    println!(
        "{} fsyncs ({} through the intent log, {} commits), {} flushes",
        report.fsyncs, report.logged, report.committed, report.flushes
    );
    println!(
        "{} crash states checked: {} passed{}",
        report.states,
        report.states - report.failures.len().min(report.states),
        if report.newer > 0 {
            format!(
                " ({} showed a later fsync than the last acknowledged one)",
                report.newer
            )
        } else {
            String::new()
        }
    );
    if report.after_shutdown > 0 {
        println!(
            "FAILED: {} device writes after the shutdown",
            report.after_shutdown
        );
        return Ok(1);
    }
    if report.failures.is_empty() {
        return Ok(0);
    }
    for f in &report.failures {
        println!("FAILED: {f}");
    }
    Ok(1)
}
