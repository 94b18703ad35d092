//! Key and value codecs over the byte-keyed tree.
//!
//! The tree orders keys by memcmp, so a key codec must encode in an
//! order-preserving way (big-endian integers, for example). Decoding goes
//! through the codec's checks: a value that does not decode is corruption.

use std::marker::PhantomData;
use std::ops::Bound;

use crate::error::{Result, TreeError};
use crate::tree::Tree;

pub trait Codec {
    type Item;
    fn encode(item: &Self::Item) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self::Item>;
}

/// u64 as 8 big-endian bytes: memcmp order equals numeric order.
pub struct U64Key;
impl Codec for U64Key {
    type Item = u64;
    fn encode(v: &u64) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }
    fn decode(b: &[u8]) -> Result<u64> {
        let a: [u8; 8] = b.try_into().map_err(|_| TreeError::Corrupt {
            node: "key".into(),
            detail: format!("{} bytes, expected 8", b.len()),
        })?;
        Ok(u64::from_be_bytes(a))
    }
}

/// Raw bytes, as they are.
pub struct Bytes;
impl Codec for Bytes {
    type Item = Vec<u8>;
    fn encode(v: &Vec<u8>) -> Vec<u8> {
        v.clone()
    }
    fn decode(b: &[u8]) -> Result<Vec<u8>> {
        Ok(b.to_vec())
    }
}

/// A view of a [`Tree`] with typed keys and values.
pub struct TypedTree<'t, K: Codec, V: Codec> {
    tree: &'t mut Tree,
    _p: PhantomData<(K, V)>,
}

impl<'t, K: Codec, V: Codec> TypedTree<'t, K, V> {
    pub fn new(tree: &'t mut Tree) -> Self {
        TypedTree {
            tree,
            _p: PhantomData,
        }
    }
    pub fn get(&self, k: &K::Item) -> Result<Option<V::Item>> {
        self.tree
            .get(&K::encode(k))?
            .map(|v| V::decode(&v))
            .transpose()
    }
    pub fn insert(&mut self, k: &K::Item, v: &V::Item) -> Result<Option<V::Item>> {
        self.tree
            .insert(&K::encode(k), &V::encode(v))?
            .map(|v| V::decode(&v))
            .transpose()
    }
    pub fn remove(&mut self, k: &K::Item) -> Result<Option<V::Item>> {
        self.tree
            .remove(&K::encode(k))?
            .map(|v| V::decode(&v))
            .transpose()
    }
    /// All entries with keys in `[lo, hi)`, ascending.
    pub fn range(&self, lo: &K::Item, hi: &K::Item) -> Result<Vec<(K::Item, V::Item)>> {
        let (lo, hi) = (K::encode(lo), K::encode(hi));
        self.tree
            .range(Bound::Included(&lo), Bound::Excluded(&hi))
            .map(|r| r.and_then(|(k, v)| Ok((K::decode(&k)?, V::decode(&v)?))))
            .collect()
    }
}
