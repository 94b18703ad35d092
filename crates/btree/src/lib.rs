//! The tree layer: a copy-on-write B+tree whose nodes are pool blocks.
//!
//! Keys and values are byte strings ordered by memcmp; [`typed`] puts key
//! and value codecs on top. Every node read is verified by the pool against
//! the checksum in its parent's pointer and then validated structurally.

pub mod cache;
pub mod error;
pub mod iter;
pub mod node;
pub mod tree;
pub mod typed;

pub use cache::NodeCache;
pub use error::{Result, TreeError};
pub use node::{Child, Key, Node, MAX_KEY};
pub use tree::{Flushed, NodeRef, Tree};
