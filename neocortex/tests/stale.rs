//! A creator that dies leaves a segment that is recognised as stale: half-made debris is
//! reclaimed by the next `new`, a finished but orphaned segment only on request.
//!
//! These tests compare the semaphore sets before and after, so each runs its body in a
//! private IPC namespace, where every set is its own.
// Linux only: this file compares the semaphore sets in `/proc/sysvipc/sem` before and after.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeSet;

use common::{assert_gone, fork, in_private_ipc_namespace, park, unique_key, Exit, Made, Pipe};
use neocortex::{Cortex, ErrorKind, Semaphore};
use neocortex_sys::shm;

/// The semaphore sets in this test's private IPC namespace.
fn semaphore_sets() -> BTreeSet<i32> {
    common::namespace_objects().1.into_iter().collect()
}

#[test]
fn creator_killed_before_writing_the_header_is_reclaimed() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
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
        let mut made = Made::of(&cortex);
        made.segments.push(stale_id);
        drop(cortex);
        made.assert_gone();
    });
}

#[test]
fn another_programs_zero_filled_segment_is_never_reclaimed() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
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
        // SAFETY: an object this test made (or forged) itself, used by nobody else.
        unsafe { shm::remove(id) }.unwrap();
        assert_gone(key, &[id], &[]);
    });
}

#[test]
fn creator_killed_while_initialising_is_not_initialized_then_reclaimed() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
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
        let mut made = Made::of(&cortex);
        made.segments.push(stale_id);
        made.sets.push(orphan_sets[0]);
        drop(cortex);
        made.assert_gone();
        assert_eq!(
            semaphore_sets(),
            sets_before,
            "nothing left of either creator"
        );
    });
}

#[test]
fn a_ready_segment_of_a_dead_creator_is_kept_until_removed_on_request() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
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
        let stale = Made::of(&reader);
        drop(reader);
        Cortex::<u64, Semaphore>::remove_stale(key).unwrap();
        stale.assert_gone();
        assert_eq!(semaphore_sets(), sets_before);
        let err = Cortex::<u64, Semaphore>::remove_stale(key).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    });
}

#[test]
fn a_live_owners_segment_is_never_touched() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let key = unique_key("a_live_owners_segment");
        let owner: Cortex<u64, Semaphore> = Cortex::new(key, 8, None).unwrap();
        let made = Made::of(&owner);
        let id = owner.segment_id();
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
        made.assert_gone();
    });
}

/// The fixed part of a `[E]` segment's size (its size with no element).
fn fixed_part<E: neocortex::ShmSafe>(probe: i32) -> usize {
    let empty = Cortex::<[E], Semaphore>::new_slice_zeroed(probe, 0, None).expect("a probe");
    let size = shm::stat(empty.segment_id()).expect("its size").size;
    usize::try_from(size).expect("a size")
}

/// Zero-filled segments left by a dead process, one per `(size, reclaimed)`, each on a key
/// where `new_slice_zeroed` of a `[E]` then creates: whether it reclaimed the debris must be
/// `reclaimed`.
fn blank_debris_of_sizes<E: neocortex::ShmSafe>(name: &str, sizes: &[(usize, bool)]) {
    for (i, &(size, reclaimed)) in sizes.iter().enumerate() {
        let key = unique_key(&format!("{name}_{i}"));
        let child =
            fork(
                || match shm::shmget(key, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600) {
                    Ok(_) => 0,
                    Err(_) => 2,
                },
            );
        child.expect_success("shmget then exit");
        let id = shm::shmget(key, 0, 0).expect("the debris");
        let made = match Cortex::<[E], Semaphore>::new_slice_zeroed(key, 2, None) {
            Ok(c) => {
                drop(c);
                true
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => false,
            Err(e) => panic!("{name}: {e}"),
        };
        assert_eq!(
            made, reclaimed,
            "{name}: a blank segment of {size} bytes is reclaimed: {reclaimed}"
        );
        if reclaimed {
            assert!(shm::stat(id).is_err(), "the debris is removed");
        } else {
            // SAFETY: an object this test made itself, used by nobody else.
            unsafe { shm::remove(id) }.expect("remove the debris");
        }
        assert_gone(key, &[id], &[]);
    }
}

/// Debris with a blank header (its creator died before writing it) is reclaimed only when
/// its size is one that the caller's slice type could have made: the layout's fixed part
/// plus a whole number of elements.
#[test]
fn blank_debris_is_reclaimed_for_a_slice_only_at_a_size_the_slice_could_have() {
    let _guard = common::watchdog();
    in_private_ipc_namespace(|| {
        let probe = unique_key("blank_debris_probe");
        let fixed = fixed_part::<u32>(probe);
        blank_debris_of_sizes::<u32>(
            "blank_u32",
            &[(fixed + 12, true), (fixed + 13, false), (fixed - 4, false)],
        );
        // Elements of 7 bytes, which do not divide the fixed part: the size is counted
        // from the end of the fixed part, not from the start of the segment.
        let fixed = fixed_part::<[u8; 7]>(probe);
        assert_ne!((2 * fixed) % 7, 0, "the case this checks");
        blank_debris_of_sizes::<[u8; 7]>("blank_seven", &[(fixed + 14, true), (fixed + 10, false)]);
        let fixed = fixed_part::<()>(probe);
        blank_debris_of_sizes::<()>("blank_unit", &[(fixed, true), (fixed + 8, false)]);
    });
}
