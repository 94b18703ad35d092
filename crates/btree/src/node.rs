//! Tree nodes and their on-disk encoding.
//!
//! A node fills at most one pool block (before compression). Leaves hold
//! sorted (key, value) pairs; internal nodes hold (lower-bound key, child
//! pointer) pairs where key i is ≤ every key under child i and > every key
//! under child i-1. Checksums live in the parent's block pointer, so a node
//! carries none of its own.
//!
//! Layout (little-endian): 0 magic "ABTN" · 4 u8 version · 5 u8 level
//! (0 = leaf) · 6 u16 entry count · 8 u64 tree id · 16 u64 birth txg ·
//! 24 entries. Leaf entry: u16 key length, u16 value length, key, value.
//! Internal entry: u16 key length, key, block pointer (self-sized).
//!
//! Decode checks: magic, version, level and birth against the parent's
//! pointer, the tree id, strictly increasing keys, size limits, child
//! levels one below, no trailing garbage beyond zero padding.

use aegis_pool::blkptr::{BlockPtr, BlockType};
use aegis_pool::codec::{Reader, Writer};

use crate::error::{Result, TreeError};

pub const NODE_MAGIC: [u8; 4] = *b"ABTN";
pub const NODE_VERSION: u8 = 1;
pub const NODE_HEADER: usize = 24;
/// Keys are short: names are stored by hash, so 512 bytes is generous.
pub const MAX_KEY: usize = 512;

/// A key as a node holds it: up to 24 bytes inline (the filesystem's keys
/// are 17), so the keys of a node sit in one array and a binary search
/// does not chase a pointer per comparison.
pub type Key = smallvec::SmallVec<[u8; 24]>;

/// A child of an internal node: on disk, or a dirty node in memory.
#[derive(Clone, Debug)]
pub enum Child {
    Disk(BlockPtr),
    Dirty(u64),
}

#[derive(Clone, Debug, Default)]
pub struct Node {
    pub level: u8,
    pub keys: Vec<Key>,
    /// Leaf values (empty for internal nodes).
    pub vals: Vec<Vec<u8>>,
    /// Children (empty for leaves).
    pub children: Vec<Child>,
}

impl Node {
    pub fn leaf() -> Self {
        Node {
            level: 0,
            ..Default::default()
        }
    }
    pub fn is_leaf(&self) -> bool {
        self.level == 0
    }
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes entry `i` takes, given the encoded size of a child pointer.
    pub fn entry_size(&self, i: usize, ptr_len: usize) -> usize {
        if self.is_leaf() {
            4 + self.keys[i].len() + self.vals[i].len()
        } else {
            2 + self.keys[i].len()
                + match &self.children[i] {
                    Child::Disk(bp) => bp.encoded_len(),
                    Child::Dirty(_) => ptr_len,
                }
        }
    }

    pub fn encoded_size(&self, ptr_len: usize) -> usize {
        NODE_HEADER
            + (0..self.len())
                .map(|i| self.entry_size(i, ptr_len))
                .sum::<usize>()
    }

    /// Index of the child whose range holds `key`.
    pub fn child_index(&self, key: &[u8]) -> usize {
        match self.keys.binary_search_by(|k| k.as_slice().cmp(key)) {
            Ok(i) => i,
            Err(0) => 0,
            Err(i) => i - 1,
        }
    }

    /// Move the upper part of this node into a new node so that both halves
    /// hold about half of the bytes. Both sides keep at least one entry.
    pub fn split_off_half(&mut self, ptr_len: usize) -> Node {
        assert!(
            self.len() >= 2,
            "split of a node with {} entries",
            self.len()
        );
        let total = self.encoded_size(ptr_len) - NODE_HEADER;
        let mut acc = 0;
        let mut at = 1;
        for i in 0..self.len() - 1 {
            acc += self.entry_size(i, ptr_len);
            at = i + 1;
            if acc * 2 >= total {
                break;
            }
        }
        Node {
            level: self.level,
            keys: self.keys.split_off(at),
            vals: if self.is_leaf() {
                self.vals.split_off(at)
            } else {
                Vec::new()
            },
            children: if self.is_leaf() {
                Vec::new()
            } else {
                self.children.split_off(at)
            },
        }
    }

