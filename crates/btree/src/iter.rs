//! Range scans in both directions.
//!
//! The iterator keeps the path from the root to the current leaf as a stack
//! of (node, index) and moves leaf to leaf through it, so a scan reads each
//! node once and never holds more than `height` nodes.

use std::ops::Bound;

use aegis_pool::tree_root::MAX_TREE_HEIGHT;

use crate::error::{Result, TreeError};
use crate::tree::{NodeRef, Tree};

pub struct RangeIter<'a> {
    tree: &'a Tree,
    stack: Vec<(NodeRef<'a>, usize)>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    rev: bool,
    started: bool,
    done: bool,
}

fn owned(b: Bound<&[u8]>) -> Bound<Vec<u8>> {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl<'a> RangeIter<'a> {
    pub(crate) fn new(tree: &'a Tree, lo: Bound<&[u8]>, hi: Bound<&[u8]>, rev: bool) -> Self {
        RangeIter {
            tree,
            stack: Vec::new(),
            lo: owned(lo),
            hi: owned(hi),
            rev,
            started: false,
            done: false,
        }
    }
}

fn above(lo: &Bound<Vec<u8>>, k: &[u8]) -> bool {
    match lo {
        Bound::Included(l) => k >= l.as_slice(),
        Bound::Excluded(l) => k > l.as_slice(),
        Bound::Unbounded => true,
    }
}

fn below(hi: &Bound<Vec<u8>>, k: &[u8]) -> bool {
    match hi {
        Bound::Included(h) => k <= h.as_slice(),
        Bound::Excluded(h) => k < h.as_slice(),
        Bound::Unbounded => true,
    }
}

impl<'a> RangeIter<'a> {
    /// Descend from the root to the leaf where the scan starts.
    fn seek(&mut self) -> Result<()> {
        let Some(root) = self.tree.root_child() else {
            self.done = true;
            return Ok(());
        };
        let mut node = self.tree.node(root)?;
        loop {
            if self.stack.len() as u8 > MAX_TREE_HEIGHT {
                return Err(TreeError::Corrupt {
                    node: "path".into(),
                    detail: "deeper than the format allows".into(),
                });
            }
            if node.is_leaf() {
                let idx = if !self.rev {
                    match &self.lo {
                        Bound::Unbounded => 0,
                        Bound::Included(l) => {
                            node.keys.partition_point(|k| k.as_slice() < l.as_slice())
                        }
                        Bound::Excluded(l) => {
                            node.keys.partition_point(|k| k.as_slice() <= l.as_slice())
                        }
                    }
                } else {
                    // Index one past the last key to yield.
                    match &self.hi {
                        Bound::Unbounded => node.len(),
                        Bound::Included(h) => {
                            node.keys.partition_point(|k| k.as_slice() <= h.as_slice())
                        }
                        Bound::Excluded(h) => {
                            node.keys.partition_point(|k| k.as_slice() < h.as_slice())
                        }
                    }
                };
                self.stack.push((node, idx));
                return Ok(());
            }
            let i = if !self.rev {
                match &self.lo {
                    Bound::Unbounded => 0,
                    Bound::Included(l) | Bound::Excluded(l) => node.child_index(l),
                }
            } else {
                match &self.hi {
                    Bound::Unbounded => node.len() - 1,
                    Bound::Included(h) => node.child_index(h),
                    // The child holding the largest key < h.
                    Bound::Excluded(h) => node
                        .keys
                        .partition_point(|k| k.as_slice() < h.as_slice())
                        .saturating_sub(1),
                }
            };
            let child = self.tree.descend(&node, i)?;
            self.stack.push((node, i));
            node = child;
        }
    }

    /// After a leaf is used up, move to the next (or previous) leaf.
    fn advance_leaf(&mut self) -> Result<bool> {
        self.stack.pop();
        loop {
            let Some((node, idx)) = self.stack.last_mut() else {
                return Ok(false);
            };
            let next = if !self.rev {
                *idx + 1
            } else {
                idx.wrapping_sub(1)
            };
            if next >= node.children.len() {
                self.stack.pop();
                continue;
            }
            *idx = next;
            let (node, _) = self.stack.last().expect("top");
            let mut child = self.tree.descend(node, next)?;
            loop {
                if child.is_leaf() {
                    let start = if !self.rev { 0 } else { child.len() };
                    self.stack.push((child, start));
                    return Ok(true);
                }
                let i = if !self.rev {
                    0
                } else {
                    child.children.len() - 1
                };
                let grand = self.tree.descend(&child, i)?;
                self.stack.push((child, i));
                child = grand;
            }
        }
    }

    fn next_entry(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        if !self.started {
            self.started = true;
            self.seek()?;
        }
        while !self.done {
            let Some((leaf, idx)) = self.stack.last_mut() else {
                self.done = true;
                break;
            };
            let pos = if !self.rev {
                (*idx < leaf.len()).then(|| {
                    *idx += 1;
                    *idx - 1
                })
            } else {
                (*idx > 0).then(|| {
                    *idx -= 1;
                    *idx
                })
            };
            match pos {
                Some(p) => {
                    let k = &leaf.keys[p];
                    let inside = if !self.rev {
                        below(&self.hi, k)
                    } else {
                        above(&self.lo, k)
                    };
                    if !inside {
                        self.done = true;
                        break;
                    }
                    let item = (leaf.keys[p].to_vec(), leaf.vals[p].clone());
                    return Ok(Some(item));
                }
                None => {
                    if !self.advance_leaf()? {
                        self.done = true;
                    }
                }
            }
        }
        Ok(None)
    }
}

impl Iterator for RangeIter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>)>;
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
