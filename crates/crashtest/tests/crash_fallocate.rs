//! Crash consistency of fallocate: reservations, zeroed, collapsed and
//! inserted ranges logged in the intent log and replayed. Every crash
//! state must mount to an acknowledged (or newer) tree whose contents,
//! `st_blocks` and reserved bytes are exactly that state's, and pass fsck
//! (which checks the reserved counter against the preallocated records).

use aegis_crashtest::{lookup, run_script, Recorder};
use aegis_vfs::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RS: u64 = 16 << 10;

#[test]
fn scripted_fallocate_modes_survive_every_crash_state() {
    let script = "
        create a
        write a 0 200000
        fsync a
        fallocate b 300000      # no such file: a note, not an error
        create b
        fallocate b 300000
        fsync b
        falloc a keep 200000 100000
        falloc a zero 16384 32768
        fsync a
        write b 16384 5000
        falloc b punch 65536 32768
        falloc a collapse 32768 16384
        fsync a
        falloc a insert 0 32768
        falloc b zero-keep 290000 50000
        fsync b
        truncate b 100000
        fsync b
        unlink b
        sync
    ";
    let (report, notes) = run_script(script, 8, 7).unwrap();
    assert_eq!(notes.len(), 1, "only the missing file fails: {notes:#?}");
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
    assert!(report.logged >= 3, "the fallocates should go to the log");
    assert!(report.states > 50);
}

#[test]
fn scripts_refuse_unknown_fallocate_modes() {
    let err = run_script("create a\nfalloc a sideways 0 10\n", 1, 1)
        .err()
        .unwrap();
    assert!(err.contains("unknown fallocate mode 'sideways'"), "{err}");
}

/// A seeded mix of writes and every fallocate mode on three files,
/// fsyncing often; at the end the live filesystem holds reservations, so
/// the crash states have something to keep exact.
fn record(seed: u64, rounds: usize) -> Recorder {
    let mut r = Recorder::new(RS as u32).unwrap();
    let fs = r.fs().clone();
    let mut rng = StdRng::seed_from_u64(seed);
    let req = Request::root();
    for n in ["f", "g", "h"] {
        let (a, fh) = fs
            .create(&req, ROOT_INO, std::ffi::OsStr::new(n), 0o644, libc::O_RDWR)
            .unwrap();
        fs.write(a.ino, fh, 0, &vec![n.as_bytes()[0]; 100_000])
            .unwrap();
        fs.release(a.ino, fh).unwrap();
        fs.forget(a.ino, 1);
    }
    let modes = [
        0,
        libc::FALLOC_FL_KEEP_SIZE,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        libc::FALLOC_FL_ZERO_RANGE,
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        libc::FALLOC_FL_COLLAPSE_RANGE,
        libc::FALLOC_FL_INSERT_RANGE,
    ];
    for _ in 0..rounds {
        let name = ["f", "g", "h"][rng.gen_range(0..3)];
        let ino = lookup(&*fs, name).unwrap();
        let fh = fs.open(ino, libc::O_RDWR).unwrap();
        match rng.gen_range(0..4) {
            0 => {
                let data = vec![rng.gen::<u8>() | 1; rng.gen_range(1..40_000)];
                fs.write(ino, fh, rng.gen_range(0..400_000), &data).unwrap();
            }
            1 => {
                let set = SetAttr {
                    size: Some(rng.gen_range(0..400_000)),
                    ..Default::default()
                };
                fs.setattr(&req, ino, &set, None).unwrap();
            }
            _ => {
                let mode = modes[rng.gen_range(0..modes.len())];
                let (off, len) = if mode
                    & (libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE)
                    != 0
                {
                    (rng.gen_range(0..16) * RS, rng.gen_range(1..4) * RS)
                } else {
                    (rng.gen_range(0..400_000), rng.gen_range(1..200_000))
                };
                // Collapse or insert past the end is EINVAL: fine.
                let _ = fs.fallocate(ino, fh, off, len, mode);
            }
        }
        fs.release(ino, fh).unwrap();
        if rng.gen_bool(0.3) {
            aegis_crashtest::fsync_path(&fs, name, rng.gen_bool(0.5)).unwrap();
            r.fsynced();
        }
    }
    aegis_crashtest::fsync_path(&fs, "f", false).unwrap();
    r.fsynced();
    r
}

#[test]
fn random_fallocate_workloads_keep_reservations_exact_through_crashes() {
    for seed in 1..=4u64 {
        let r = record(seed, 150);
        assert!(
            r.fs().store().reserved_bytes() > 0,
            "seed {seed}: the workload should end holding reservations"
        );
        let report = r.check(6, seed);
        assert!(
            report.failures.is_empty(),
            "seed {seed}: {:#?}",
            report.failures
        );
        assert!(
            report.logged > report.committed,
            "seed {seed}: mostly logged"
        );
    }
}