    /// Append all of `other`'s entries (which sort after ours).
    pub fn append(&mut self, other: Node) {
        debug_assert_eq!(self.level, other.level);
        debug_assert!(
            self.keys.last().is_none()
                || other.keys.is_empty()
                || self.keys.last() < other.keys.first()
        );
        self.keys.extend(other.keys);
        self.vals.extend(other.vals);
        self.children.extend(other.children);
    }

    /// Encode a clean node (every child on disk).
    pub fn encode(&self, tree_id: u64, txg: u64) -> Vec<u8> {
        let mut w = Writer::with_capacity(NODE_HEADER + 64 * self.len());
        w.bytes(&NODE_MAGIC);
        w.u8(NODE_VERSION);
        w.u8(self.level);
        w.u16(self.len() as u16);
        w.u64(tree_id);
        w.u64(txg);
        for i in 0..self.len() {
            w.u16(self.keys[i].len() as u16);
            if self.is_leaf() {
                w.u16(self.vals[i].len() as u16);
                w.bytes(&self.keys[i]);
                w.bytes(&self.vals[i]);
            } else {
                w.bytes(&self.keys[i]);
                match &self.children[i] {
                    Child::Disk(bp) => bp.encode_into(&mut w),
                    Child::Dirty(_) => panic!("encode of a node with a dirty child"),
                }
            }
        }
        w.into_inner()
    }

    /// Decode and validate a node read through `bp`. Kept whole although
    /// long: one pass over the layout above, each check beside the field
    /// it checks.
    pub fn decode(buf: &[u8], bp: &BlockPtr, tree_id: u64) -> Result<Node> {
        let bad = |d: String| TreeError::Corrupt {
            node: bp.describe(),
            detail: d,
        };
        let mut r = Reader::new(buf, "tree node");
        if r.array::<4>()? != NODE_MAGIC {
            return Err(bad("bad magic".into()));
        }
        if r.u8()? != NODE_VERSION {
            return Err(bad("unknown node version".into()));
        }
        let level = r.u8()?;
        let count = r.u16()? as usize;
        let id = r.u64()?;
        let birth = r.u64()?;
        if bp.block_type != BlockType::TreeNode {
            return Err(bad(format!(
                "pointer says block type {}",
                bp.block_type.name()
            )));
        }
        if level != bp.level {
            return Err(bad(format!("level {level}, parent says {}", bp.level)));
        }
        if id != tree_id {
            return Err(bad(format!("belongs to tree {id}, expected {tree_id}")));
        }
        if birth != bp.birth_txg {
            return Err(bad(format!(
                "written in txg {birth}, pointer says {}",
                bp.birth_txg
            )));
        }
        if count == 0 {
            return Err(bad("empty node".into()));
        }
        let mut node = Node {
            level,
            keys: Vec::with_capacity(count),
            ..Default::default()
        };
        for _ in 0..count {
            let klen = r.u16()? as usize;
            if klen > MAX_KEY {
                return Err(bad(format!("key of {klen} bytes")));
            }
            if level == 0 {
                let vlen = r.u16()? as usize;
                node.keys.push(Key::from_slice(r.bytes(klen)?));
                node.vals.push(r.bytes(vlen)?.to_vec());
            } else {
                node.keys.push(Key::from_slice(r.bytes(klen)?));
                let child = BlockPtr::decode(&mut r)?;
                // `checked_add`: a child level of 255 is corruption, not an overflow.
                if child.level.checked_add(1) != Some(level)
                    || child.block_type != BlockType::TreeNode
                {
                    return Err(bad(format!(
                        "child {} under a level-{level} node",
                        child.describe()
                    )));
                }
                node.children.push(Child::Disk(child));
            }
            if node.keys.len() >= 2
                && node.keys[node.keys.len() - 2] >= node.keys[node.keys.len() - 1]
            {
                return Err(bad("keys out of order".into()));
            }
        }
        let rest = r.bytes(r.remaining())?;
        if rest.iter().any(|&b| b != 0) {
            return Err(bad("garbage after the last entry".into()));
        }
        Ok(node)
    }

