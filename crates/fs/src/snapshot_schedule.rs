//! Scheduled snapshots with retention, as zfs-auto-snapshot and sanoid
//! keep them: a dataset holds any number of schedules, each an interval
//! and how many of its snapshots to keep. The mounted daemon's sync
//! thread runs them (`Store::run_schedules`): when a schedule's newest
//! snapshot is an interval old (or there is none), it takes
//! `auto-<interval>-<UTC time>`, then deletes (in the background) that
//! schedule's oldest ones beyond `keep`. Only snapshots named by a
//! schedule are ever deleted by it.
//!
//! Item (object 0 of the dataset tree, type 20): key suffix u64 interval
//! in seconds (big-endian); value u32 keep · u32 reserved (0), little
//! endian.

use std::ops::Bound;

use aegis_pool::AllocClass;

use crate::error::{FsError, Result};
use crate::posix::keys;
use crate::store::{now_ns, Store};

/// Shortest interval: the sync thread looks every few seconds.
pub const MIN_EVERY_SECS: u64 = 10;
/// Most snapshots one schedule keeps, and most schedules a dataset has.
pub const MAX_KEEP: u32 = 10_000;
pub const MAX_SCHEDULES: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub every_secs: u64,
    pub keep: u32,
}

impl Schedule {
    /// The label in its snapshots' names: `15m`, `1h`, `1d`, or seconds.
    pub fn label(&self) -> String {
        let s = self.every_secs;
        match s {
            _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
            _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
            _ if s.is_multiple_of(60) => format!("{}m", s / 60),
            _ => format!("{s}s"),
        }
    }

    fn prefix(&self) -> String {
        format!("auto-{}-", self.label())
    }
}

fn decode(k: &[u8], v: &[u8]) -> Result<Schedule> {
    let bad = || FsError::Corrupt {
        what: "snapshot schedule".into(),
        detail: "malformed".into(),
    };
    if k.len() != 17 || v.len() != 8 {
        return Err(bad());
    }
    let every_secs = u64::from_be_bytes(k[9..17].try_into().expect("8 bytes"));
    let keep = u32::from_le_bytes(v[..4].try_into().expect("4 bytes"));
    if every_secs < MIN_EVERY_SECS || keep == 0 || keep > MAX_KEEP || v[4..] != [0; 4] {
        return Err(bad());
    }
    Ok(Schedule { every_secs, keep })
}

/// `2026-12-03T12:00:00Z` for `ns` since the epoch.
fn utc(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Store {
    /// Dataset `ds`'s schedules, shortest interval first.
    pub fn schedules(&self, ds: u64) -> Result<Vec<Schedule>> {
        self.read_tree(ds, |t| {
            let lo = keys::schedule(0);
            let hi = keys::item_end(keys::META_OBJECT, keys::SCHEDULE);
            let mut out = Vec::new();
            for item in t.range(Bound::Included(&lo[..]), Bound::Excluded(&hi[..])) {
                let (k, v) = item?;
                out.push(decode(&k, &v)?);
            }
            Ok(out)
        })
    }

    /// Add schedule `s` to dataset `ds` (or change its `keep`), committed.
    pub fn set_schedule(&self, ds: u64, s: Schedule) -> Result<()> {
        self.writable_with_snapshots()?;
        if s.every_secs < MIN_EVERY_SECS || s.keep == 0 || s.keep > MAX_KEEP {
            return Err(FsError::Invalid(format!(
                "a schedule takes an interval of at least {MIN_EVERY_SECS} s and keeps 1 to {MAX_KEEP}"
            )));
        }
        let have = self.schedules(ds)?;
        if have.len() >= MAX_SCHEDULES && !have.iter().any(|h| h.every_secs == s.every_secs) {
            return Err(FsError::Invalid(format!(
                "a dataset has at most {MAX_SCHEDULES} schedules"
            )));
        }
        let mut v = s.keep.to_le_bytes().to_vec();
        v.extend_from_slice(&[0; 4]);
        self.with_tree(ds, AllocClass::Normal, |t| {
            t.insert(&keys::schedule(s.every_secs), &v)?;
            Ok(())
        })?;
        self.commit()?;
        Ok(())
    }

    /// Remove dataset `ds`'s schedule of `every_secs` (its snapshots stay).
    pub fn remove_schedule(&self, ds: u64, every_secs: u64) -> Result<()> {
        self.writable_with_snapshots()?;
        let gone = self.with_tree(ds, AllocClass::Reserved, |t| {
            Ok(t.remove(&keys::schedule(every_secs))?.is_some())
        })?;
        if !gone {
            return Err(FsError::Invalid(format!(
                "no schedule of every {every_secs} s"
            )));
        }
        self.commit()?;
        Ok(())
    }

    /// Run dataset `ds`'s schedules at time `now_ns`: take what is due,
    /// then let go of what a schedule keeps no more. Returns the names of
    /// the snapshots taken.
    pub fn run_schedules(&self, ds: u64, now_ns: u64) -> Result<Vec<String>> {
        let mut taken = Vec::new();
        for s in self.schedules(ds)? {
            let prefix = s.prefix();
            let mine: Vec<_> = self
                .snapshots(ds)
                .into_iter()
                .filter(|x| !x.deleting && x.name.starts_with(&prefix))
                .collect();
            let due = mine.last().is_none_or(|x| {
                now_ns.saturating_sub(x.created_ns) >= s.every_secs * 1_000_000_000
            });
            let mut count = mine.len();
            if due {
                let name = format!("{prefix}{}", utc(now_ns));
                if !self.snapshots(ds).iter().any(|x| x.name == name) {
                    self.create_snapshot_at(ds, &name, now_ns)?;
                    taken.push(name);
                    count += 1;
                }
            }
            for old in mine.iter().take(count.saturating_sub(s.keep as usize)) {
                self.begin_snapshot_delete(ds, &old.name)?;
            }
        }
        Ok(taken)
    }

    /// The sync thread's round: run the schedules of every dataset
    /// mounted writable, now.
    pub(crate) fn run_mounted_schedules(&self) {
        let mounted: Vec<u64> = self.trees.read().logs.keys().copied().collect();
        for ds in mounted {
            if let Err(e) = self.run_schedules(ds, now_ns()) {
                tracing::warn!(dataset = ds, error = %e, "scheduled snapshot failed");
            }
        }
    }
}
