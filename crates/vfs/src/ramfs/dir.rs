//! Directories: entries by name plus a cookie index for stable readdir offsets.

use std::collections::BTreeMap;

use crate::error::{FsError, Result};
use crate::types::{Ino, NAME_MAX};

/// Cookie of ".".
pub(crate) const DOT_COOKIE: u64 = 1;
/// Cookie of "..".
pub(crate) const DOTDOT_COOKIE: u64 = 2;
const FIRST_COOKIE: u64 = 3;

/// A directory's entries. Each entry gets a cookie from a per-directory
/// counter that only grows, so a cookie handed out by readdir stays a valid
/// resume point however the directory changes afterwards.
#[derive(Debug)]
pub(crate) struct Dir {
    /// The parent directory (the root is its own parent).
    pub parent: Ino,
    entries: BTreeMap<Vec<u8>, (Ino, u64)>,
    by_cookie: BTreeMap<u64, Vec<u8>>,
    next_cookie: u64,
}

impl Dir {
    pub fn new(parent: Ino) -> Dir {
        Dir {
            parent,
            entries: BTreeMap::new(),
            by_cookie: BTreeMap::new(),
            next_cookie: FIRST_COOKIE,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, name: &[u8]) -> Option<Ino> {
        self.entries.get(name).map(|&(ino, _)| ino)
    }

    /// Add an entry with a fresh cookie; the name must be absent.
    pub fn insert(&mut self, name: &[u8], ino: Ino) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let old = self.entries.insert(name.to_vec(), (ino, cookie));
        debug_assert!(old.is_none());
        self.by_cookie.insert(cookie, name.to_vec());
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Ino> {
        let (ino, cookie) = self.entries.remove(name)?;
        self.by_cookie.remove(&cookie);
        Some(ino)
    }

    /// Point an existing entry at another inode, keeping its cookie
    /// (RENAME_EXCHANGE).
    pub fn replace(&mut self, name: &[u8], ino: Ino) {
        if let Some(e) = self.entries.get_mut(name) {
            e.0 = ino;
        }
    }

    /// Entries with a cookie strictly greater than `after`, in cookie order:
    /// (cookie, name, ino). Excludes "." and "..".
    pub fn after(&self, after: u64) -> impl Iterator<Item = (u64, &[u8], Ino)> + '_ {
        let start = after.max(DOTDOT_COOKIE).saturating_add(1);
        self.by_cookie
            .range(start..)
            .map(move |(&c, name)| (c, name.as_slice(), self.entries[name].0))
    }
}

/// Check one name for lookup: not empty, no '/' or NUL, at most 255 bytes.
/// "." and ".." pass (callers handle them).
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() {
        return Err(FsError::InvalidArgument("empty name"));
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(FsError::InvalidArgument("name holds '/' or NUL"));
    }
    Ok(())
}

pub(crate) fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// Check a name for a new entry: as [`check_name`], and "."/".." exist.
pub(crate) fn check_new_name(name: &[u8]) -> Result<()> {
    check_name(name)?;
    if is_dot(name) {
        return Err(FsError::Exists);
    }
    Ok(())
}

/// Check a name of an entry to remove or rename: "." and ".." are refused.
pub(crate) fn check_removable_name(name: &[u8]) -> Result<()> {
    check_name(name)?;
    if is_dot(name) {
        return Err(FsError::InvalidArgument("cannot remove or rename . or .."));
    }
    Ok(())
}
