//! A creator that dies leaves a segment that is recognised as stale: half-made debris is
//! reclaimed by the next `new`, a finished but orphaned segment only on request.
// Linux only: this file compares the semaphore sets in `/proc/sysvipc/sem` before and after.
#![cfg(target_os = "linux")]
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: an unexpected error fails the test with its message"
)]

mod common;

use std::collections::BTreeSet;
use std::sync::Mutex;

use common::{assert_gone, fork, park, unique_key, Exit, Pipe};
use neocortex::{Cortex, ErrorKind, Semaphore};
use neocortex_sys::shm;

/// These tests compare the machine's semaphore sets before and after; run them one by one.
static SERIAL: Mutex<()> = Mutex::new(());

fn semaphore_sets() -> BTreeSet<i32> {
    std::fs::read_to_string("/proc/sysvipc/sem")
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .collect()
}

#[test]
fn creator_killed_before_writing_the_header_is_reclaimed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let key = unique_key("creator_killed_before_writing_the_header");
    // The creator's first step, shmget, then death before it attaches.
    let child = fork(move || {
        neocortex_core::failpoints::set(
            "create.shmat",
            Some(neocortex_core::failpoints::Action::Kill),
        );
        let _ = Cortex::<u64, Semaphore>::new(key, 1, None);
        2
    });
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    let err = Cortex::<u64, Semaphore>::attach(key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotInitialized, "{err}");
    assert!(err.to_string().contains("died before finishing"), "{err}");
    let stale_id = shm::shmget(key, 0, 0).unwrap();
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 3, None).unwrap();
    assert_ne!(
        cortex.segment_id(),
        stale_id,
        "a fresh segment replaced the debris"
    );
    assert!(shm::stat(stale_id).is_err(), "the debris is removed");
    let ids = (cortex.segment_id(), cortex.raw_lock().id());
    drop(cortex);
    assert_gone(key, &[ids.0, stale_id], &[ids.1]);
}

#[test]
fn another_programs_zero_filled_segment_is_never_reclaimed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let key = unique_key("another_programs_zero_filled_segment");
    // A program that is not neocortex made a segment on the key and exited.
    let child =
        fork(
            move || match shm::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) {
                Ok(_) => 0,
                Err(_) => 2,
            },
        );
    child.expect_success("shmget then exit");
    let id = shm::shmget(key, 0, 0).unwrap();
    let err = Cortex::<u64, Semaphore>::new(key, 1, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(err.to_string().contains("left untouched"), "{err}");
    assert_eq!(shm::shmget(key, 0, 0).unwrap(), id, "still there");
    shm::remove(id).unwrap();
    assert_gone(key, &[id], &[]);
}

#[test]
fn creator_killed_while_initialising_is_not_initialized_then_reclaimed() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let key = unique_key("creator_killed_while_initialising");
    let sets_before = semaphore_sets();
    let in_init = Pipe::new();
    let child = fork(|| {
        let _ = Cortex::<u64, Semaphore>::new_with(key, None, |_| {
            in_init.send(1);
            park()
        });
        2
    });
    in_init.recv();
    // While the creator lives, attach waits and then says so.
    let err = Cortex::<u64, Semaphore>::attach(key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotInitialized, "{err}");
    assert!(err.to_string().contains("still running"), "{err}");
    // And `new` does not touch it.
    assert_eq!(
        Cortex::<u64, Semaphore>::new(key, 1, None)
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    let orphan_sets: Vec<i32> = semaphore_sets().difference(&sets_before).copied().collect();
    assert_eq!(
        orphan_sets.len(),
        1,
        "the dead creator's semaphore set: {orphan_sets:?}"
    );
    let err = Cortex::<u64, Semaphore>::attach(key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotInitialized, "{err}");
    assert!(err.to_string().contains("died before finishing"), "{err}");
    let stale_id = shm::shmget(key, 0, 0).unwrap();
    let cortex: Cortex<u64, Semaphore> = Cortex::new(key, 4, None).unwrap();
    assert_eq!(cortex.read().unwrap(), 4);
    let ids = (cortex.segment_id(), cortex.raw_lock().id());
    drop(cortex);
    assert_gone(key, &[ids.0, stale_id], &[ids.1, orphan_sets[0]]);
    assert_eq!(
        semaphore_sets(),
        sets_before,
        "nothing left of either creator"
    );
}

#[test]
fn a_ready_segment_of_a_dead_creator_is_kept_until_removed_on_request() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let key = unique_key("a_ready_segment_of_a_dead_creator");
    let sets_before = semaphore_sets();
    let child = fork(move || match Cortex::<u64, Semaphore>::new(key, 42, None) {
        // Dies without dropping: the segment and its lock stay.
        Ok(c) => {
            std::mem::forget(c);
            0
        }
        Err(_) => 2,
    });
    child.expect_success("create and die without dropping");
    let err = Cortex::<u64, Semaphore>::new(key, 1, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("is dead") && text.contains("remove_stale"),
        "{text}"
    );
    // The data is still there for whoever wants it.
    let reader: Cortex<u64, Semaphore> = Cortex::attach(key).unwrap();
    assert_eq!(reader.read().unwrap(), 42);
    // In use: removal on request is refused.
    let err = Cortex::<u64, Semaphore>::remove_stale(key).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    let stale_id = reader.segment_id();
    let stale_sem = reader.raw_lock().id();
    drop(reader);
    Cortex::<u64, Semaphore>::remove_stale(key).unwrap();
    assert_gone(key, &[stale_id], &[stale_sem]);
    assert_eq!(semaphore_sets(), sets_before);
    let err = Cortex::<u64, Semaphore>::remove_stale(key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn a_live_owners_segment_is_never_touched() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let key = unique_key("a_live_owners_segment");
    let owner: Cortex<u64, Semaphore> = Cortex::new(key, 8, None).unwrap();
    let (id, sem) = (owner.segment_id(), owner.raw_lock().id());
    // Detached (nobody attached) but the creator lives.
    owner.detach().unwrap();
    let err = Cortex::<u64, Semaphore>::new(key, 1, None).unwrap_err();
    assert!(err.to_string().contains("running process"), "{err}");
    let err = Cortex::<u64, Semaphore>::remove_stale(key).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(shm::shmget(key, 0, 0).unwrap(), id);
    Cortex::<u64, Semaphore>::attach(key)
        .unwrap()
        .remove()
        .unwrap();
    assert_gone(key, &[id], &[sem]);
}
