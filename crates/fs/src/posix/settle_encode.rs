//! The commit's encoding pass: before the dirty records of a txg are
//! settled one by one (allocation and tree edits, which are sequential),
//! every record that will become a data block is compressed and
//! checksummed on several threads at once, so the part of the commit that
//! runs under the exclusive tree lock uses every core for its CPU work.
//!
//! Invariants: a record is encoded from exactly the bytes settling will
//! store (`dirty_data::block_bytes`, the rule `file_data::store` follows), with
//! the props `file_data::write_data` will use; `Pool::write_encoded`
//! checks the length and props and encodes again on any mismatch, so a
//! wrong encoding can cost time but never store other bytes. Nothing here
//! changes a record: the pass runs under the same lock as the settling.

use std::num::NonZeroUsize;

use aegis_pool::{AllocClass, EncodedBlock};

use super::dirty_data::block_bytes;
use super::file_data::{data_props, inline_max};
use crate::tx::Tx;

/// Below this many bytes in all, threads cost more than they save.
const PARALLEL_MIN_BYTES: usize = 4 << 20;
/// At most this many encoding threads, whatever the machine has.
const MAX_THREADS: usize = 8;

/// Encode every dirty record of `tx` that settling will store as a data
/// block, into `tx.encoded`.
pub(crate) fn encode_all(tx: &mut Tx<'_>) {
    let inline = inline_max(tx.tree);
    let jobs: Vec<((u64, u64), &[u8])> = tx
        .dirty
        .iter()
        .filter_map(|(key, d)| block_bytes(key.1, &d.bytes, inline).map(|b| (key, b)))
        .collect();
    let total: usize = jobs.iter().map(|(_, b)| b.len()).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_THREADS);
    if total < PARALLEL_MIN_BYTES || threads < 2 {
        // Settling encodes each record as it goes.
        return;
    }
    // Settling inside the commit may use the reserve; the class does not
    // change how a block is encoded.
    let props = data_props(tx, AllocClass::Reserved);
    let pool = tx.pool_ref();
    let per_thread = jobs.len().div_ceil(threads);
    let encoded: Vec<((u64, u64), EncodedBlock)> = std::thread::scope(|s| {
        let workers: Vec<_> = jobs
            .chunks(per_thread)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|&(key, bytes)| (key, pool.encode_block(bytes, &props)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("an encoding thread panicked"))
            .collect()
    });
    tx.encoded.extend(encoded);
}
