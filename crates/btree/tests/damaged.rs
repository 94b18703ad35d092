//! Trees whose blocks verify but break the tree's own rules (a crafted or
//! buggy image): changing them returns a corruption error, never a panic.

use std::sync::Arc;

use aegis_block::{DeviceRef, MemDevice};
use aegis_btree::{Key, Node, NodeCache, Tree, TreeError};
use aegis_pool::{BlockType, CreateOptions, Pool, TreeRoot};

const KIND: u64 = 9;

fn pool() -> Arc<Pool> {
    let dev: DeviceRef = Arc::new(MemDevice::new(16 << 20));
    Arc::new(Pool::create(vec![dev], &CreateOptions::default()).unwrap())
}

/// A one-leaf tree of `entries` (key, value length), stored as is.
fn leaf_tree(pool: &Arc<Pool>, entries: &[(&[u8], usize)], counted: u64) -> Tree {
    let leaf = Node {
        level: 0,
        keys: entries.iter().map(|(k, _)| Key::from_slice(k)).collect(),
        vals: entries.iter().map(|&(_, n)| vec![7; n]).collect(),
        children: vec![],
    };
    let bytes = leaf.encode(KIND, pool.open_txg());
    assert!(bytes.len() <= pool.block_size() as usize);
    let bp = pool
        .write_block(&bytes, &pool.metadata_props(BlockType::TreeNode, 0))
        .unwrap();
    let root = TreeRoot {
        root: Some(bp),
        height: 1,
        nodes: 1,
        entries: counted,
    };
    Tree::open(pool.clone(), NodeCache::new(64), KIND, &root)
}

#[test]
fn a_leaf_entry_over_a_quarter_node_is_refused_when_changed() {
    let pool = pool();
    // 4096 bytes exactly; "d" alone is well over a quarter of a node. A
    // split after inserting "c" would leave [b, c, d] in one half, more
    // than a block.
    let mut tree = leaf_tree(&pool, &[(b"b", 1495), (b"d", 2495), (b"z", 67)], 3);
    assert_eq!(tree.get(b"d").unwrap().map(|v| v.len()), Some(2495));
    let max = tree.max_value_len(1);
    match tree.insert(b"c", &vec![1; max]) {
        Err(TreeError::Corrupt { .. }) => {}
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn removing_from_a_tree_that_counts_no_entries_is_refused() {
    let pool = pool();
    let mut tree = leaf_tree(&pool, &[(b"a", 10), (b"b", 10)], 0);
    match tree.remove(b"a") {
        Err(TreeError::Corrupt { .. }) => {}
        other => panic!("expected a corruption error, got {other:?}"),
    }
    assert!(
        tree.get(b"a").unwrap().is_some(),
        "the failed remove changed the tree"
    );
}
