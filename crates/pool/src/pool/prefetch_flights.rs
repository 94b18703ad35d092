//! Reads ahead in flight: a reader that wants a data block a read-ahead
//! worker is reading right now waits for that read instead of reading the
//! block a second time. A sequential reader catches up with its
//! read-ahead often (the kernel sends 128 KiB requests one after another),
//! and each catch-up used to cost the disk the same record twice.
//!
//! Invariants: only `prefetch_data` registers a flight, and it always
//! ends it (`Flight::land`), failed or not, so nothing waits on a read no
//! one is doing; a waiter waits at most [`WAIT_LIMIT`] and then reads the
//! block itself, so a stuck device read cannot hang a reader forever on
//! someone else's behalf; at most [`MAX_FLIGHTS`] are in the table (the
//! read-ahead queue is smaller), beyond which a prefetch is dropped, as a
//! full read-ahead queue drops one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::block_cache::Key;

/// Longest a reader waits for someone else's read of its block.
const WAIT_LIMIT: Duration = Duration::from_secs(2);
/// Most reads ahead tracked at once.
const MAX_FLIGHTS: usize = 1024;

#[derive(Default)]
pub(crate) struct Flights {
    table: Mutex<HashMap<Key, Arc<Flight>>>,
}

#[derive(Default)]
pub(crate) struct Flight {
    landed: Mutex<bool>,
    cv: Condvar,
}

impl Flights {
    /// Register a read of `key`; `None` if one is in flight already (or
    /// the table is full: then the caller does not read).
    pub(crate) fn take_off(&self, key: Key) -> Option<Arc<Flight>> {
        let mut t = self.table.lock();
        if t.contains_key(&key) || t.len() >= MAX_FLIGHTS {
            return None;
        }
        let f = Arc::new(Flight::default());
        t.insert(key, f.clone());
        Some(f)
    }

    /// The read of `key` is over, whatever its outcome.
    pub(crate) fn land(&self, key: &Key, f: &Flight) {
        self.table.lock().remove(key);
        *f.landed.lock() = true;
        f.cv.notify_all();
    }

    /// Wait for a read of `key` in flight, if there is one. Returns
    /// whether there was one (the cache may hold the block now).
    pub(crate) fn wait_for(&self, key: &Key) -> bool {
        let Some(f) = self.table.lock().get(key).cloned() else {
            return false;
        };
        let mut landed = f.landed.lock();
        if !*landed {
            let _ = f.cv.wait_for(&mut landed, WAIT_LIMIT);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_wakes_when_the_read_lands_and_a_second_take_off_is_refused() {
        let flights = Arc::new(Flights::default());
        let key: Key = (0, 4096, 7, 1);
        let f = flights.take_off(key).unwrap();
        assert!(flights.take_off(key).is_none(), "one flight per block");
        let waiter = {
            let flights = flights.clone();
            std::thread::spawn(move || flights.wait_for(&key))
        };
        std::thread::sleep(Duration::from_millis(20));
        flights.land(&key, &f);
        assert!(waiter.join().unwrap(), "it waited for the flight");
        assert!(!flights.wait_for(&key), "landed: nothing to wait for");
        assert!(flights.take_off(key).is_some(), "a new read may start");
    }
}