    /// The on-disk pointer of child `i` (None if dirty).
    pub fn child_ptr(&self, i: usize) -> Option<&BlockPtr> {
        match self.children.get(i) {
            Some(Child::Disk(bp)) => Some(bp),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_pool::blkptr::Dva;
    use aegis_pool::{ChecksumType, Compression};
    use proptest::prelude::*;

    fn ptr(level: u8, txg: u64) -> BlockPtr {
        BlockPtr {
            checksum_type: ChecksumType::Blake3,
            compression: Compression::None,
            block_type: BlockType::TreeNode,
            level,
            logical_size: 4096,
            physical_size: 4096,
            birth_txg: txg,
            birth_delta: 0,
            checksum: [0; 32],
            addrs: vec![Dva {
                device: 0,
                offset: 1 << 20,
            }],
            gang: false,
        }
    }

    #[test]
    fn leaf_and_internal_round_trip() {
        let leaf = Node {
            level: 0,
            keys: vec![Key::from_slice(b"a"), Key::from_slice(b"b")],
            vals: vec![vec![1; 10], vec![]],
            children: vec![],
        };
        let enc = leaf.encode(7, 3);
        let dec = Node::decode(&enc, &ptr(0, 3), 7).unwrap();
        assert_eq!(dec.keys, leaf.keys);
        assert_eq!(dec.vals, leaf.vals);
        assert!(
            Node::decode(&enc, &ptr(0, 3), 8).is_err(),
            "wrong tree accepted"
        );
        assert!(
            Node::decode(&enc, &ptr(1, 3), 7).is_err(),
            "wrong level accepted"
        );
        assert!(
            Node::decode(&enc, &ptr(0, 4), 7).is_err(),
            "wrong birth accepted"
        );

        let internal = Node {
            level: 1,
            keys: vec![Key::new(), Key::from_slice(b"m")],
            vals: vec![],
            children: vec![Child::Disk(ptr(0, 2)), Child::Disk(ptr(0, 3))],
        };
        let enc = internal.encode(7, 3);
        let dec = Node::decode(&enc, &ptr(1, 3), 7).unwrap();
        assert_eq!(dec.keys, internal.keys);
        assert_eq!(dec.child_ptr(1).unwrap(), &ptr(0, 3));
    }

    #[test]
    fn unsorted_keys_rejected() {
        let leaf = Node {
            level: 0,
            keys: vec![Key::from_slice(b"b"), Key::from_slice(b"a")],
            vals: vec![vec![], vec![]],
            children: vec![],
        };
        assert!(Node::decode(&leaf.encode(1, 1), &ptr(0, 1), 1).is_err());
    }

    #[test]
    fn split_balances_bytes() {
        let mut n = Node::leaf();
        for i in 0..100u32 {
            n.keys.push(Key::from_slice(&i.to_be_bytes()));
            n.vals.push(vec![0; if i < 10 { 300 } else { 10 }]);
        }
        let total = n.encoded_size(96);
        let right = n.split_off_half(96);
        assert!(!n.is_empty() && !right.is_empty());
        assert!(n.encoded_size(96) < total && right.encoded_size(96) < total);
        assert!(n.keys.last().unwrap() < &right.keys[0]);
    }

    #[test]
    fn child_level_at_the_top_of_the_range_is_corruption() {
        let internal = Node {
            level: 1,
            keys: vec![Key::new()],
            vals: vec![],
            children: vec![Child::Disk(ptr(u8::MAX, 2))],
        };
        let enc = internal.encode(7, 3);
        assert!(Node::decode(&enc, &ptr(1, 3), 7).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000), level in 0u8..3) {
            let _ = Node::decode(&bytes, &ptr(level, 1), 1);
        }
    }
}
