//! The mutation driver: seeds in, mutated inputs through a target, for a
//! bounded time; panics are caught and kept, a hang aborts the process
//! after saying which input hung.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::Target;

/// One failing input.
#[derive(Debug, Clone)]
pub struct Finding {
    pub target: &'static str,
    pub message: String,
    pub input: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct Stats {
    pub execs: u64,
    pub findings: Vec<Finding>,
}

/// Longest input the driver makes; decoders see at most a block or two.
pub const MAX_INPUT: usize = 1 << 17;
/// An input running longer than this is a hang.
pub const HANG_AFTER: Duration = Duration::from_secs(20);

const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    u64::MAX >> 1,
    u64::MAX,
];

/// Mutate `input` in place: one to eight stacked mutations.
pub fn mutate(rng: &mut SmallRng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..rng.gen_range(1..=8) {
        let len = input.len();
        match rng.gen_range(0..8) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                input[i] = rng.gen();
            }
            2 if len > 0 => {
                // An interesting integer, little-endian, of 1, 2, 4 or 8 bytes.
                let w = [1usize, 2, 4, 8][rng.gen_range(0..4)];
                let i = rng.gen_range(0..len);
                let v = INTERESTING[rng.gen_range(0..INTERESTING.len())].to_le_bytes();
                let end = (i + w).min(len);
                input[i..end].copy_from_slice(&v[..end - i]);
            }
            3 if len < MAX_INPUT => {
                let i = rng.gen_range(0..=len);
                let n = rng.gen_range(1..=16.min(MAX_INPUT - len));
                let b: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                input.splice(i..i, b);
            }
            4 if len > 0 => {
                let i = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - i).min(64));
                input.drain(i..i + n);
            }
            5 if len > 0 => {
                input.truncate(rng.gen_range(0..len));
            }
            6 if !corpus.is_empty() => {
                // Splice in a piece of another seed at the same place.
                let other = &corpus[rng.gen_range(0..corpus.len())];
                if !other.is_empty() && len > 0 {
                    let i = rng.gen_range(0..len.min(other.len()));
                    let n = rng.gen_range(1..=(other.len() - i).min(len - i).max(1));
                    let n = n.min(other.len() - i).min(len - i);
                    input[i..i + n].copy_from_slice(&other[i..i + n]);
                }
            }
            _ if len > 1 => {
                // Copy a run of bytes elsewhere in the input.
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(0..len);
                let n = rng.gen_range(1..=(len - a.max(b)).min(32));
                let piece = input[a..a + n].to_vec();
                input[b..b + n].copy_from_slice(&piece);
            }
            _ => input.push(rng.gen()),
        }
    }
}

/// Read the seeds of `target` from `dir/<target>/`.
pub fn load_corpus(dir: &Path, target: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join(target)) {
        let mut paths: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
    }
    out
}

fn message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".into()
    }
}

/// Run `target` on the seeds, then on mutations of them, for `duration`.
/// Panics are findings; an input that hangs aborts the process after
/// printing it (hex) to stderr.
pub fn fuzz(target: &Target, seeds: &[Vec<u8>], duration: Duration, seed: u64) -> Stats {
    let mut stats = Stats::default();
    let mut rng = SmallRng::seed_from_u64(seed);
    let corpus: Vec<Vec<u8>> = if seeds.is_empty() {
        vec![Vec::new()]
    } else {
        seeds.to_vec()
    };
    // Watchdog: the start time (ms since `t0`) of the running input, 0 when idle.
    let t0 = Instant::now();
    let running = Arc::new(AtomicU64::new(0));
    let current: Arc<Mutex<Vec<u8>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicU64::new(0));
    let watchdog = {
        let (running, current, stop) = (running.clone(), current.clone(), stop.clone());
        let name = target.name;
        std::thread::spawn(move || {
            while stop.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(Duration::from_millis(200));
                let started = running.load(Ordering::Relaxed);
                let now = t0.elapsed().as_millis() as u64;
                if started != 0 && now.saturating_sub(started) > HANG_AFTER.as_millis() as u64 {
                    let input = current.lock().map(|c| c.clone()).unwrap_or_default();
                    let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
                    eprintln!("HANG in target {name} on input {hex}");
                    std::process::abort();
                }
            }
        })
    };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let end = Instant::now() + duration;
    let mut i = 0usize;
    while Instant::now() < end || i < corpus.len() {
        let input = if i < corpus.len() {
            corpus[i].clone()
        } else {
            let mut x = corpus[rng.gen_range(0..corpus.len())].clone();
            mutate(&mut rng, &mut x, &corpus);
            x
        };
        i += 1;
        if let Ok(mut c) = current.lock() {
            c.clone_from(&input);
        }
        running.store(t0.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        let r = catch_unwind(AssertUnwindSafe(|| (target.run)(&input)));
        running.store(0, Ordering::Relaxed);
        stats.execs += 1;
        if let Err(p) = r {
            stats.findings.push(Finding {
                target: target.name,
                message: message(p),
                input,
            });
            if stats.findings.len() >= 10 {
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    stop.store(1, Ordering::Relaxed);
    let _ = watchdog.join();
    stats
}
