//! Scheduled snapshots: due ones are taken, each schedule keeps its
//! newest `keep` and lets the rest go, other snapshots are never touched,
//! bad schedules are refused; and a mounted pool's sync thread runs them
//! on its own. Every test ends with fsck.

use aegis_block::DeviceRef;
use aegis_diskfs::MountOptions;
use aegis_fs::dataset::ROOT_DATASET;
use aegis_fs::snapshot_schedule::Schedule;
use aegis_testkit::Kit;

const S: u64 = 1_000_000_000;

fn names(store: &aegis_fs::Store) -> Vec<String> {
    store
        .snapshots(ROOT_DATASET)
        .into_iter()
        .filter(|s| !s.deleting)
        .map(|s| s.name)
        .collect()
}

#[test]
fn schedules_take_what_is_due_and_keep_their_newest() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let store = kit.open_store(dev.clone());
    store.create_snapshot(ROOT_DATASET, "mine").unwrap();
    let minute = Schedule {
        every_secs: 60,
        keep: 2,
    };
    let hour = Schedule {
        every_secs: 3600,
        keep: 1,
    };
    store.set_schedule(ROOT_DATASET, minute).unwrap();
    store.set_schedule(ROOT_DATASET, hour).unwrap();
    assert_eq!(store.schedules(ROOT_DATASET).unwrap(), [minute, hour]);
    let t0 = 1_796_300_000 * S; // 2026-12-03T12:13:20Z
    let taken = store.run_schedules(ROOT_DATASET, t0).unwrap();
    assert_eq!(
        taken,
        [
            "auto-1m-2026-12-03T12:13:20Z",
            "auto-1h-2026-12-03T12:13:20Z"
        ]
    );
    assert!(store
        .run_schedules(ROOT_DATASET, t0 + 30 * S)
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .run_schedules(ROOT_DATASET, t0 + 60 * S)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store
            .run_schedules(ROOT_DATASET, t0 + 125 * S)
            .unwrap()
            .len(),
        1
    );
    store.resume_snapshot_deletes(&mut |_| {}).unwrap();
    assert_eq!(
        names(&store),
        [
            "mine",
            "auto-1h-2026-12-03T12:13:20Z",
            "auto-1m-2026-12-03T12:14:20Z",
            "auto-1m-2026-12-03T12:15:25Z"
        ]
    );
    for bad in [
        Schedule {
            every_secs: 5,
            keep: 3,
        },
        Schedule {
            every_secs: 60,
            keep: 0,
        },
    ] {
        assert!(store.set_schedule(ROOT_DATASET, bad).is_err(), "{bad:?}");
    }
    assert!(store.remove_schedule(ROOT_DATASET, 120).is_err());
    store.remove_schedule(ROOT_DATASET, 60).unwrap();
    assert_eq!(store.schedules(ROOT_DATASET).unwrap(), [hour]);
    store.shutdown().unwrap();
    kit.fsck_clean(dev);
}

#[test]
fn a_mounted_pool_runs_its_schedules() {
    let kit = Kit::default();
    let dev = kit.fresh();
    let opts = MountOptions {
        sync_thread: true,
        store: aegis_fs::StoreOptions {
            sync_interval: std::time::Duration::from_millis(200),
            ..kit.store.clone()
        },
        ..kit.mount_opts()
    };
    let fs = aegis_diskfs::open(vec![dev.clone() as DeviceRef], &opts).unwrap();
    let store = fs.store().clone();
    store
        .set_schedule(
            ROOT_DATASET,
            Schedule {
                every_secs: 10,
                keep: 3,
            },
        )
        .unwrap();
    let start = std::time::Instant::now();
    while names(&store).is_empty() {
        assert!(start.elapsed().as_secs() < 30, "no scheduled snapshot came");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        names(&store)[0].starts_with("auto-10s-"),
        "{:?}",
        names(&store)
    );
    fs.unmount().unwrap();
    kit.fsck_clean(dev);
}
