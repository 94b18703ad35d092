//! `aegis-fuzz [TARGET ...] [--seconds N] [--seed S] [--corpus DIR]`:
//! fuzz the named targets (all by default) for N seconds each, print
//! executions and findings, save failing inputs under `DIR/../findings/`,
//! and exit 1 if anything failed. `--write-seeds DIR` writes the seed
//! corpus made from real encodings.

use std::path::PathBuf;
use std::time::Duration;

use aegis_fuzz::driver::{fuzz, load_corpus};
use aegis_fuzz::{seeds, targets};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut names = Vec::new();
    let mut seconds = 10u64;
    let mut seed = 1u64;
    let mut corpus = PathBuf::from("crates/fuzz/corpus");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds N")
            }
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            "--corpus" => corpus = PathBuf::from(args.next().expect("--corpus DIR")),
            "--write-seeds" => {
                let dir = PathBuf::from(args.next().expect("--write-seeds DIR"));
                for (name, list) in seeds::all() {
                    let d = dir.join(name);
                    std::fs::create_dir_all(&d).expect("create corpus dir");
                    for (i, s) in list.iter().enumerate() {
                        std::fs::write(d.join(format!("seed-{i:03}")), s).expect("write seed");
                    }
                    println!("{name}: {} seeds", list.len());
                }
                return;
            }
            other => names.push(other.to_string()),
        }
    }
    let mut failed = false;
    for t in targets() {
        if !names.is_empty() && !names.iter().any(|n| n == t.name) {
            continue;
        }
        let s = load_corpus(&corpus, t.name);
        let stats = fuzz(&t, &s, Duration::from_secs(seconds), seed);
        println!(
            "{:16} {:9} execs  {} findings ({} seeds)",
            t.name,
            stats.execs,
            stats.findings.len(),
            s.len()
        );
        for f in &stats.findings {
            failed = true;
            let dir = corpus.join("..").join("findings").join(t.name);
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{:016x}", blake_ish(&f.input)));
            let _ = std::fs::write(&path, &f.input);
            println!("  {}: {}", path.display(), f.message);
        }
    }
    std::process::exit(i32::from(failed));
}

fn blake_ish(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}
