//! End-to-end tests of the Linux semantics that tools rely on (issue 10),
//! through a real FUSE mount, each reproducing what a user saw differ from
//! ext4. Same fixture and rules as `e2e.rs`: every test unmounts (also on
//! panic) and ends with fsck.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod common;

use common::*;

/// One reader with readdir(3) while another program renames the entries
/// of a 5,000-entry directory away and back: the read ends, no name is
/// listed twice, and every entry the renamer left alone is listed.
#[test]
fn a_directory_read_ends_while_entries_are_renamed() {
    if !fuse_available() {
        return;
    }
    const N: usize = 5000;
    let m = Mount::new("256M");
    let (dir, away) = (m.p("big"), m.p("away"));
    fs::create_dir(&dir).unwrap();
    fs::create_dir(&away).unwrap();
    for i in 0..N {
        File::create(dir.join(format!("f{i:05}"))).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The renamer takes the first half only, so the second half must be
    // listed once each.
    let renamer = {
        let (dir, away, stop) = (dir.clone(), away.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) && rounds < 2_000_000 {
                let name = format!("f{:05}", rounds as usize % (N / 2));
                fs::rename(dir.join(&name), away.join(&name)).unwrap();
                fs::rename(away.join(&name), dir.join(&name)).unwrap();
                rounds += 1;
            }
            rounds
        })
    };
    for pass in 0..3 {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (count, e) in fs::read_dir(&dir).unwrap().enumerate() {
            assert!(
                count < 3 * N,
                "pass {pass}: more than {} entries: the read never ends",
                3 * N
            );
            let name = e.unwrap().file_name().into_string().unwrap();
            *seen.entry(name).or_default() += 1;
            // A slow reader (a program doing work per entry): the
            // renamer moves names faster than they are read.
            if count % 10 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        // A stream ends at the last entry that existed when it was
        // opened, so a name renamed during the read is met once at most.
        let twice: Vec<_> = seen.iter().filter(|(_, &c)| c > 1).collect();
        assert!(
            twice.is_empty(),
            "pass {pass}: listed more than once: {twice:?}"
        );
        for i in N / 2..N {
            let name = format!("f{i:05}");
            assert_eq!(seen.get(&name), Some(&1), "pass {pass}: {name}");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = renamer.join().unwrap();
    assert!(rounds > 0, "the renamer never ran");
    let names: BTreeSet<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), N);
    m.finish();
}
