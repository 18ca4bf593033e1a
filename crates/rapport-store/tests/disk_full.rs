//! The embedded store on a disk that fills up and is then freed: writes fail while it is
//! full, nothing acknowledged is lost, and writes succeed again once space is free, without
//! reopening the store by hand. Needs root (it mounts a small tmpfs); elsewhere it says so
//! and passes without running.

use rapport_store::embedded::EmbeddedStore;
use rapport_store::{AppendItem, EventLog, StateStore, StateWrite};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

fn batch(tag: &str, n: usize, bytes: usize) -> Vec<AppendItem> {
    (0..n)
        .map(|j| AppendItem {
            dedup_key: format!("{tag}-{j}").into_bytes(),
            payload: vec![b'x'; bytes],
        })
        .collect()
}

#[test]
fn writes_recover_once_a_full_disk_has_room_again() {
    let Some(disk) = SmallDisk::mount(40) else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let store = EmbeddedStore::open(&disk.path().join("data")).unwrap();
    let filler = disk.path().join("filler");
    // Leave a few megabytes for the store, then fill them with events.
    assert!(
        Command::new("fallocate")
            .args(["-l", "28m"])
            .arg(&filler)
            .status()
            .unwrap()
            .success()
    );
    let now = 1_700_000_000_000;
    let mut acknowledged = 0u64;
    let mut failed = false;
    for i in 0..20_000 {
        match store.append(&batch(&format!("fill{i}"), 100, 1_000), now, 60_000) {
            Ok(outcomes) => acknowledged += outcomes.len() as u64,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the disk never filled");
    assert!(store.probe().is_err(), "a full disk fails the probe");
    assert!(
        store
            .state_commit(
                &[StateWrite {
                    namespace: "n".into(),
                    profile: "p".into(),
                    key: b"k".to_vec(),
                    value: Some(vec![1; 4096]),
                }],
                None,
            )
            .is_err()
            || store.probe().is_err()
    );

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // A keyspace that failed a write is reopened at its next failed write, at most once a
    // second: allow a few.
    let after = loop {
        match store
            .append(&batch("after", 10, 100), now, 60_000)
            .and_then(|o| store.probe().map(|()| o))
        {
            Ok(o) => break o,
            Err(e) if Instant::now() < deadline => {
                eprintln!("still failing: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("writes did not recover once space was free: {e}"),
        }
    };
    assert_eq!(after.len(), 10);
    store.probe().unwrap();
    // Every acknowledged event is there, and the new ones follow them densely.
    assert_eq!(store.last_offset().unwrap(), acknowledged + 10);
    let all = store.read_after(0, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, acknowledged + 10);
    assert!(all.iter().enumerate().all(|(i, (o, _))| *o == i as u64 + 1));
    drop(store);
    let reopened = EmbeddedStore::open(&disk.path().join("data")).unwrap();
    assert_eq!(reopened.last_offset().unwrap(), acknowledged + 10);
}
