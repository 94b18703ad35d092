//! Live commands to a mounted dataset (`FileSystem::control`, reached
//! through the FUSE adapter's `AEGIS_IOC_COMMAND`): snapshots of the
//! mounted dataset while it serves.
//!
//! `snapshot create NAME` takes one at the next commit (the writers of
//! the moment go on); `snapshot delete NAME` marks it and leaves the
//! freeing to the sync thread, a batch per round; `snapshot list` gives
//! one line per snapshot: name, txg, creation time (ns), unique bytes,
//! and `deleting` for one being freed. `schedule set SECS KEEP`,
//! `schedule remove SECS` and `schedule list` manage the dataset's
//! snapshot schedules, which the sync thread runs. `send SNAP BASE TOKEN
//! FIFO` writes a send stream of snapshot SNAP (since BASE, after TOKEN's
//! key; `-` for none) into the FIFO the caller reads from, while the
//! dataset serves. A rollback needs the dataset unmounted and is refused
//! here. `quota list` gives one line per user, group or dataset entry
//! (kind, id, the bytes and inodes limits, the bytes and inodes used);
//! `quota set KIND ID BYTES INODES` sets a limit (0: none). A snapshot
//! mount takes no commands.

use aegis_vfs::ControlError;

use crate::diskfs::DiskFs;
use crate::error::lower;

type Reply = Result<String, ControlError>;

fn refuse(errno: i32, message: impl Into<String>) -> ControlError {
    ControlError {
        errno,
        message: message.into(),
    }
}

/// The engine's refusal, with its message.
fn engine(e: aegis_fs::FsError) -> ControlError {
    let message = e.to_string();
    let errno = match &e {
        aegis_fs::FsError::Invalid(_) => libc::EINVAL,
        _ => lower(e).errno(),
    };
    refuse(errno, message)
}

impl DiskFs {
    pub(crate) fn run_control(&self, words: &[&str]) -> Reply {
        if self.store.is_snapshot(self.ds) {
            return Err(refuse(libc::EROFS, "a snapshot takes no commands"));
        }
        match words {
            ["snapshot", "create", name] => self.live_snapshot_create(name),
            ["snapshot", "delete", name] => {
                self.store
                    .begin_snapshot_delete(self.ds, name)
                    .map_err(engine)?;
                Ok(format!(
                    "deleting snapshot {name}: its blocks are freed in the background"
                ))
            }
            ["snapshot", "list"] => self.live_snapshot_list(),
            ["send", snap, base, token, fifo] => self.live_send(snap, base, token, fifo),
            ["schedule", "list"] => self.live_schedule_list(),
            ["schedule", "set", every, keep] => {
                let (Ok(every_secs), Ok(keep)) = (every.parse(), keep.parse()) else {
                    return Err(refuse(
                        libc::EINVAL,
                        "schedule set takes seconds and a count",
                    ));
                };
                let s = aegis_fs::snapshot_schedule::Schedule { every_secs, keep };
                self.store.set_schedule(self.ds, s).map_err(engine)?;
                Ok(format!("snapshots every {} kept {keep}", s.label()))
            }
            ["schedule", "remove", every] => {
                let Ok(every_secs) = every.parse() else {
                    return Err(refuse(libc::EINVAL, "schedule remove takes seconds"));
                };
                self.store
                    .remove_schedule(self.ds, every_secs)
                    .map_err(engine)?;
                Ok("schedule removed".into())
            }
            ["quota", "list"] => self.live_quota_list(),
            ["quota", "set", kind, id, bytes, inodes] => {
                self.live_quota_set(kind, id, bytes, inodes)
            }
            ["snapshot", "rollback", _] => Err(refuse(
                libc::EBUSY,
                "the dataset is mounted: unmount it, then roll back the image",
            )),
            _ => Err(refuse(
                libc::ENOTTY,
                format!("no command {:?}", words.join(" ")),
            )),
        }
    }

