//! Directories: entries by name plus a cookie index for stable readdir offsets.

use std::collections::BTreeMap;

use crate::types::Ino;

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

    /// The cookie the next entry will get: every entry present now has a
    /// smaller one.
    pub fn next_cookie(&self) -> u64 {
        self.next_cookie
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
