//! Read-ahead for sequential readers: blocks of the records a reader will
//! want next are read into the pool's data cache by worker threads while
//! the reader is busy with the current ones, so a sequential read pays
//! for reading, verifying and decompressing in parallel with its caller.
//!
//! Each file being read has a stream (bounded: the least recently used
//! of [`MAX_STREAMS`] goes). A read that starts within one record of where
//! the stream's last read ended is sequential: the window of records read
//! ahead starts at [`MIN_WINDOW`] and doubles with each new record the
//! reader enters, up to the stream's maximum ([`MAX_WINDOW`] by default).
//! Any other read resets the window to nothing, so random readers cost
//! one lookup in the stream table and nothing else.
//!
//! Invariants: a record is queued at most once per stream pass
//! (`ahead_to` only grows while the stream is sequential); the queue to
//! the workers is bounded ([`QUEUE_LEN`]) and a full queue drops the
//! request instead of waiting, so a reader is never slowed by its own
//! read-ahead; workers read through `Pool::prefetch_data`, which never
//! heals (the record may be freed as they run) and only fills the cache.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use aegis_pool::{BlockPtr, Pool};
use lru::LruCache;
use parking_lot::Mutex;

/// Records read ahead by a stream that just turned sequential.
pub const MIN_WINDOW: u32 = 2;
/// The default largest window, in records (4 MiB of 128 KiB records).
pub const MAX_WINDOW: u32 = 32;
/// Files tracked at once.
const MAX_STREAMS: usize = 1024;
/// Blocks waiting for a worker.
const QUEUE_LEN: usize = 256;
/// Threads reading ahead.
const WORKERS: usize = 2;

#[derive(Clone, Copy, Debug, Default)]
struct Stream {
    /// Where the last read ended.
    next: u64,
    /// Records read ahead of the reader (0: not sequential).
    window: u32,
    /// Records up to this offset have been queued.
    ahead_to: u64,
}

/// The records to read ahead of one read, as [`ReadAhead::plan`] returns
/// them: `[from, to)` in bytes, record aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub from: u64,
    pub to: u64,
}

/// Public only for the sealed `Parts` trait; nothing outside the crate can
/// name it.
pub struct ReadAhead {
    streams: Mutex<LruCache<(u64, u64), Stream>>,
    max_window: u32,
    queue: Option<SyncSender<BlockPtr>>,
    workers: Vec<JoinHandle<()>>,
    closing: Arc<AtomicBool>,
}

impl ReadAhead {
    /// Read-ahead of up to `max_window` records (0: off, no threads).
    pub(crate) fn new(pool: &Arc<Pool>, max_window: u32) -> ReadAhead {
        let cap = NonZeroUsize::new(MAX_STREAMS).expect("non-zero");
        let closing = Arc::new(AtomicBool::new(false));
        let (queue, workers) = if max_window == 0 {
            (None, Vec::new())
        } else {
            let (tx, rx) = sync_channel(QUEUE_LEN);
            let rx = Arc::new(std::sync::Mutex::new(rx));
            let workers = (0..WORKERS)
                .filter_map(|i| spawn_worker(i, pool.clone(), rx.clone(), closing.clone()))
                .collect();
            (Some(tx), workers)
        };
        ReadAhead {
            streams: Mutex::new(LruCache::new(cap)),
            max_window: max_window.max(if max_window == 0 { 0 } else { MIN_WINDOW }),
            queue,
            workers,
            closing,
        }
    }

