//! `aegisfs quota set|get|list TARGET`: limits and usage of users, groups
//! and datasets (`aegis_fs::posix::quota`). TARGET is IMAGE[/DATASET] of
//! an unmounted pool, or the mount point of a mounted one, whose daemon
//! takes the command (live commands `quota set KIND ID BYTES INODES`,
//! `quota list`). A limit below the usage is set, with a warning: new
//! growth is refused until enough is freed.

use std::path::{Path, PathBuf};

use aegis_fs::posix::quota::{QuotaEntry, QuotaId, KIND_GROUP, KIND_USER};
use serde::Serialize;

use super::dataset::split_target;
use super::{CliError, CliResult};
use crate::units::{human, parse_size};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Args)]
struct Who {
    /// A user: a name or a uid.
    #[arg(long, group = "who")]
    user: Option<String>,
    /// A group: a name or a gid.
    #[arg(long, group = "who")]
    group: Option<String>,
    /// The dataset as a whole (its files' bytes, not its snapshots').
    #[arg(long, group = "who")]
    dataset: bool,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Set limits (`none` or 0: no limit; a limit left out stays as it is).
    Set {
        /// IMAGE[/DATASET] or a mount point.
        target: PathBuf,
        #[command(flatten)]
        who: Who,
        /// Most bytes (512M, 10G, none).
        #[arg(long)]
        bytes: Option<String>,
        /// Most inodes (files, directories, links; none).
        #[arg(long)]
        inodes: Option<String>,
    },
    /// Show one user's, group's or the dataset's limits and usage.
    Get {
        target: PathBuf,
        #[command(flatten)]
        who: Who,
        #[arg(long)]
        json: bool,
    },
    /// Show every user, group and dataset entry.
    List {
        target: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Shown {
    kind: &'static str,
    id: u32,
    limit_bytes: Option<u64>,
    limit_inodes: Option<u64>,
    used_bytes: u64,
    used_inodes: u64,
}

fn shown((q, e): (QuotaId, QuotaEntry)) -> Shown {
    let limit = |v: u64| (v != 0).then_some(v);
    Shown {
        kind: match q.kind {
            KIND_USER => "user",
            KIND_GROUP => "group",
            _ => "dataset",
        },
        id: q.id,
        limit_bytes: limit(e.limit_bytes),
        limit_inodes: limit(e.limit_inodes),
        used_bytes: e.used_bytes,
        used_inodes: e.used_inodes,
    }
}

pub fn run(a: Args) -> CliResult<u8> {
    match a.action {
        Action::Set {
            target,
            who,
            bytes,
            inodes,
        } => set(&target, &who, bytes.as_deref(), inodes.as_deref()),
        Action::Get { target, who, json } => {
            let q = quota_id(&who)?;
            let all = entries(&target)?;
            let e = all
                .iter()
                .find(|(id, _)| *id == q)
                .map_or_else(|| (q, QuotaEntry::default()), |x| *x);
            print(&[e], json);
            Ok(0)
        }
        Action::List { target, json } => {
            print(&entries(&target)?, json);
            Ok(0)
        }
    }
}

/// A limit as typed: a size (bytes) or a count (inodes), `none` for 0.
fn limit(s: Option<&str>, what: &str, size: bool) -> CliResult<Option<u64>> {
    let Some(s) = s else { return Ok(None) };
    if s == "none" {
        return Ok(Some(0));
    }
    let v = match size {
        true => parse_size(s),
        false => s
            .parse::<u64>()
            .map_err(|_| format!("'{s}' is not a count")),
    };
    v.map(Some)
        .map_err(|e| CliError::new(format!("--{what}: {e}")))
}

fn set(target: &Path, who: &Who, bytes: Option<&str>, inodes: Option<&str>) -> CliResult<u8> {
    let q = quota_id(who)?;
    let (bytes, inodes) = (
        limit(bytes, "bytes", true)?,
        limit(inodes, "inodes", false)?,
    );
    if bytes.is_none() && inodes.is_none() {
        return Err(CliError::new("give --bytes, --inodes or both"));
    }
    let old = entries(target)?
        .into_iter()
        .find(|(id, _)| *id == q)
        .map_or_else(QuotaEntry::default, |(_, e)| e);
    let (b, i) = (
        bytes.unwrap_or(old.limit_bytes),
        inodes.unwrap_or(old.limit_inodes),
    );
    let e = match live_mount(target) {
        Some(mnt) => {
            let words = [
                "quota".to_string(),
                "set".into(),
                q.kind.to_string(),
                q.id.to_string(),
                b.to_string(),
                i.to_string(),
            ];
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            super::snapshot::live(&mnt, &words)?;
            QuotaEntry {
                limit_bytes: b,
                limit_inodes: i,
                ..old
            }
        }
        None => offline(target, |store, ds| store.set_quota(ds, q, b, i))?,
    };
    if (b != 0 && e.used_bytes > b) || (i != 0 && e.used_inodes > i) {
        eprintln!(
            "aegisfs: warning: {} uses {} in {} inodes, past the new limit; its growth is refused until it frees",
            q.describe(),
            human(e.used_bytes),
            e.used_inodes
        );
    }
    println!("{}: quota of {} set", target.display(), q.describe());
    Ok(0)
}

/// The mount point `target` names, if it is a directory.
fn live_mount(target: &Path) -> Option<PathBuf> {
    target.is_dir().then(|| target.to_path_buf())
}

fn entries(target: &Path) -> CliResult<Vec<(QuotaId, QuotaEntry)>> {
    match live_mount(target) {
        Some(mnt) => parse_lines(&super::snapshot::live(&mnt, &["quota", "list"])?),
        None => offline(target, |store, ds| store.quotas(ds)),
    }
}

/// Run `f` on the dataset `target` names in its unmounted pool.
fn offline<T>(
    target: &Path,
    f: impl FnOnce(&aegis_fs::Store, u64) -> aegis_fs::Result<T>,
) -> CliResult<T> {
    let (image, dataset) = split_target(target);
    let store = super::dataset::open_locked(&image, true)?;
    let where_ = super::snapshot::shown(&image, &dataset);
    let id = super::snapshot::dataset_id(&store, &dataset)?;
    let r = f(&store, id);
    let closed = store.shutdown();
    let r = r.map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    closed.map_err(|e| CliError::new(format!("{where_}: {e}")))?;
    Ok(r)
}

/// The daemon's `quota list` reply: one entry a line, six numbers.
fn parse_lines(text: &str) -> CliResult<Vec<(QuotaId, QuotaEntry)>> {
    let bad = || {
        CliError::new(format!(
            "the daemon's quota list is not understood: {text:?}"
        ))
    };
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let n: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let [kind, id, lb, li, ub, ui] = n[..] else {
            return Err(bad());
        };
        let (Ok(kind), Ok(id)) = (u8::try_from(kind), u32::try_from(id)) else {
            return Err(bad());
        };
        let e = QuotaEntry {
            limit_bytes: lb,
            limit_inodes: li,
            used_bytes: ub,
            used_inodes: ui,
        };
        out.push((QuotaId { kind, id }, e));
    }
    Ok(out)
}

fn quota_id(who: &Who) -> CliResult<QuotaId> {
    match (&who.user, &who.group, who.dataset) {
        (Some(u), None, false) => Ok(QuotaId::user(resolve(u, true)?)),
        (None, Some(g), false) => Ok(QuotaId::group(resolve(g, false)?)),
        (None, None, true) => Ok(QuotaId::dataset()),
        _ => Err(CliError::new("name one of --user, --group or --dataset")),
    }
}

/// A uid or gid as a number, or a user or group name from the system's
/// databases.
fn resolve(s: &str, user: bool) -> CliResult<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Ok(n);
    }
    let c = std::ffi::CString::new(s).map_err(|_| CliError::new(format!("'{s}' is not a name")))?;
    // SAFETY: `c` is NUL-terminated; the returned records are read at once,
    // before any other call that could reuse their static buffers.
    let id = unsafe {
        if user {
            let p = libc::getpwnam(c.as_ptr());
            (!p.is_null()).then(|| (*p).pw_uid)
        } else {
            let g = libc::getgrnam(c.as_ptr());
            (!g.is_null()).then(|| (*g).gr_gid)
        }
    };
    let what = if user { "user" } else { "group" };
    id.ok_or_else(|| CliError::new(format!("no {what} named '{s}'")))
}

fn print(entries: &[(QuotaId, QuotaEntry)], json: bool) {
    let rows: Vec<Shown> = entries.iter().copied().map(shown).collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serialisable")
        );
        return;
    }
    println!(
        "{:<8} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "KIND", "ID", "USED", "LIMIT", "INODES", "INODE LIMIT"
    );
    let lim = |v: Option<u64>, f: &dyn Fn(u64) -> String| v.map_or("none".to_string(), f);
    for r in rows {
        let id = if r.kind == "dataset" {
            "-".to_string()
        } else {
            r.id.to_string()
        };
        println!(
            "{:<8} {:>10} {:>12} {:>12} {:>12} {:>12}",
            r.kind,
            id,
            human(r.used_bytes),
            lim(r.limit_bytes, &human),
            r.used_inodes,
            lim(r.limit_inodes, &|v| v.to_string())
        );
    }
}
