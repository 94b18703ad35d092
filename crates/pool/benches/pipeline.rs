//! Checksum and compression throughput per algorithm, on 128 KiB buffers
//! of compressible (text-like) and incompressible (random) data.
//! Run: cargo bench -p aegis-pool --bench pipeline

use aegis_pool::{ChecksumType, Compression};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

fn data() -> (Vec<u8>, Vec<u8>) {
    let words = [
        "inode ",
        "extent ",
        "aegisfs ",
        "block ",
        "txg ",
        "checksum ",
        "0123 ",
        "\n",
    ];
    let mut text = Vec::new();
    let mut x: u64 = 1;
    while text.len() < 128 << 10 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        text.extend_from_slice(words[(x >> 60) as usize % words.len()].as_bytes());
    }
    text.truncate(128 << 10);
    let mut r: u64 = 0x9E3779B97F4A7C15;
    let random: Vec<u8> = (0..128usize << 10)
        .map(|_| {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            (r >> 32) as u8
        })
        .collect();
    (text, random)
}

fn checksums(c: &mut Criterion) {
    let (text, _) = data();
    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(text.len() as u64));
    for t in [ChecksumType::Blake3, ChecksumType::Xxh3] {
        g.bench_function(t.name(), |b| {
            b.iter(|| t.compute(std::hint::black_box(&text)))
        });
    }
    g.finish();
}

fn compression(c: &mut Criterion) {
    let (text, random) = data();
    for (name, input) in [("text", &text), ("random", &random)] {
        let mut g = c.benchmark_group(format!("compress/{name}"));
        g.throughput(Throughput::Bytes(input.len() as u64));
        for comp in [Compression::Lz4, Compression::Zstd] {
            g.bench_with_input(BenchmarkId::from_parameter(comp.name()), input, |b, d| {
                b.iter(|| comp.compress(d))
            });
        }
        g.finish();
    }
    let mut g = c.benchmark_group("decompress/text");
    g.throughput(Throughput::Bytes(text.len() as u64));
    for comp in [Compression::Lz4, Compression::Zstd] {
        let z = comp.compress(&text).expect("text compresses");
        eprintln!(
            "{}: text ratio {:.2}",
            comp.name(),
            text.len() as f64 / z.len() as f64
        );
        g.bench_function(comp.name(), |b| {
            b.iter_batched(
                || z.clone(),
                |z| comp.decompress(z, text.len()).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, checksums, compression);
criterion_main!(benches);
