//! Every fuzz target, from the committed seed corpus, for a bounded time
//! (`AEGIS_FUZZ_SECONDS`, default 2 s per decoder and 8 s for the image
//! and send stream targets): zero panics allowed; a hang aborts the run.

use std::path::Path;
use std::time::Duration;

use aegis_fuzz::driver::{fuzz, load_corpus};
use aegis_fuzz::targets;

#[test]
fn every_target_survives_its_mutations() {
    let secs: f64 = std::env::var("AEGIS_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut failures = Vec::new();
    for t in targets() {
        let seeds = load_corpus(&corpus, t.name);
        assert!(
            !seeds.is_empty(),
            "{}: no seeds in {}",
            t.name,
            corpus.display()
        );
        let d = if matches!(t.name, "image" | "send_stream") {
            secs * 4.0
        } else {
            secs
        };
        let stats = fuzz(&t, &seeds, Duration::from_secs_f64(d), 0xF022);
        eprintln!(
            "{:16} {:9} execs, {} findings",
            t.name,
            stats.execs,
            stats.findings.len()
        );
        assert!(stats.execs >= seeds.len() as u64);
        for f in stats.findings {
            failures.push(format!(
                "{}: {} (input {:02x?})",
                f.target,
                f.message,
                &f.input[..f.input.len().min(64)]
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
