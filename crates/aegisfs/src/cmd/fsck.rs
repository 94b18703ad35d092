//! `aegisfs fsck`: check (and with --repair, fix) a pool.
//! Exit codes follow fsck(8): 0 clean, 1 corrected, 4 left uncorrected,
//! 8 operational error (cannot open, cannot read).

use std::io::IsTerminal;
use std::path::PathBuf;

use aegis_fs::fsck::fsck;
use aegis_fs::OpenOptions;
use indicatif::{ProgressBar, ProgressStyle};

use super::{open_store, CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    pub image: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Rewrite bad copies from good ones and rebuild a wrong space map.
    #[arg(long)]
    pub repair: bool,
    /// Check this txg instead of the newest (must still be in the ring).
    #[arg(long)]
    pub txg: Option<u64>,
}

pub fn run(a: Args) -> CliResult<u8> {
    let opts = OpenOptions {
        read_only: !a.repair,
        rewind_txg: a.txg,
    };
    let store = open_store(&a.image, &opts).map_err(|e| CliError(e.0, 8))?;
    let bar = if std::io::stderr().is_terminal() && !a.json {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("checking {bar:40} {pos}/{len} blocks").expect("template"),
        );
        Some(b)
    } else {
        None
    };
    let mut progress = |done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total.max(done));
            b.set_position(done);
        }
    };
    let report = fsck(&store, a.repair, &mut progress)
        .map_err(|e| CliError(format!("{}: {e}", a.image.display()), 8))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if a.repair {
        store
            .shutdown()
            .map_err(|e| CliError(format!("{}: {e}", a.image.display()), 8))?;
    }
    let rep = store.open_report();
    if a.json {
        let v = serde_json::json!({
            "image": a.image.display().to_string(),
            "txg": report.txg,
            "newest_txg_seen": rep.newest_txg,
            "skipped_txgs": rep.skipped.iter().map(|(t, e)| serde_json::json!({"txg": t, "reason": e})).collect::<Vec<_>>(),
            "blocks_checked": report.blocks_checked,
            "copies_checked": report.copies_checked,
            "bytes_reachable": report.bytes_reachable,
            "errors": report.errors,
            "notes": report.notes,
            "exit_code": report.exit_code(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("serialisable")
        );
    } else {
        for (t, e) in &rep.skipped {
            println!("txg {t} skipped: {e}");
        }
        for n in &report.notes {
            println!("note: {n}");
        }
        for f in &report.errors {
            println!(
                "{}: {}",
                if f.repaired { "repaired" } else { "ERROR" },
                f.what
            );
        }
        println!(
            "{}: txg {}, {} blocks ({} copies) checked, {} errors, {} repaired",
            a.image.display(),
            report.txg,
            report.blocks_checked,
            report.copies_checked,
            report.errors.len(),
            report.corrected()
        );
    }
    Ok(report.exit_code() as u8)
}