    /// Note a read of `[offset, offset + len)` of file `ino` in dataset
    /// `ds` (records of `record_size` bytes, `file_size` long) and say
    /// which records to read ahead, if any.
    pub(crate) fn plan(
        &self,
        (ds, ino): (u64, u64),
        offset: u64,
        len: u64,
        record_size: u64,
        file_size: u64,
    ) -> Option<Plan> {
        if self.queue.is_none() || record_size == 0 {
            return None;
        }
        let end = offset.saturating_add(len).min(file_size);
        let mut streams = self.streams.lock();
        let s = streams.get_or_insert_mut((ds, ino), Stream::default);
        let sequential = offset <= s.next.saturating_add(record_size)
            && offset.saturating_add(record_size) >= s.next
            && (s.next != 0 || offset == 0);
        let entered_record = end.div_ceil(record_size) > s.next.div_ceil(record_size);
        s.next = end;
        if !sequential {
            s.window = 0;
            s.ahead_to = 0;
            return None;
        }
        if s.window == 0 {
            s.window = MIN_WINDOW;
        } else if entered_record {
            s.window = (s.window * 2).min(self.max_window);
        }
        let first = end.div_ceil(record_size) * record_size;
        let to = first
            .saturating_add(s.window as u64 * record_size)
            .min(file_size.div_ceil(record_size) * record_size);
        let from = first.max(s.ahead_to);
        if from >= to {
            return None;
        }
        s.ahead_to = to;
        Some(Plan { from, to })
    }

    /// Hand a block to the workers; dropped if they are behind.
    pub(crate) fn queue(&self, bp: BlockPtr) -> bool {
        match &self.queue {
            Some(q) => match q.try_send(bp) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        }
    }
}

fn spawn_worker(
    i: usize,
    pool: Arc<Pool>,
    rx: Arc<std::sync::Mutex<Receiver<BlockPtr>>>,
    closing: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let run = move || loop {
        let next = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        let Ok(bp) = next else { return };
        if closing.load(Ordering::Relaxed) {
            return;
        }
        // A failed read-ahead costs nothing: the reader reads the block
        // itself and gets the error (or the healed copy) then.
        if let Err(e) = pool.prefetch_data(&bp) {
            tracing::debug!(block = %bp.describe(), error = %e, "read-ahead failed");
        }
    };
    match std::thread::Builder::new()
        .name(format!("aegis-readahead-{i}"))
        .spawn(run)
    {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e, "no read-ahead thread");
            None
        }
    }
}

impl Drop for ReadAhead {
    /// Stop the workers before the pool goes: they hold it (and so the
    /// device's lock) while they run.
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        self.queue = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RS: u64 = 128 << 10;

    fn planner(max: u32) -> ReadAhead {
        let (tx, _rx) = sync_channel(1);
        ReadAhead {
            streams: Mutex::new(LruCache::new(NonZeroUsize::new(4).unwrap())),
            max_window: max,
            queue: Some(tx),
            workers: Vec::new(),
            closing: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn window_grows_from_two_to_the_maximum_and_resets_on_a_seek() {
        let ra = planner(MAX_WINDOW);
        let size = 1 << 30;
        let mut windows = Vec::new();
        for i in 0..8u64 {
            let p = ra.plan((1, 5), i * RS, RS, RS, size).expect("sequential");
            windows.push((p.to - (i + 1) * RS) / RS);
        }
        assert_eq!(windows, [2, 4, 8, 16, 32, 32, 32, 32]);
        // A jump elsewhere is random: nothing ahead, and the window restarts.
        assert_eq!(ra.plan((1, 5), 500 * RS, 4096, RS, size), None);
        let p = ra.plan((1, 5), 500 * RS + 4096, 4096, RS, size).unwrap();
        assert_eq!((p.from, p.to), (501 * RS, 503 * RS));
    }

    #[test]
    fn records_are_queued_once_and_never_past_the_end() {
        let ra = planner(MAX_WINDOW);
        let size = 10 * RS + 5;
        let mut queued = Vec::new();
        let mut off = 0;
        while off < size {
            if let Some(p) = ra.plan((1, 7), off, 4096, RS, size) {
                let mut r = p.from;
                while r < p.to {
                    queued.push(r / RS);
                    r += RS;
                }
            }
            off += 4096;
        }
        let expected: Vec<u64> = (1..=10).collect();
        assert_eq!(queued, expected, "each record after the first, once");
    }

    #[test]
    fn random_readers_get_nothing_and_off_means_off() {
        let ra = planner(MAX_WINDOW);
        for o in [7u64, 3, 90, 12, 55] {
            assert_eq!(ra.plan((1, 9), o * RS, 4096, RS, 1 << 30), None);
        }
        let mut off = planner(MAX_WINDOW);
        off.queue = None;
        assert_eq!(off.plan((1, 9), 0, RS, RS, 1 << 30), None);
    }
}
