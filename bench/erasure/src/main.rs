//! Reed-Solomon crates side by side (issue 14, item 2): encode and
//! reconstruct throughput on one core for 2+1, 4+2 and 8+3 over 128 KiB
//! records (the default record size; RECORD_KIB for others), split into
//! k data shards, data
//! bytes per second. Reconstruction loses m data shards, the worst case.
//! Each figure is the best of ROUNDS passes over TOTAL_MIB of records.
//!
//! `cargo run --release --manifest-path bench/erasure/Cargo.toml`
//! (ROUNDS, default 5; TOTAL_MIB, default 256; RECORD_KIB, default
//! 128). Prints a Markdown table.

use std::time::Instant;

/// Bytes per record (RECORD_KIB, default 128): split into k shards.
fn record() -> usize {
    env("RECORD_KIB", 128) << 10
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One codec's encode and reconstruct of one record's shards.
trait Codec {
    fn name(&self) -> &'static str;
    fn encode(&self, data: &[Vec<u8>]) -> Vec<Vec<u8>>;
    /// Rebuild the first `m` data shards from the rest and the parity.
    fn rebuild(&self, data: &[Vec<u8>], parity: &[Vec<u8>]) -> Vec<Vec<u8>>;
}

/// reed-solomon-simd with its encoder and decoder kept and reset per
/// record, as a pool would keep them (the one-shot functions build their
/// tables on every call).
struct Simd {
    k: usize,
    m: usize,
    enc: std::cell::RefCell<reed_solomon_simd::ReedSolomonEncoder>,
    dec: std::cell::RefCell<reed_solomon_simd::ReedSolomonDecoder>,
}

impl Simd {
    fn new(k: usize, m: usize) -> Simd {
        let n = record() / k;
        Simd {
            k,
            m,
            enc: reed_solomon_simd::ReedSolomonEncoder::new(k, m, n)
                .expect("encoder")
                .into(),
            dec: reed_solomon_simd::ReedSolomonDecoder::new(k, m, n)
                .expect("decoder")
                .into(),
        }
    }
}

impl Codec for Simd {
    fn name(&self) -> &'static str {
        "reed-solomon-simd 3"
    }
    fn encode(&self, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut e = self.enc.borrow_mut();
        e.reset(self.k, self.m, data[0].len()).expect("reset");
        for d in data {
            e.add_original_shard(d).expect("shard");
        }
        let r = e.encode().expect("encode");
        r.recovery_iter().map(<[u8]>::to_vec).collect()
    }
    fn rebuild(&self, data: &[Vec<u8>], parity: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut d = self.dec.borrow_mut();
        d.reset(self.k, self.m, data[0].len()).expect("reset");
        for (i, s) in data.iter().enumerate().skip(self.m) {
            d.add_original_shard(i, s).expect("shard");
        }
        for (i, p) in parity.iter().enumerate() {
            d.add_recovery_shard(i, p).expect("shard");
        }
        let r = d.decode().expect("decode");
        (0..self.m)
            .map(|i| r.restored_original(i).expect("restored").to_vec())
            .collect()
    }
}

struct Erasure {
    m: usize,
    rs: reed_solomon_erasure::galois_8::ReedSolomon,
}

impl Codec for Erasure {
    fn name(&self) -> &'static str {
        "reed-solomon-erasure 6"
    }
    fn encode(&self, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let len = data[0].len();
        let mut shards: Vec<Vec<u8>> = data.to_vec();
        shards.extend((0..self.m).map(|_| vec![0u8; len]));
        self.rs.encode(&mut shards).expect("encode");
        shards.split_off(data.len())
    }
    fn rebuild(&self, data: &[Vec<u8>], parity: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut shards: Vec<Option<Vec<u8>>> = data
            .iter()
            .enumerate()
            .map(|(i, d)| (i >= self.m).then(|| d.clone()))
            .chain(parity.iter().map(|p| Some(p.clone())))
            .collect();
        self.rs.reconstruct_data(&mut shards).expect("reconstruct");
        shards
            .into_iter()
            .take(self.m)
            .map(|s| s.expect("restored"))
            .collect()
    }
}

/// Best (encode, rebuild) data bytes per second of `codec` over
/// `records` records split into `k` shards.
fn measure(codec: &dyn Codec, k: usize, records: &[Vec<u8>], rounds: usize) -> (f64, f64) {
    let shards: Vec<Vec<Vec<u8>>> = records
        .iter()
        .map(|r| r.chunks(record() / k).map(<[u8]>::to_vec).collect())
        .collect();
    let parity: Vec<Vec<Vec<u8>>> = shards.iter().map(|s| codec.encode(s)).collect();
    // The codec must give back what was lost.
    let back = codec.rebuild(&shards[0], &parity[0]);
    assert!(
        back.iter().zip(&shards[0]).all(|(a, b)| a == b),
        "{}: wrong bytes",
        codec.name()
    );
    let bytes = (records.len() * record()) as f64;
    let (mut enc, mut dec) = (0f64, 0f64);
    for _ in 0..rounds {
        let t = Instant::now();
        for s in &shards {
            std::hint::black_box(codec.encode(s));
        }
        enc = enc.max(bytes / t.elapsed().as_secs_f64());
        let t = Instant::now();
        for (s, p) in shards.iter().zip(&parity) {
            std::hint::black_box(codec.rebuild(s, p));
        }
        dec = dec.max(bytes / t.elapsed().as_secs_f64());
    }
    (enc, dec)
}

fn main() {
    let rounds = env("ROUNDS", 5);
    let total = env("TOTAL_MIB", 256) << 20;
    let records: Vec<Vec<u8>> = (0..total / record())
        .map(|i| noise(record(), i as u64))
        .collect();
    println!("| layout | crate | encode (MiB/s, one core) | rebuild of m data shards (MiB/s) |");
    println!("|---|---|---:|---:|");
    for (k, m) in [(2, 1), (4, 2), (8, 3)] {
        let simd = Simd::new(k, m);
        let erasure = Erasure {
            m,
            rs: reed_solomon_erasure::galois_8::ReedSolomon::new(k, m).expect("codec"),
        };
        for codec in [&simd as &dyn Codec, &erasure] {
            let (e, d) = measure(codec, k, &records, rounds);
            let mib = |x: f64| x / (1 << 20) as f64;
            println!(
                "| {k}+{m} | {} | {:.0} | {:.0} |",
                codec.name(),
                mib(e),
                mib(d)
            );
        }
    }
}
