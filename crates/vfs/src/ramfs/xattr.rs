//! Extended attributes: names with a namespace prefix, Linux size limits.

use std::collections::BTreeMap;

use crate::error::{FsError, Result};
use crate::types::{XATTR_CREATE, XATTR_LIST_MAX, XATTR_REPLACE, XATTR_SIZE_MAX};

#[derive(Debug, Default)]
pub(crate) struct Xattrs {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Xattrs {
    /// Bytes of the NUL-terminated names list.
    fn list_len(&self) -> usize {
        self.map.keys().map(|k| k.len() + 1).sum()
    }

    /// Bytes held (names and values), for space accounting.
    pub fn bytes(&self) -> u64 {
        self.map
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum()
    }

    /// Set `name` (already checked) to `value` under `flags`.
    pub fn set(&mut self, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 || flags == XATTR_CREATE | XATTR_REPLACE {
            return Err(FsError::InvalidArgument("bad setxattr flags"));
        }
        if value.len() > XATTR_SIZE_MAX {
            return Err(FsError::XattrTooBig);
        }
        let exists = self.map.contains_key(name);
        if exists && flags == XATTR_CREATE {
            return Err(FsError::Exists);
        }
        if !exists && flags == XATTR_REPLACE {
            return Err(FsError::NoData);
        }
        if !exists && self.list_len() + name.len() + 1 > XATTR_LIST_MAX {
            return Err(FsError::NoSpace);
        }
        self.map.insert(name.to_vec(), value.to_vec());
        Ok(())
    }

    pub fn get(&self, name: &[u8]) -> Result<&[u8]> {
        self.map.get(name).map(Vec::as_slice).ok_or(FsError::NoData)
    }

    pub fn list(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.list_len());
        for k in self.map.keys() {
            out.extend_from_slice(k);
            out.push(0);
        }
        out
    }

    pub fn remove(&mut self, name: &[u8]) -> Result<()> {
        self.map.remove(name).map(|_| ()).ok_or(FsError::NoData)
    }
}
