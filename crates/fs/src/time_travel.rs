//! Time travel: a window during which every txg of a dataset can be
//! mounted read-only and files brought back from it (the cryo seed's
//! time-travel recovery).
//!
//! It is made of snapshots, so it costs what snapshots cost and nothing
//! else: with a window set (object 0, item [`TIMETRAVEL`]: u64 seconds),
//! every commit that changes the dataset's tree also takes a hidden
//! snapshot of it named `%txg-N` (N the txg; `%` is refused in names
//! users give), and the mounted daemon's sync thread deletes the hidden
//! snapshots that fell out of the window, in the background batches of
//! any snapshot delete. The state at txg T is the newest hidden snapshot
//! at or before T (the dataset did not change in between), so the
//! newest one older than the window stays too. The space the window
//! holds is the unique bytes of its snapshots, given back as it moves.
//!
//! [`TIMETRAVEL`]: crate::posix::keys::TIMETRAVEL

use aegis_pool::AllocClass;

use crate::error::{FsError, Result};
use crate::posix::keys;
use crate::snapshot_admin::{SnapRequest, MAX_SNAPSHOTS};
use crate::store::{now_ns, Store, Trees};

/// The name prefix of the window's snapshots.
pub const PREFIX: &str = "%txg-";
/// Shortest and longest window.
pub const MIN_WINDOW_SECS: u64 = 10;
pub const MAX_WINDOW_SECS: u64 = 30 * 24 * 3600;

/// Where to travel to: a txg, or a time (ns since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    Txg(u64),
    TimeNs(u64),
}

/// A dataset's window, as `aegisfs timetravel` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub window_secs: u64,
    /// Txgs and times of the hidden snapshots, oldest first.
    pub points: Vec<(u64, u64)>,
    /// Bytes deleting all of them would free now.
    pub held_bytes: u64,
}

/// Is `name` one of the window's snapshots?
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('%')
}

/// The window of the dataset whose tree is `tree`, if it has one.
pub(crate) fn window_of(tree: &aegis_btree::Tree) -> Result<Option<u64>> {
    match tree.get(&keys::timetravel())? {
        None => Ok(None),
        Some(v) => match <[u8; 8]>::try_from(v.as_slice()) {
            Ok(b) => Ok(Some(u64::from_le_bytes(b))),
            Err(_) => Err(FsError::Corrupt {
                what: "time travel window".into(),
                detail: format!("{} bytes, not 8", v.len()),
            }),
        },
    }
}

impl Trees {
    /// At the close of txg `txg`: a hidden snapshot of each dataset in
    /// `changed` (whose tree this txg changed and that has a window).
    pub(crate) fn request_time_travel(&mut self, changed: &[u64], txg: u64) {
        for &ds in changed {
            if self.snapshots.len() + self.snap_requests.len() >= MAX_SNAPSHOTS {
                tracing::warn!(
                    dataset = ds,
                    "time travel: the pool holds the most snapshots it can"
                );
                return;
            }
            let id = self.next_object_id();
            self.snap_requests.push(SnapRequest {
                ds,
                id,
                new_deadlist: id + 1,
                name: format!("{PREFIX}{txg}"),
                created_ns: now_ns(),
                received_guid: None,
            });
        }
    }
}

impl Store {
    /// Give dataset `ds` a window of `window_secs` (0: none; the hidden
    /// snapshots then go at the next expiry round, all of them).
    pub fn set_time_travel(&self, ds: u64, window_secs: u64) -> Result<()> {
        self.writable_with_snapshots()?;
        if window_secs != 0 && !(MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(&window_secs) {
            return Err(FsError::Invalid(format!(
                "a window of {window_secs} s: it is from {MIN_WINDOW_SECS} s to 30 days, or off"
            )));
        }
        self.with_tree(ds, AllocClass::Reserved, |t| {
            match window_secs {
                0 => t.remove(&keys::timetravel())?,
                w => t.insert(&keys::timetravel(), &w.to_le_bytes())?,
            };
            Ok(())
        })?;
        self.commit()?;
        if window_secs == 0 {
            self.expire_time_travel(ds, now_ns())?;
        }
        Ok(())
    }

    /// Dataset `ds`'s window and what it holds (`None`: no window and no
    /// hidden snapshot left).
    pub fn time_travel(&self, ds: u64) -> Result<Option<Window>> {
        let window_secs = self.read_tree(ds, window_of)?.unwrap_or(0);
        let mut points = Vec::new();
        let mut held_bytes = 0;
        for s in self.snapshots(ds) {
            if is_hidden(&s.name) && !s.deleting {
                points.push((s.txg, s.created_ns));
                held_bytes += self.snapshot_unique_bytes(s.id)?;
            }
        }
        if window_secs == 0 && points.is_empty() {
            return Ok(None);
        }
        Ok(Some(Window {
            window_secs,
            points,
            held_bytes,
        }))
    }

    /// The snapshot holding dataset `ds` as it was `at`: the newest one
    /// (hidden or not) taken at or before it.
    pub fn snapshot_at(&self, ds: u64, at: At) -> Result<String> {
        let best = self
            .snapshots(ds)
            .into_iter()
            .filter(|s| !s.deleting)
            .filter(|s| match at {
                At::Txg(t) => s.txg <= t,
                At::TimeNs(ns) => s.created_ns <= ns,
            })
            .max_by_key(|s| (s.txg, s.created_ns));
        best.map(|s| s.name).ok_or_else(|| {
            FsError::Invalid(format!(
                "nothing of the dataset is kept from {}: the window starts later",
                match at {
                    At::Txg(t) => format!("txg {t}"),
                    At::TimeNs(ns) => format!("{} ns", ns),
                }
            ))
        })
    }

    /// Delete dataset `ds`'s hidden snapshots that fell out of its window
    /// at `now_ns`, all but the newest of them (it holds the window's
    /// first txgs); with no window, all of them. The deletes go on in the
    /// background. Returns how many began.
    pub fn expire_time_travel(&self, ds: u64, now_ns: u64) -> Result<usize> {
        let window_ns = self.read_tree(ds, window_of)?.unwrap_or(0) * 1_000_000_000;
        let hidden: Vec<_> = self
            .snapshots(ds)
            .into_iter()
            .filter(|s| is_hidden(&s.name) && !s.deleting)
            .collect();
        let start = now_ns.saturating_sub(window_ns);
        let old: Vec<_> = hidden.iter().filter(|s| s.created_ns < start).collect();
        let keep_one = usize::from(window_ns > 0 && !old.is_empty());
        let mut n = 0;
        for s in &old[..old.len() - keep_one] {
            self.begin_snapshot_delete(ds, &s.name)?;
            n += 1;
        }
        Ok(n)
    }

    /// The sync thread's round: expire the windows of the datasets
    /// mounted writable.
    pub(crate) fn expire_mounted_time_travel(&self) {
        let mounted: Vec<u64> = self.trees.read().logs.keys().copied().collect();
        for ds in mounted {
            if let Err(e) = self.expire_time_travel(ds, now_ns()) {
                tracing::warn!(dataset = ds, error = %e, "time travel expiry failed");
            }
        }
    }
}