    /// One line per entry: kind, id, bytes limit, inodes limit, bytes
    /// used, inodes used.
    fn live_quota_list(&self) -> Reply {
        let mut out = String::new();
        for (q, e) in self.store.quotas(self.ds).map_err(engine)? {
            out.push_str(&format!(
                "{} {} {} {} {} {}\n",
                q.kind, q.id, e.limit_bytes, e.limit_inodes, e.used_bytes, e.used_inodes
            ));
        }
        Ok(out)
    }

    fn live_quota_set(&self, kind: &str, id: &str, bytes: &str, inodes: &str) -> Reply {
        use aegis_fs::posix::quota::{QuotaId, KIND_DATASET};
        let parsed = (
            kind.parse::<u8>(),
            id.parse(),
            bytes.parse(),
            inodes.parse(),
        );
        let (Ok(kind), Ok(id), Ok(bytes), Ok(inodes)) = parsed else {
            return Err(refuse(libc::EINVAL, "quota set takes KIND ID BYTES INODES"));
        };
        if kind > KIND_DATASET {
            return Err(refuse(libc::EINVAL, format!("no quota kind {kind}")));
        }
        if self.read_only() {
            return Err(refuse(libc::EROFS, "the dataset is mounted read-only"));
        }
        let q = QuotaId { kind, id };
        let e = self
            .store
            .set_quota(self.ds, q, bytes, inodes)
            .map_err(engine)?;
        Ok(format!("{} {}", e.used_bytes, e.used_inodes))
    }

    fn live_snapshot_create(&self, name: &str) -> Reply {
        self.check_alive()
            .map_err(|e| refuse(e.errno(), e.to_string()))?;
        if self.read_only() {
            return Err(refuse(libc::EROFS, "the dataset is mounted read-only"));
        }
        let started = std::time::Instant::now();
        let id = self.store.create_snapshot(self.ds, name).map_err(engine)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(format!("created snapshot {name} (id {id}) in {ms:.1} ms"))
    }

    /// Write the stream into `fifo`, which must be a FIFO (the daemon
    /// runs as root: it writes into nothing else a caller names).
    fn live_send(&self, snap: &str, base: &str, token: &str, fifo: &str) -> Reply {
        use std::os::unix::fs::FileTypeExt;
        let is_fifo = std::fs::metadata(fifo).is_ok_and(|m| m.file_type().is_fifo());
        if !is_fifo {
            return Err(refuse(libc::EINVAL, format!("{fifo}: not a FIFO")));
        }
        let token = match token {
            "-" => None,
            t => Some(aegis_fs::receive_state::ResumeToken::parse(t).map_err(engine)?),
        };
        let base = (base != "-").then_some(base);
        let out = std::fs::OpenOptions::new()
            .write(true)
            .open(fifo)
            .map_err(|e| {
                refuse(
                    e.raw_os_error().unwrap_or(libc::EIO),
                    format!("{fifo}: {e}"),
                )
            })?;
        let out = std::io::BufWriter::with_capacity(1 << 20, out);
        let sent = self
            .store
            .send(self.ds, snap, base, token.as_ref(), out, &mut |_| {})
            .map_err(engine)?;
        Ok(format!("{} records, {} bytes", sent.records, sent.bytes))
    }

    /// One line per schedule: interval in seconds, how many it keeps.
    fn live_schedule_list(&self) -> Reply {
        let list = self.store.schedules(self.ds).map_err(engine)?;
        Ok(list
            .iter()
            .map(|s| format!("{}\t{}\n", s.every_secs, s.keep))
            .collect())
    }

    fn live_snapshot_list(&self) -> Reply {
        let mut out = String::new();
        for s in self.store.snapshots(self.ds) {
            let unique = match s.deleting {
                true => 0,
                false => self.store.snapshot_unique_bytes(s.id).map_err(engine)?,
            };
            let state = if s.deleting { "\tdeleting" } else { "" };
            out.push_str(&format!(
                "{}\t{}\t{}\t{unique}{state}\n",
                s.name, s.txg, s.created_ns
            ));
        }
        Ok(out)
    }
}
