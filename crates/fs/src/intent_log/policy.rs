//! Logging policy per file or directory: how much of its changes the
//! intent log carries. Stored as one byte under the object's `POLICY`
//! item (1 full, 2 metadata, 3 none); an object without one is `full`.

use aegis_btree::Tree;

use crate::error::Result;
use crate::posix::keys;
use crate::tx::Tx;

/// How changes to a file or directory are logged (`aegisfs set
/// logging=... PATH`). New entries inherit their directory's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogPolicy {
    /// Every change, file data included, goes to the log: fsync is fast and
    /// makes everything durable.
    Full = 1,
    /// Metadata changes go to the log; file data becomes durable at the next
    /// txg commit (within 5 s), so after a crash recently fsynced data of
    /// such a file may read as zeroes where it was written.
    Metadata = 2,
    /// Nothing about it is logged: its fsync commits a txg.
    None = 3,
}

impl LogPolicy {
    pub fn parse(s: &str) -> Option<LogPolicy> {
        match s {
            "full" => Some(LogPolicy::Full),
            "metadata" => Some(LogPolicy::Metadata),
            "none" => Some(LogPolicy::None),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LogPolicy::Full => "full",
            LogPolicy::Metadata => "metadata",
            LogPolicy::None => "none",
        }
    }
    pub fn from_u8(v: u8) -> Option<LogPolicy> {
        match v {
            1 => Some(LogPolicy::Full),
            2 => Some(LogPolicy::Metadata),
            3 => Some(LogPolicy::None),
            _ => None,
        }
    }
}

/// An object's policy; `full` unless set (or unreadable: a damaged policy
/// item must not stop the change it is consulted for).
pub(crate) fn log_policy_of(tree: &Tree, ino: u64) -> LogPolicy {
    match tree.get(&keys::policy(ino)) {
        Ok(Some(v)) if v.len() == 1 => LogPolicy::from_u8(v[0]).unwrap_or(LogPolicy::Full),
        _ => LogPolicy::Full,
    }
}

impl Tx<'_> {
    /// Set `ino`'s policy.
    pub fn set_log_policy(&mut self, ino: u64, p: LogPolicy) -> Result<()> {
        self.tree.insert(&keys::policy(ino), &[p as u8])?;
        Ok(())
    }

    /// A new entry `ino` takes its directory's policy, if it has one set.
    pub fn inherit_log_policy(&mut self, parent: u64, ino: u64) -> Result<()> {
        if let Some(p) = self.tree.get(&keys::policy(parent))? {
            self.tree.insert(&keys::policy(ino), &p)?;
        }
        Ok(())
    }
}
