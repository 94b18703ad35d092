//! The record that names a tree: its root block pointer plus the shape
//! counters `info` and `fsck` report (height, node count, entry count).
//! The pool stores the pool tree's root in the uberblock without
//! interpreting it; the tree layer owns its meaning.
//!
//! Layout: u8 height, 7 reserved zero bytes, u64 nodes, u64 entries, then
//! a `BLKPTR_MAX`-byte block pointer field (all zero for an empty tree).

use crate::blkptr::{decode_optional_field, encode_optional_field, BlockPtr, BLKPTR_MAX};
use crate::codec::{Reader, Writer};
use crate::error::{PoolError, Result};

pub(crate) const TREE_ROOT_SIZE: usize = 24 + BLKPTR_MAX;
/// Deeper than any real tree can be (a fanout of 4 over 2^64 keys is 32).
pub const MAX_TREE_HEIGHT: u8 = 32;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeRoot {
    pub root: Option<BlockPtr>,
    pub height: u8,
    pub nodes: u64,
    pub entries: u64,
}

impl TreeRoot {
    pub fn encode_into(&self, w: &mut Writer) {
        w.u8(self.height);
        w.zeros(7);
        w.u64(self.nodes);
        w.u64(self.entries);
        encode_optional_field(w, self.root.as_ref());
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(TREE_ROOT_SIZE);
        self.encode_into(&mut w);
        w.into_inner()
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<TreeRoot> {
        let height = r.u8()?;
        r.skip(7)?;
        let nodes = r.u64()?;
        let entries = r.u64()?;
        let root = decode_optional_field(r)?;
        let bad = |d: &str| Err(PoolError::corrupt("tree root", d.to_string()));
        if height > MAX_TREE_HEIGHT {
            return bad("height beyond the format limit");
        }
        match &root {
            None if height != 0 || nodes != 0 || entries != 0 => {
                return bad("empty tree with non-zero counters")
            }
            Some(bp) if height == 0 || bp.level as u32 + 1 != height as u32 => {
                return bad("root level disagrees with height")
            }
            Some(_) if nodes == 0 => return bad("non-empty tree with zero nodes"),
            _ => {}
        }
        Ok(TreeRoot {
            root,
            height,
            nodes,
            entries,
        })
    }

    pub fn decode_slice(b: &[u8]) -> Result<TreeRoot> {
        TreeRoot::decode(&mut Reader::new(b, "tree root"))
    }
}
