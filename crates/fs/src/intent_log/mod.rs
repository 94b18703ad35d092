//! The intent log, whole: what a change records ([`LogRec`]), the
//! per-object policy ([`LogPolicy`]), the on-disk ring and block format
//! (`block.rs`), the writer that `fsync` drives and the commit closes
//! (`writer.rs`), and the reader that gives mount the records to replay,
//! in order (`reader.rs`).
//!
//! Between two transaction groups every change is kept as a record in
//! memory; `fsync` writes the records not yet logged as one checksummed
//! block of the current chain in the dataset's ring and makes that one
//! write durable. Each commit starts a new chain and records its head in
//! the dataset tree, durable with the txg. Mount replays the chain the
//! last txg names. The log never holds anything a commit does not also
//! write: it only shortens the wait for durability.

mod block;
mod policy;
mod reader;
mod record;
mod writer;

pub use block::{
    block_len, check_ring_len, default_ring_len, payload_len, recorded_ring, LogBlock, LogHead,
    LogRing, LOG_HEADER, LOG_MAGIC, LOG_VERSION, MAX_CHAIN, MAX_LOG_WRITE, MAX_RING, MIN_RING,
};
pub(crate) use policy::log_policy_of;
pub use policy::LogPolicy;
pub use reader::Replay;
pub use record::{fuzz_record, samples, LogRec};
pub use writer::{IntentLog, LogStats, Logged};
