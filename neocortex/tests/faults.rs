//! Fault injection at every step of creation: a creator killed anywhere leaves nothing that
//! an attacher mistakes for ready, and the next `new` reclaims it; a failed step is
//! `CleanSystem` with nothing left, or `DirtySystem` naming exactly what is left.
// Linux only: this file compares the SysV objects in `/proc/sysvipc` before and after.
#![cfg(target_os = "linux")]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use common::{assert_gone, fork, unique_key, Exit};
use neocortex::{Cortex, CortexError, ErrorKind, Leftover, Semaphore};
use neocortex_core::failpoints::{self, Action};
use neocortex_sys::shm;

/// These tests compare the machine's SysV objects before and after; run them one by one.
static SERIAL: Mutex<()> = Mutex::new(());

fn ids(path: &str) -> BTreeSet<i32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Segment and semaphore-set ids on the machine.
fn objects() -> (BTreeSet<i32>, BTreeSet<i32>) {
    (ids("/proc/sysvipc/shm"), ids("/proc/sysvipc/sem"))
}

const KILL_POINTS: [&str; 6] = [
    "create.shmget",
    "create.shmat",
    "create.after_header",
    "create.lock",
    "create.after_lock",
    "create.before_publish",
];

#[test]
fn a_creator_killed_at_every_step_is_never_seen_ready_and_is_reclaimed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for point in KILL_POINTS {
        let key = unique_key(point);
        let before = objects();
        let child = fork(move || {
            failpoints::set(point, Some(Action::Kill));
            let _ = Cortex::<u64, Semaphore>::new(key, 1, None);
            2
        });
        assert_eq!(
            child.wait(),
            Exit::Signal(libc::SIGKILL),
            "{point}: the creator died there"
        );
        match Cortex::<u64, Semaphore>::attach(key) {
            Err(e) if point == "create.shmget" => {
                assert_eq!(e.kind(), ErrorKind::NotFound, "{point}: {e}")
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::NotInitialized, "{point}: {e}");
                assert!(
                    e.to_string().contains("died before finishing"),
                    "{point}: {e}"
                );
            }
            Ok(_) => panic!("{point}: a half-made segment was attached as ready"),
        }
        let cortex: Cortex<u64, Semaphore> =
            Cortex::new(key, 2, None).unwrap_or_else(|e| panic!("{point}: {e}"));
        assert_eq!(cortex.read().unwrap(), 2);
        let mine = (cortex.segment_id(), cortex.raw_lock().id());
        drop(cortex);
        assert_gone(key, &[mine.0], &[mine.1]);
        assert_eq!(
            objects(),
            before,
            "{point}: the dead creator's objects were all reclaimed"
        );
    }
}

#[test]
fn an_error_at_every_step_is_clean_with_nothing_left() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cases = [
        ("create.shmget", libc::ENOSPC, ErrorKind::LimitReached),
        ("create.shmat", libc::ENOMEM, ErrorKind::LimitReached),
        ("create.lock", libc::ENOSPC, ErrorKind::LimitReached),
        ("create.lock", libc::EACCES, ErrorKind::PermissionDenied),
    ];
    for (point, errno, kind) in cases {
        let key = unique_key(point);
        let before = objects();
        failpoints::set(point, Some(Action::Errno(errno)));
        let result = Cortex::<u64, Semaphore>::new(key, 1, None);
        failpoints::set(point, None);
        let err = result.expect_err(point);
        assert!(
            matches!(err, CortexError::CleanSystem { .. }),
            "{point}: {err:?}"
        );
        assert_eq!(err.kind(), kind, "{point}: {err}");
        assert_eq!(err.raw_os_error(), Some(errno));
        assert_eq!(objects(), before, "{point}: a clean error left nothing");
        assert_gone(key, &[], &[]);
    }
}

#[test]
fn a_failed_rollback_is_dirty_and_names_exactly_what_is_left() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let key = unique_key("a_failed_rollback_is_dirty");
    let before = objects();
    failpoints::set("create.lock", Some(Action::Errno(libc::ENOSPC)));
    failpoints::set("create.rollback_rmid", Some(Action::Errno(libc::EPERM)));
    let result = Cortex::<u64, Semaphore>::new(key, 1, None);
    failpoints::set("create.lock", None);
    failpoints::set("create.rollback_rmid", None);
    let err = result.unwrap_err();
    assert!(err.is_dirty(), "{err:?}");
    let (shm_now, sem_now) = objects();
    let new_segments: Vec<i32> = shm_now.difference(&before.0).copied().collect();
    assert_eq!(sem_now, before.1, "no semaphore set was left");
    assert_eq!(new_segments.len(), 1);
    assert_eq!(
        err.leftovers(),
        &[Leftover::Segment(new_segments[0])],
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("ipcrm -m {}", new_segments[0])),
        "{err}"
    );
    // A person follows the message.
    shm::remove(new_segments[0]).unwrap();
    assert_eq!(objects(), before);
    assert_gone(key, &new_segments, &[]);
}

#[test]
fn an_owner_drop_that_cannot_remove_is_logged_and_leaves_what_it_says() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let key = unique_key("an_owner_drop_that_cannot_remove");
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 1, None).unwrap();
    let (shm_id, sem_id) = (cortex.segment_id(), cortex.raw_lock().id());
    failpoints::set("drop.rmid", Some(Action::Errno(libc::EPERM)));
    drop(cortex);
    failpoints::set("drop.rmid", None);
    assert_eq!(
        shm::shmget(key, 0, 0).unwrap(),
        shm_id,
        "the segment is left, as logged"
    );
    assert!(
        neocortex_sys::sem::stat(sem_id).is_err(),
        "the lock was removed"
    );
    shm::remove(shm_id).unwrap();
    assert_gone(key, &[shm_id], &[sem_id]);
}
